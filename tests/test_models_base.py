"""ZooModule: a LightningModule whose step solves many times logs the sum of all its solves."""

import csv

import pytest
import torch
from lightning import Trainer
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from zoo.models.base import ZooModule
from zoo.ode import ODEBlock, SolverSettings, solve


class Field(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))

    def forward(self, t, y):
        return self.net(y)


class TenIntervals(ZooModule):
    """Integrates ten intervals of 0.25 per step, two rk4 steps of four evaluations each."""

    def __init__(self, adjoint: bool = False) -> None:
        super().__init__()
        self.save_arguments({"adjoint": adjoint})
        self.field = Field()
        self.settings = SolverSettings(method="rk4", step_size=0.125, adjoint=adjoint)

    def step(self, batch, stage):
        (y,) = batch
        for k in range(10):
            y = solve(self.field, y, [0.25 * k, 0.25 * (k + 1)], self.settings).end
        loss = y.pow(2).mean()
        self.log(f"{stage}_loss", loss)
        return loss


@pytest.mark.parametrize("adjoint", [False, True])
def test_a_step_logs_the_nfe_of_all_its_solves(tmp_path, adjoint):
    model = TenIntervals(adjoint)
    data = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4)
    trainer = Trainer(max_steps=2, logger=CSVLogger(tmp_path), enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1)
    trainer.fit(model, data)
    (metrics,) = list(tmp_path.glob("**/metrics.csv"))
    rows = list(csv.DictReader(metrics.open()))
    forward = [float(r["train_nfe_forward_step"]) for r in rows if r.get("train_nfe_forward_step")]
    backward = [float(r["train_nfe_backward_step"]) for r in rows if r.get("train_nfe_backward_step")]
    assert forward == [80.0, 80.0] and backward == [80.0, 80.0]
    assert model.hparams == {"adjoint": adjoint}


def test_the_named_head_is_what_a_new_number_of_classes_reinitializes():
    from zoo.models import ANODE, ODENet

    assert ODENet(width=8, dynamics={"name": "odenet_conv", "hidden_dims": [8]}).head_parameter_names() \
        == ["net.head.4.weight", "net.head.4.bias"]
    assert ANODE(input_shape=(1, 4, 4), augment_dim=1,
                 dynamics={"name": "anode_conv", "hidden_dims": [4]}).head_parameter_names() \
        == ["net.head.1.weight", "net.head.1.bias"]


def test_augmentation_of_a_tuple_state_pads_its_first_component():
    block = ODEBlock(nn.Identity(), augment_dim=2)
    x, logp = block.augment((torch.ones(3, 2), torch.zeros(3, 1)))
    assert x.shape == (3, 4) and (x[:, 2:] == 0).all() and logp.shape == (3, 1)

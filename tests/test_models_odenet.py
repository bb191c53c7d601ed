"""ODE-Net and its residual baseline: sizes of Chen et al., shapes, and rebuilding from checkpoints."""

import pytest
import torch
from lightning import Trainer
from torch.utils.data import DataLoader, TensorDataset

from zoo.models import ODENet, ResNet
from zoo.ode import ODEBlock


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_the_reference_code():
    assert count(ODENet()) == 208_266  # ../shared/ANCHORS.md
    assert count(ResNet()) == 576_778


@pytest.mark.parametrize(("cls", "shape"), [(ODENet, (1, 28, 28)), (ODENet, (3, 32, 32)),
                                            (ResNet, (3, 32, 32))])
def test_logits_for_each_dataset_shape(cls, shape):
    model = cls(input_shape=shape, num_classes=7, width=16)
    assert model(torch.randn(2, *shape)).shape == (2, 7)


def test_odenet_counts_nfe_and_resnet_has_no_ode_block():
    model = ODENet(width=16)
    model(torch.randn(2, 1, 28, 28))
    (block,) = model.ode_blocks()
    assert isinstance(block, ODEBlock) and block.nfe_forward >= 6
    assert ResNet(width=16).ode_blocks() == []


def test_checkpoint_rebuilds_the_same_model(tmp_path):
    model = ODENet(width=16, solver={"method": "rk4", "step_size": 0.5},
                   dynamics={"name": "odenet_conv", "hidden_dims": [8], "options": {"groups": 4}})
    images = torch.randn(8, 1, 28, 28)
    data = DataLoader(TensorDataset(images, torch.randint(0, 10, (8,))), batch_size=4)
    trainer = Trainer(max_steps=2, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, data)
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    loaded = ODENet.load_from_checkpoint(tmp_path / "model.ckpt")
    assert loaded.hparams["solver"]["method"] == "rk4"  # plain data in the checkpoint
    assert loaded.net.body.solver.step_size == 0.5
    model.eval()
    loaded.eval()
    torch.testing.assert_close(loaded(images), model(images))

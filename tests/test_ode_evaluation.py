"""``solver.precision`` and ``solver.channels_last``: faster evaluations of the field, same solves.

Channels-last changes only the memory layout, so a solve and its gradients agree with the plain
path to float32 rounding. bfloat16 keeps about 3 significant digits in the field's products: on the conv
field below the end state agrees with the plain solve to 5e-4 relative and the parameter
gradients to 2.3e-2 (backpropagated through the solver) and 5e-3 (adjoint); the bounds are
about twice that.
"""

from __future__ import annotations

import pytest
import torch

from zoo.data import FashionMNISTDataModule
from zoo.errors import SettingError
from zoo.models import ANODE
from zoo.ode import ODEBlock, SolverSettings, solve
from zoo.ode.dynamics import ANODEConv

SOLVER = {"method": "dopri5", "rtol": 1e-3, "atol": 1e-3}


def solve_and_grad(settings: dict, dynamics: torch.nn.Module, x: torch.Tensor):
    x = x.clone().requires_grad_(True)
    solution = solve(dynamics, x, [0.0, 1.0], settings)
    solution.end.square().sum().backward()
    grads = torch.cat([p.grad.flatten() for p in dynamics.parameters()])
    dynamics.zero_grad()
    return solution, x.grad, grads


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


@pytest.fixture
def conv_field():
    torch.manual_seed(0)
    return ANODEConv(3, [16]), torch.randn(4, 3, 10, 10)


@pytest.mark.parametrize("adjoint", [False, True])
def test_channels_last_gives_the_plain_solve_and_gradients(conv_field, adjoint):
    dynamics, x = conv_field
    plain = solve_and_grad({**SOLVER, "adjoint": adjoint}, dynamics, x)
    fast = solve_and_grad({**SOLVER, "adjoint": adjoint, "channels_last": True}, dynamics, x)
    assert fast[0].end.dtype == torch.float32
    assert fast[0].stats.nfe_forward == plain[0].stats.nfe_forward
    assert relative(fast[0].end, plain[0].end) < 1e-5
    assert relative(fast[1], plain[1]) < 1e-4
    assert relative(fast[2], plain[2]) < 1e-4


@pytest.mark.parametrize("adjoint", [False, True])
def test_bf16_keeps_the_state_in_float32_and_agrees_within_its_precision(conv_field, adjoint):
    dynamics, x = conv_field
    plain = solve_and_grad({**SOLVER, "adjoint": adjoint}, dynamics, x)
    fast = solve_and_grad({**SOLVER, "adjoint": adjoint, "precision": "bf16"}, dynamics, x)
    assert fast[0].end.dtype == torch.float32 and fast[1].dtype == torch.float32
    assert relative(fast[0].end, plain[0].end) < 1e-3
    assert relative(fast[1], plain[1]) < 2e-2
    assert relative(fast[2], plain[2]) < 5e-2
    assert relative(fast[0].end, plain[0].end) > 0  # the field really ran in bfloat16


def test_bf16_field_evaluations_run_in_bfloat16(conv_field):
    dynamics, x = conv_field
    seen = []
    dynamics.conv2.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    solve(dynamics, x, [0.0, 1.0], {**SOLVER, "precision": "bf16"})
    assert seen and set(seen) == {torch.bfloat16}


def test_a_bf16_channels_last_anode_step_matches_the_plain_one(fmnist_data_dir):
    data = FashionMNISTDataModule(data_dir=str(fmnist_data_dir), batch_size=16, augment=False,
                                  download=False)
    data.setup("fit")
    images, labels = next(iter(data.train_dataloader()))
    losses, grads = [], []
    for extra in ({}, {"precision": "bf16", "channels_last": True}):
        torch.manual_seed(0)
        model = ANODE(augment_dim=2, dynamics={"name": "anode_conv", "hidden_dims": [8]},
                      solver={"adjoint": True, **extra})
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert losses[1] == pytest.approx(losses[0], rel=1e-2)
    assert relative(grads[1], grads[0]) < 5e-2


def test_settings_are_checked_and_saved():
    with pytest.raises(SettingError, match=r"solver\.precision must be one of"):
        SolverSettings(precision="fp8")
    with pytest.raises(SettingError, match=r"solver\.channels_last must be true or false"):
        SolverSettings(channels_last="yes")
    settings = SolverSettings.coerce({"precision": "bf16"})
    assert settings.as_dict()["precision"] == "bf16" and settings.as_dict()["channels_last"] is False
    assert SolverSettings.coerce(settings.as_dict()) == settings
    block = ODEBlock(ANODEConv(3, [4]), {"channels_last": True})
    assert block.solver.evaluation.channels_last and block.solver.evaluation.precision == "state"


def test_the_speed_recipe_matches_the_paper_recipe_on_an_anode_step(fmnist_data_dir):
    """dopri5 with its first step given (0.3) and direct backprop, against the automatic first step and
    the adjoint (Dupont et al.'s): both solve to 1e-3, so the loss agrees to about that and the
    gradients (of two discretizations) to a few percent, with fewer evaluations."""
    data = FashionMNISTDataModule(data_dir=str(fmnist_data_dir), batch_size=16, augment=False,
                                  download=False)
    data.setup("fit")
    images, labels = next(iter(data.train_dataloader()))
    losses, grads, nfe = [], [], []
    for extra in ({"adjoint": True}, {"adjoint": False, "step_size": 0.3}):
        torch.manual_seed(0)
        model = ANODE(augment_dim=2, dynamics={"name": "anode_conv", "hidden_dims": [8]},
                      solver={"rtol": 1e-3, "atol": 1e-3, **extra})
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
        nfe.append(model.ode_blocks()[0].nfe_forward)
    assert losses[1] == pytest.approx(losses[0], rel=1e-3)
    assert relative(grads[1], grads[0]) < 3e-2
    assert nfe[1] < nfe[0]

"""ODEBlock: gradients, NFE counts, time grids and the errors of failed solves."""

import math

import pytest
import torch
from torch import nn

from zoo.ode import DynamicsSpec, ODEBlock, ODESolveError, SolverSettings


def mlp_block(seed=0, **settings):
    torch.manual_seed(seed)
    dynamics = DynamicsSpec("concat_mlp", hidden_dims=[16, 16], options={"activation": "tanh"}).build(3)
    return ODEBlock(dynamics, SolverSettings(**settings))


def gradients(block, x):
    x = x.clone().requires_grad_(True)
    block.zero_grad()
    block(x).pow(2).sum().backward()
    return [x.grad, *(p.grad for p in block.parameters())]


@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_adjoint_gradients_equal_direct_backprop(method):
    x = torch.randn(8, 3, dtype=torch.float64)
    step = {"step_size": 0.05} if method == "rk4" else {}
    direct = mlp_block(method=method, rtol=1e-9, atol=1e-9, **step).double()
    adjoint = mlp_block(method=method, rtol=1e-9, atol=1e-9, adjoint=True, **step).double()
    for a, b in zip(gradients(direct, x), gradients(adjoint, x)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_seminorm_adjoint_same_gradients():
    x = torch.randn(16, 3, dtype=torch.float64)
    full = mlp_block(rtol=1e-8, atol=1e-8, adjoint=True).double()
    semi = mlp_block(rtol=1e-8, atol=1e-8, adjoint=True, seminorm=True).double()
    for a, b in zip(gradients(full, x), gradients(semi, x)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seminorm_adjoint_takes_fewer_backward_nfe_on_conv_dynamics(seed):
    # The ODE-Net case: many parameters per state element. (On tiny MLPs at tight tolerances
    # seminorm can take a step or two more; Kidger et al. 2021 report the median saving.)
    spec = DynamicsSpec("odenet_conv", hidden_dims=[8], options={"groups": 4})
    x = torch.randn(4, 8, 7, 7, generator=torch.Generator().manual_seed(seed))
    blocks = []
    for seminorm in (False, True):
        torch.manual_seed(seed)
        blocks.append(ODEBlock(spec.build(8), SolverSettings(adjoint=True, seminorm=seminorm)))
    full, semi = (gradients(block, x) for block in blocks)
    for a, b in zip(full, semi):
        assert (a - b).norm() <= 5e-2 * a.norm()  # equal up to the error of a 1e-3 adjoint solve
    assert blocks[1].nfe_backward < 0.8 * blocks[0].nfe_backward


def test_nfe_counts_forward_and_backward_separately():
    block = mlp_block(method="rk4", step_size=0.25)
    x = torch.randn(4, 3)
    out = block(x)
    assert block.nfe_forward == 16  # four steps of four evaluations
    assert block.nfe_backward == 0
    out.sum().backward()
    assert block.nfe_backward == 16  # one vector-Jacobian product through each evaluation
    block(x)
    assert (block.nfe_forward, block.nfe_backward) == (16, 0)  # counts restart every call


def test_adjoint_backward_nfe_counts_the_adjoint_solve():
    block = mlp_block(method="rk4", step_size=0.25, adjoint=True)
    block(torch.randn(4, 3)).sum().backward()
    assert block.nfe_forward == 16
    assert block.nfe_backward == 16  # the adjoint solve: four rk4 steps backwards


class Linear(nn.Module):
    """dy/dt = -y: y(t) = y0 exp(-t), known at every time."""

    def forward(self, t, y):
        return -y


@pytest.mark.parametrize(
    ("t0", "times"),
    [
        (0.0, [0.1, 0.15, 0.7, 2.0]),  # irregular, t0 not included
        (0.0, [0.0, 0.3, 1.1]),  # t0 included
        (1.0, [0.6, -0.4, -1.0]),  # decreasing: backwards in time
        (0.0, [0.5]),  # a single read-out time
        (0.0, [0.0]),  # just the start
    ],
)
def test_trajectory_at_time_grids(t0, times):
    block = ODEBlock(Linear(), SolverSettings(rtol=1e-8, atol=1e-8), t0=t0, t1=t0 + 1)
    x = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    states = block(x, times)
    assert states.shape == (len(times), 1, 2)
    expected = torch.stack([x * math.exp(-(t - t0)) for t in times])
    torch.testing.assert_close(states, expected, rtol=1e-6, atol=1e-8)


def test_end_state_backwards_in_time():
    block = ODEBlock(Linear(), SolverSettings(rtol=1e-8, atol=1e-8), t0=1.0, t1=0.0)
    out = block(torch.ones(1, dtype=torch.float64))
    assert float(out) == pytest.approx(math.e, rel=1e-6)


@pytest.mark.parametrize("times", [[0.2, 0.1], [0.5, 0.5], [-0.2, 0.3], []])
def test_bad_time_grids_are_rejected(times):
    block = ODEBlock(Linear(), SolverSettings())
    with pytest.raises(ValueError, match="times"):
        block(torch.ones(1), times)


class Blowup(nn.Module):
    """dy/dt = y^2, y(0) = 1: y = 1 / (1 - t) reaches infinity at t = 1."""

    def forward(self, t, y):
        return y * y


def test_step_size_underflow_names_the_time_and_nfe():
    block = ODEBlock(Blowup(), SolverSettings(rtol=1e-6, atol=1e-6), t1=2.0)
    with pytest.raises(ODESolveError) as failure:
        block(torch.ones(1, dtype=torch.float64))
    message = str(failure.value)
    assert "step size underflowed" in message or "NaN or infinite" in message
    reached = float(message.split("Reached t=")[1].split(" ")[0])
    assert 0.99 < reached <= 1.0  # it got right up to the singularity
    assert f"after {block.nfe_forward} function evaluations" in message
    assert block.nfe_forward > 50


def test_max_steps_reached():
    block = ODEBlock(Blowup(), SolverSettings(rtol=1e-9, atol=1e-9, max_steps=10), t1=0.9)
    with pytest.raises(ODESolveError, match=r"maximum number of steps.*Reached t=0\.\d+ of \[0, 0\.9\]"):
        block(torch.ones(1, dtype=torch.float64))


def test_nan_in_a_fixed_step_solve():
    block = ODEBlock(Blowup(), SolverSettings(method="euler", step_size=0.25), t1=10.0)
    with pytest.raises(ODESolveError, match=r"NaN or infinite.*method=euler"):
        block(torch.full((1,), 50.0))


def test_scipy_solver_refuses_to_train_but_evaluates():
    block = mlp_block(method="scipy_solver")
    with pytest.raises(ValueError, match="does not propagate gradients"):
        block(torch.randn(2, 3))
    with torch.no_grad():
        assert block(torch.randn(2, 3)).shape == (2, 3)


def test_zero_length_span_is_rejected():
    with pytest.raises(ValueError, match="t1 != t0"):
        ODEBlock(Linear(), t0=1.0, t1=1.0)

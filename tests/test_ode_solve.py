"""solve(): tuple states, learnable times, context, stats of many solves, adjoint failures."""

import subprocess
import sys

import pytest
import torch
from torch import nn

from zoo.ode import (
    ODEBlock,
    ODESolveError,
    SolverSettings,
    gather,
    pad_times,
    recording,
    scatter,
    solve,
    union_of_times,
)

TIGHT = {"rtol": 1e-10, "atol": 1e-10}
ADJOINT = {**TIGHT, "adjoint": True}


class Coupled(nn.Module):
    """A tuple state (a, b): da/dt = tanh(W a) + b, db/dt = -a * b."""

    def __init__(self, dim=3):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(dim, dim).double()

    def forward(self, t, state):
        a, b = state
        return torch.tanh(self.linear(a)) + b, -a * b


def finite_difference(loss_of, tensor, eps=1e-6):
    grad = torch.zeros_like(tensor)
    flat = tensor.view(-1)
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + eps
        up = loss_of()
        flat[i] = old - eps
        down = loss_of()
        flat[i] = old
        grad.view(-1)[i] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize("settings", [TIGHT, ADJOINT], ids=["direct", "adjoint"])
def test_tuple_state_gradients_match_finite_differences(settings):
    dynamics = Coupled()
    a0 = torch.tensor([[0.3, -0.2, 0.5]], dtype=torch.float64, requires_grad=True)
    b0 = torch.tensor([[0.1, 0.4, -0.3]], dtype=torch.float64, requires_grad=True)

    def loss(a=a0, b=b0):
        a1, b1 = solve(dynamics, (a, b), [0.0, 1.0], settings).end
        return (a1.pow(2).sum() + b1.sum())

    loss().backward()
    a_copy, weight = a0.detach().clone(), dynamics.linear.weight
    with torch.no_grad():
        expected_a = finite_difference(lambda: float(loss(a=a_copy)), a_copy)
        expected_w = finite_difference(lambda: float(loss(a=a_copy)), weight.data)
    assert torch.allclose(a0.grad, expected_a, rtol=1e-5, atol=1e-7)
    assert torch.allclose(weight.grad, expected_w, rtol=1e-5, atol=1e-7)
    assert b0.grad is not None and torch.isfinite(b0.grad).all()


def test_per_component_tolerances_are_accepted_for_tuple_states():
    a0, b0 = torch.ones(1, 3, dtype=torch.float64), torch.ones(1, 3, dtype=torch.float64)
    solution = solve(Coupled(), (a0, b0), [0.0, 1.0], {"rtol": [1e-6, 1e-3], "atol": [1e-6, 1e-3]})
    assert isinstance(solution.end, tuple) and solution.stats.nfe_forward > 0


class Decay(nn.Module):
    def __init__(self):
        super().__init__()
        self.rate = nn.Parameter(torch.tensor(0.7, dtype=torch.float64))

    def forward(self, t, y):
        return -self.rate * y + torch.sin(t)


@pytest.mark.parametrize("settings", [TIGHT, ADJOINT], ids=["direct", "adjoint"])
def test_learnable_end_time_gradient_matches_finite_differences(settings):
    dynamics = Decay()
    y0 = torch.tensor([1.0, 2.0], dtype=torch.float64)
    end = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)

    def loss(t1):
        return solve(dynamics, y0, torch.stack([torch.zeros_like(t1), t1]), settings).end.pow(2).sum()

    loss(end).backward()
    eps = 1e-6
    with torch.no_grad():
        expected = (loss(end + eps) - loss(end - eps)) / (2 * eps)
        y1 = solve(dynamics, y0, [0.0, 1.3], TIGHT).end
        exact = (2 * y1 * dynamics(torch.tensor(1.3, dtype=torch.float64), y1)).sum()  # dL/dy . f
    assert end.grad == pytest.approx(float(expected), rel=1e-6)
    assert end.grad == pytest.approx(float(exact), rel=1e-6)
    assert dynamics.rate.grad is not None


def test_learnable_times_on_a_grid_and_in_a_block():
    dynamics = Decay()
    times = torch.tensor([0.0, 0.4, 1.1], dtype=torch.float64, requires_grad=True)
    ys = solve(dynamics, torch.ones(2, dtype=torch.float64), times, TIGHT).ys
    expected = solve(dynamics, torch.ones(2, dtype=torch.float64), times.detach(), TIGHT).ys
    assert torch.allclose(ys, expected, atol=1e-8)
    ys[-1].sum().backward()
    assert times.grad[1].abs() < 1e-6  # an inner read-out time does not change the end state
    assert times.grad[2] != 0

    # bosh3 (rtol = atol = 1e-3) steps on its outputs by default; rk4's steps must meet the knots
    for method, error in (("bosh3", 2e-3), ("rk4", 1e-5)):
        y0 = torch.ones(2, dtype=torch.float64)
        on_grid = solve(dynamics, y0, times, {"method": method, "step_size": 0.1})
        assert torch.allclose(on_grid.ys, expected, atol=error)

    block = ODEBlock(Decay(), SolverSettings(**ADJOINT), t1=1.0, learn_t1=True)
    block(torch.ones(3, dtype=torch.float64)).sum().backward()
    assert block.end_time.grad is not None and block.end_time.grad != 0


class Conditioned(nn.Module):
    def __init__(self, dim=4):
        super().__init__()
        torch.manual_seed(1)
        self.linear = nn.Linear(dim, dim).double()

    def forward(self, t, y, context):
        return torch.tanh(self.linear(y) + context["shift"]) * context["scale"]


def test_context_gradients_under_the_adjoint_equal_direct_backprop():
    grads = []
    for settings in (TIGHT, ADJOINT):
        dynamics = Conditioned()
        torch.manual_seed(2)
        source = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
        scale = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
        shift = torch.sin(source)  # a non-leaf context, as an encoder's output would be
        y0 = torch.ones(2, 4, dtype=torch.float64)
        out = solve(dynamics, y0, [0.0, 1.0], settings, context={"shift": shift, "scale": scale}).end
        out.pow(2).sum().backward()
        grads.append((source.grad, scale.grad, dynamics.linear.weight.grad))
    for direct, adjoint in zip(*grads):
        assert direct is not None and torch.allclose(direct, adjoint, rtol=1e-6, atol=1e-9)


class Counting(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        return torch.tanh(self.linear(y))


@pytest.mark.parametrize("adjoint", [False, True])
def test_nfe_of_ten_solves_in_one_step_is_their_sum(adjoint):
    dynamics = Counting()
    settings = {"method": "rk4", "step_size": 0.125, "adjoint": adjoint}
    y = torch.ones(3, 2)
    solutions = []
    with recording() as log:
        for k in range(10):  # ten intervals of 0.25: two rk4 steps of four evaluations each
            solutions.append(solve(dynamics, y, [0.25 * k, 0.25 * (k + 1)], settings))
            y = solutions[-1].end
    forward_calls = dynamics.calls
    y.sum().backward()
    assert len(log) == 10
    assert log.nfe_forward == forward_calls == 10 * 2 * 4
    assert [s.stats.steps_accepted for s in solutions] == [2] * 10
    if adjoint:  # the adjoint solves call the dynamics again: four per step, backwards
        assert log.nfe_backward == dynamics.calls - forward_calls == 80
        assert sum(s.stats.steps_accepted_backward for s in solutions) == 20
    else:  # one vector-Jacobian product through each recorded evaluation
        assert log.nfe_backward == 80 and dynamics.calls == forward_calls
    assert log.nfe_backward == sum(s.stats.nfe_backward for s in solutions)


def test_adaptive_stats_count_accepted_and_rejected_steps():
    solution = solve(Decay(), torch.ones(2, dtype=torch.float64), [0.0, 5.0], {"rtol": 1e-8, "atol": 1e-8})
    stats = solution.stats
    assert stats.steps_accepted > 5
    assert stats.nfe_forward >= 6 * (stats.steps_accepted + stats.steps_rejected)
    assert stats.t_reached == pytest.approx(5.0)


def test_union_of_times_round_trips_times_values_and_masks():
    torch.manual_seed(3)
    samples = [torch.tensor([0.0, 0.5, 1.0]), torch.tensor([0.2, 0.5]), torch.tensor([0.0, 0.3, 0.7, 1.0])]
    times, mask = pad_times(samples)
    union = union_of_times(times, mask)
    assert union.times.tolist() == pytest.approx([0.0, 0.2, 0.3, 0.5, 0.7, 1.0])
    assert torch.equal(union.times[union.index][mask], times[mask])
    # states on the union, (U, B, D): a known function of time and sample
    states = torch.stack([union.times * (b + 1) for b in range(3)], dim=1).unsqueeze(-1).repeat(1, 1, 2)
    own = gather(states, union)
    for b, sample in enumerate(samples):
        assert torch.allclose(own[b, : len(sample), 0], sample * (b + 1))
        assert (own[b, len(sample):] == 0).all()
    values = torch.randn(3, times.shape[1], 5) * mask.unsqueeze(-1)
    on_union, observed = scatter(values, union)
    assert on_union.shape == (6, 3, 5) and observed.sum() == mask.sum()
    assert torch.equal(gather(on_union, union), values)
    with pytest.raises(ValueError, match="must be"):
        gather(states[:2], union)


def test_a_failed_adjoint_solve_is_an_ode_solve_error():
    class Stiff(nn.Module):
        def __init__(self):
            super().__init__()
            self.rate = nn.Parameter(torch.tensor(30.0, dtype=torch.float64))

        def forward(self, t, y):
            return -self.rate * (y - torch.cos(t))

    settings = {"rtol": 1e-2, "atol": 1e-2, "max_steps": 40, "adjoint": True,
                "adjoint_rtol": 1e-12, "adjoint_atol": 1e-12}
    solution = solve(Stiff(), torch.ones(1, dtype=torch.float64), [0.0, 2.0], settings)
    assert solution.stats.steps_accepted < 40  # the forward solve succeeds
    with pytest.raises(ODESolveError, match=r"ODE adjoint solve failed: the solver took its maximum number"
                                            r".*Reached t=.* of the backward pass from 2 to 0 after \d+ "):
        solution.end.sum().backward()
    assert solution.stats.nfe_backward > 40


def test_leapfrog_evaluates_only_the_half_it_needs():
    class Halves(nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = {"q": 0, "p": 0}

        def forward(self, t, y):
            raise AssertionError("leapfrog should not evaluate the whole field")

        def half_rate(self, t, y, part):
            self.calls[part] += 1
            q, p = y.chunk(2, dim=1)
            return p if part == "q" else -q

    dynamics = Halves()
    leapfrog = {"method": "leapfrog", "step_size": 0.1}
    solution = solve(dynamics, torch.tensor([[1.0, 0.0]]), [0.0, 1.0], leapfrog)
    assert dynamics.calls == {"q": 10, "p": 11} and solution.stats.nfe_forward == 21
    assert solution.end[0, 0] == pytest.approx(torch.cos(torch.tensor(1.0)).item(), abs=1e-2)
    backwards = solve(dynamics, solution.end, [1.0, 0.0], leapfrog)
    assert torch.allclose(backwards.end, torch.tensor([[1.0, 0.0]]), atol=1e-5)  # time-reversible


def test_stepping_on_outputs_meets_the_tolerance_at_every_time():
    grid = torch.linspace(0, 5, 41, dtype=torch.float64)
    exact = torch.exp(-grid)
    errors, nfe = {}, {}
    for on_outputs in (False, True):
        solution = solve(lambda t, y: -y, torch.ones(1, dtype=torch.float64), grid,
                         {"method": "bosh3", "rtol": 1e-6, "atol": 1e-6}, step_to_outputs=on_outputs)
        errors[on_outputs] = float((solution.ys[:, 0] - exact).abs().max())
        nfe[on_outputs] = solution.stats.nfe_forward
    assert errors[True] < 1e-5
    assert nfe[True] > nfe[False]


def test_partial_solver_settings_keep_the_family_defaults():
    from zoo.models import ANODE

    model = ANODE(input_shape=(1, 4, 4), augment_dim=1, dynamics={"name": "anode_conv", "hidden_dims": [4]},
                  solver={"rtol": 1e-4})
    assert model.hparams.solver["adjoint"] is True and model.hparams.solver["rtol"] == 1e-4
    assert ANODE(input_shape=(1, 4, 4), solver=SolverSettings(atol=1e-5)).net.body.solver.adjoint


def test_import_zoo_ode_leaves_lightning_out():
    code = "import sys, zoo.ode; print(sorted(m for m in sys.modules if m.split('.')[0] == 'lightning'))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

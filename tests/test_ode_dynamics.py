"""The dynamics registry, DynamicsSpec, and the leapfrog solver's energy conservation."""

import pytest
import torch
from torch import nn

from zoo.ode import DYNAMICS, DynamicsSpec, ODEBlock, SolverSettings, UnknownNameError


@pytest.mark.parametrize(("name", "state"), [("odenet_conv", (2, 8, 5, 5)), ("concat_mlp", (3, 4))])
def test_every_registered_dynamics_keeps_the_state_shape_and_sees_time(name, state):
    assert name in DYNAMICS
    torch.manual_seed(0)
    f = DynamicsSpec(name, options={"groups": 4} if name == "odenet_conv" else {}).build(state[1])
    y = torch.randn(*state)
    assert f(torch.tensor(0.0), y).shape == y.shape
    assert not torch.allclose(f(torch.tensor(0.0), y), f(torch.tensor(1.0), y))


def test_registry_covers_all_names():
    assert set(DYNAMICS.names()) >= {"odenet_conv", "concat_mlp"}


def test_odenet_conv_parameter_count():
    f = DynamicsSpec("odenet_conv").build(64)
    assert sum(p.numel() for p in f.parameters()) == 75_392  # 3 GroupNorms + 2 ConcatConv2d(65->64)


def test_concat_mlp_widths():
    f = DynamicsSpec("concat_mlp", hidden_dims=[32, 32]).build(2)
    widths = [(m.in_features, m.out_features) for m in f.modules() if isinstance(m, nn.Linear)]
    assert widths == [(3, 32), (32, 32), (32, 2)]  # Dupont et al.'s (d+1 -> 32 -> 32 -> d)


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ({"name": "odenet_cnov"}, UnknownNameError, "Did you mean 'odenet_conv'"),
        ({"name": "concat_mlp", "options": {"activaton": "tanh"}}, ValueError,
         r"no option\(s\) \['activaton'\]; its options are \['activation'\]"),
        ({"name": "concat_mlp", "options": {"activation": "swish"}}, ValueError,
         "unknown activation 'swish'"),
        ({"name": "odenet_conv", "hidden_dims": [8, 8]}, ValueError, "takes 1 hidden width"),
    ],
)
def test_bad_specs_fail_clearly(spec, error, message):
    with pytest.raises(error, match=message):
        DynamicsSpec(**spec).build(4)


class Oscillator(nn.Module):
    """Harmonic oscillator, H = (q^2 + p^2) / 2: dq/dt = p, dp/dt = -q."""

    def forward(self, t, y):
        q, p = y.chunk(2, dim=-1)
        return torch.cat([p, -q], dim=-1)


def energy_over(method, steps=10_000, h=0.5):
    block = ODEBlock(Oscillator(), SolverSettings(method=method, step_size=h), t1=steps * h)
    times = torch.arange(1, steps + 1, dtype=torch.float64) * h
    states = block(torch.tensor([[1.0, 0.0]], dtype=torch.float64), times)
    return 0.5 * states.pow(2).sum(dim=-1).squeeze(-1)  # E0 = 0.5


def test_verlet_conserves_energy_far_better_than_euler_and_rk4():
    # Euler's energy grows as (1 + h^2)^N and overflows float64 before 10,000 steps: 1,000 here.
    verlet, rk4, euler = energy_over("leapfrog"), energy_over("rk4"), energy_over("euler", 1_000)
    drift = {name: float((e - 0.5).abs().max() / 0.5) for name, e in
             (("leapfrog", verlet), ("rk4", rk4), ("euler", euler))}
    assert drift["leapfrog"] < 0.07  # bounded: the modified energy of Verlet, O(h^2)
    assert float((verlet[-1000:] - 0.5).abs().max() / 0.5) < 0.07  # no drift after 10,000 steps
    assert drift["rk4"] > 0.8  # RK4 dissipates: (1 - h^6/72)^10000 of the energy is left
    assert drift["euler"] > 1e6
    assert drift["leapfrog"] < drift["rk4"] / 10


def test_leapfrog_rejects_an_odd_state():
    block = ODEBlock(Oscillator(), SolverSettings(method="leapfrog", step_size=0.1))
    with pytest.raises(ValueError, match="two equal halves"):
        block(torch.ones(1, 3))

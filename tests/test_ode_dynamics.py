"""The dynamics registry, DynamicsSpec, and the leapfrog solver's energy conservation."""

import pytest
import torch
from torch import nn

from zoo.ode import DYNAMICS, DynamicsSpec, ODEBlock, ODESolveError, SolverSettings, UnknownNameError

# The state each dynamics is tried on (default: a batch of vectors), small widths and options.
STATES = {"odenet_conv": (2, 8, 5, 5), "anode_conv": (2, 6, 5, 5), "hamiltonian": (3, 6),
          "concat_conv": (2, 3, 5, 5), "concat_squash_conv": (2, 3, 5, 5)}
HIDDEN = {"anode_conv": [8], "concat_conv": [8], "concat_squash_conv": [8]}
OPTIONS = {"odenet_conv": {"groups": 4}}
TIME_INDEPENDENT = {"standard", "antisymmetric", "hamiltonian"}  # Haber & Ruthotto: shared weights


@pytest.mark.parametrize("name", DYNAMICS.names())
def test_every_registered_dynamics_keeps_the_state_shape(name):
    torch.manual_seed(0)
    state = STATES.get(name, (3, 4))
    f = DynamicsSpec(name, hidden_dims=HIDDEN.get(name), options=OPTIONS.get(name, {})).build(state[1])
    y = torch.randn(*state)
    at_0, at_1 = f(torch.tensor(0.0), y), f(torch.tensor(1.0), y)
    assert at_0.shape == y.shape
    assert torch.equal(at_0, at_1) == (name in TIME_INDEPENDENT)  # the others see time


def test_registry_covers_all_names():
    expected = {"odenet_conv", "concat_mlp", "anode_conv", "standard", "antisymmetric", "hamiltonian"}
    assert set(DYNAMICS.names()) >= expected


def test_odenet_conv_parameter_count():
    f = DynamicsSpec("odenet_conv").build(64)
    assert sum(p.numel() for p in f.parameters()) == 75_392  # 3 GroupNorms + 2 ConcatConv2d(65->64)


def test_anode_conv_parameter_count():
    # Dupont et al.'s MNIST ANODE: 1 + 5 augmented channels, 64 filters; each conv sees time.
    f = DynamicsSpec("anode_conv", hidden_dims=[64]).build(1 + 5)
    conv1 = (6 + 1) * 64 * 1 * 1 + 64  # 1x1, 7 -> 64
    conv2 = (64 + 1) * 64 * 3 * 3 + 64  # 3x3, 65 -> 64
    conv3 = (64 + 1) * 6 * 1 * 1 + 6  # 1x1, 65 -> 6
    assert sum(p.numel() for p in f.parameters()) == conv1 + conv2 + conv3 == 38_412
    head = 6 * 28 * 28 * 10 + 10  # the paper's linear head on the flattened augmented state
    assert 84_000 < conv1 + conv2 + conv3 + head < 86_000  # "~85k params" (ANCHORS.md)
    assert DynamicsSpec("anode_conv").build(6).conv2.conv.out_channels == 64  # default [64]


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
        ({"name": "anode_conv", "hidden_dims": [8, 8]}, ValueError, "takes 1 hidden width"),
        ({"name": "antisymmetric", "hidden_dims": [8]}, ValueError, "antisymmetric has no hidden layers"),
        ({"name": "antisymmetric", "options": {"gamma": -0.1}}, ValueError, "gamma must be"),
        ({"name": "hamiltonian", "hidden_dims": [2]}, ValueError, "hamiltonian has no hidden layers"),
        ({"name": "hamiltonian", "options": {"activation": "swish"}}, ValueError,
         "unknown activation 'swish'"),
    ],
)
def test_bad_specs_fail_clearly(spec, error, message):
    with pytest.raises(error, match=message):
        DynamicsSpec(**spec).build(4)


@pytest.mark.parametrize("gamma", [0.0, 0.1])
def test_antisymmetric_eigenvalues_have_real_part_minus_gamma(gamma):
    torch.manual_seed(0)
    f = DynamicsSpec("antisymmetric", options={"gamma": gamma}).build(7).double()
    eigenvalues = torch.linalg.eigvals(f.weight())
    torch.testing.assert_close(eigenvalues.real, torch.full((7,), -gamma, dtype=torch.float64),
                               rtol=0, atol=1e-6)
    assert eigenvalues.imag.abs().max() > 0.1  # a rotation, not a plain decay
    y = torch.randn(4, 7, dtype=torch.float64)
    torch.testing.assert_close(f(0.0, y), torch.tanh(y @ f.weight().T + f.bias.at(0.0)))


def test_hamiltonian_is_separable_as_leapfrog_needs():
    # Leapfrog's halves (q, p) are the Hamiltonian's (y, z): dy/dt sees z only, dz/dt sees y only.
    torch.manual_seed(0)
    f = DynamicsSpec("hamiltonian").build(6)
    state, moved = torch.randn(5, 6), torch.randn(5, 6)
    dy, dz = f(0.0, state).chunk(2, dim=1)
    new_y = torch.cat([moved[:, :3], state[:, 3:]], dim=1)
    new_z = torch.cat([state[:, :3], moved[:, 3:]], dim=1)
    torch.testing.assert_close(f(0.0, new_y)[:, :3], dy)  # dy/dt does not see y
    torch.testing.assert_close(f(0.0, new_z)[:, 3:], dz)  # dz/dt does not see z
    assert not torch.allclose(f(0.0, new_y)[:, 3:], dz)  # but sees y
    y, z = state.chunk(2, dim=1)
    torch.testing.assert_close(dy, torch.tanh(z @ f.kernel.at(0.0).T + f.bias_y.at(0.0)))
    torch.testing.assert_close(dz, -torch.tanh(y @ f.kernel.at(0.0) + f.bias_z.at(0.0)))


@pytest.mark.parametrize("name", ["standard", "antisymmetric", "hamiltonian"])
def test_stable_weights_interpolate_between_knots_over_time(name):
    # 5 knots over [0, 2]: knot k sits at t = k / 2; between knots the weights mix the two
    # neighbours linearly; beyond the span they stay at the end values.
    torch.manual_seed(0)
    f = DynamicsSpec(name, options={"knots": 5, "span": 2.0}).build(6).double()
    values = f.kernel.values
    assert values.shape[0] == 5 and not torch.allclose(values[1], values[2])
    torch.testing.assert_close(f.kernel.at(0.5), values[1])
    torch.testing.assert_close(f.kernel.at(torch.tensor(0.75)), (values[1] + values[2]) / 2)
    torch.testing.assert_close(f.kernel.at(7.0), values[4])
    torch.testing.assert_close(f.kernel.at(-1.0), values[0])
    y = torch.randn(3, 6, dtype=torch.float64)
    assert not torch.allclose(f(torch.tensor(0.5), y), f(torch.tensor(1.5), y))
    # a solve reaches every knot, and only the knots it passes get gradients
    f(torch.tensor(0.6), y).sum().backward()
    touched = values.grad.flatten(1).abs().sum(1) > 0
    assert touched.tolist() == [False, True, True, False, False]


def test_antisymmetric_stays_antisymmetric_between_knots():
    torch.manual_seed(0)
    f = DynamicsSpec("antisymmetric", options={"gamma": 0.05, "knots": 3, "span": 1.0}).build(5).double()
    eigenvalues = torch.linalg.eigvals(f.weight(torch.tensor(0.3)))
    torch.testing.assert_close(eigenvalues.real, torch.full((5,), -0.05, dtype=torch.float64),
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize(("options", "message"), [
    ({"knots": 0}, "knots must be a positive integer"),
    ({"knots": 2.5}, "knots must be a positive integer"),
    ({"knots": 3, "span": 0.0}, "span must be a finite time > 0"),
])
def test_bad_knots_fail_clearly(options, message):
    with pytest.raises(ValueError, match=message):
        DynamicsSpec("hamiltonian", options=options).build(4)


def test_hamiltonian_rejects_an_odd_width():
    with pytest.raises(ValueError, match="dim=5 is odd"):
        DynamicsSpec("hamiltonian").build(5)


class Oscillator(nn.Module):
    """Harmonic oscillator, H = (q^2 + p^2) / 2: dq/dt = p, dp/dt = -q."""

    def forward(self, t, y):
        q, p = y.chunk(2, dim=-1)
        return torch.cat([p, -q], dim=-1)


def linear_hamiltonian_net():
    """Haber & Ruthotto's Hamiltonian net, identity activation, no biases: dy/dt = K z, dz/dt = -K^T y.

    It keeps E = (|y|^2 + |z|^2) / 2, as dE/dt = y.Kz - z.K^T y = 0. K is scaled to spectral norm 1:
    its fastest mode has the oscillator's frequency, 1.
    """
    torch.manual_seed(0)
    f = DynamicsSpec("hamiltonian", options={"activation": "identity"}).build(8).double()
    with torch.no_grad():
        f.bias_y.values.zero_()
        f.bias_z.values.zero_()
        f.kernel.values /= torch.linalg.matrix_norm(f.kernel.values, ord=2, keepdim=True)
    return f, torch.randn(3, 8, dtype=torch.float64)


SYSTEMS = {
    "oscillator": lambda: (Oscillator(), torch.tensor([[1.0, 0.0]], dtype=torch.float64)),
    "hamiltonian_net": linear_hamiltonian_net,
}


def energy_drift(system, method, steps=10_000, h=0.5):
    """|E(t) / E(0) - 1| of E = |state|^2 / 2 after each of ``steps`` steps of ``h``, per sample."""
    dynamics, y0 = SYSTEMS[system]()
    block = ODEBlock(dynamics, SolverSettings(method=method, step_size=h), t1=steps * h)
    times = torch.arange(1, steps + 1, dtype=torch.float64) * h
    with torch.no_grad():
        states = block(y0, times)
    return (states.pow(2).sum(dim=-1) / y0.pow(2).sum(dim=-1) - 1).abs()


@pytest.mark.parametrize("system", SYSTEMS)
def test_verlet_conserves_energy_far_better_than_euler_and_rk4(system):
    # 10,000 steps of h = 0.5 (h * fastest frequency = 0.5), the same step for every method.
    verlet, rk4 = energy_drift(system, "leapfrog"), energy_drift(system, "rk4")
    # Verlet keeps a modified energy: E stays within (h w)^2/4 / (1 - (h w)^2/4) = 0.067, no drift.
    assert verlet.max() < 0.07
    # RK4 dissipates: a mode keeps (1 - (h w)^6/72)^10000 of its energy, 12% at h w = 0.5.
    assert rk4[-1].max() > 10 * verlet.max()
    # Euler multiplies a mode's energy by 1 + (h w)^2 a step: 1.25^1000 after 1,000 steps, and
    # float64 overflows before 10,000.
    assert energy_drift(system, "euler", steps=1_000).max() > 1e6
    with pytest.raises(ODESolveError, match="NaN or infinite"):
        energy_drift(system, "euler")


def test_leapfrog_rejects_an_odd_state():
    block = ODEBlock(Oscillator(), SolverSettings(method="leapfrog", step_size=0.1))
    with pytest.raises(ValueError, match="two equal halves"):
        block(torch.ones(1, 3))

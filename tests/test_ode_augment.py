"""ODEBlock's augmentation (Dupont et al. 2019, "Augmented Neural ODEs"): shapes, zeros, gradients."""

import math

import pytest
import torch
from torch import nn

from zoo.ode import DynamicsSpec, ODEBlock, SolverSettings

MLP = DynamicsSpec("concat_mlp", hidden_dims=[16, 16], options={"activation": "tanh"})
CONV = DynamicsSpec("anode_conv", hidden_dims=[4])
SMOOTH_CONV = DynamicsSpec("anode_conv", hidden_dims=[4], options={"activation": "softplus"})


def augmented_block(spec, dim, augment_dim, seed=0, **settings):
    torch.manual_seed(seed)
    return ODEBlock(spec.build(dim + augment_dim), SolverSettings(**settings), augment_dim=augment_dim)


@pytest.mark.parametrize(
    ("spec", "shape", "augmented"),
    [(MLP, (4, 2), (4, 5)), (CONV, (2, 1, 6, 6), (2, 4, 6, 6))],
    ids=["vectors", "images"],
)
def test_shapes_and_the_appended_zeros(spec, shape, augmented):
    block = augmented_block(spec, shape[1], augment_dim=3)
    assert block.augment_dim == 3
    x = torch.randn(*shape)
    assert block(x).shape == augmented
    states = block(x, times=[0.0, 0.5, 1.0])
    assert states.shape == (3, *augmented)
    torch.testing.assert_close(states[0, :, : shape[1]], x)
    assert torch.equal(states[0, :, shape[1]:], torch.zeros(shape[0], 3, *shape[2:]))  # starts at zero
    assert states[-1, :, shape[1]:].abs().max() > 0  # and the dynamics move it
    assert block(x, times=[0.0]).shape == (1, *augmented)
    assert block(x, times=[0.5, 1.0]).shape == (2, *augmented)


def gradients(block, x):
    """d(|output|^2)/d(input, parameters), flattened into one vector."""
    x = x.clone().requires_grad_(True)
    block.zero_grad()
    block(x).pow(2).sum().backward()
    return torch.cat([g.flatten() for g in (x.grad, *(p.grad for p in block.parameters()))])


TIGHT = {"rtol": 1e-7, "atol": 1e-7}


@pytest.mark.parametrize(
    ("spec", "shape", "settings", "tolerance"),
    [
        (MLP, (8, 2), TIGHT, 1e-5),
        (SMOOTH_CONV, (2, 1, 5, 5), TIGHT, 1e-5),
        (CONV, (2, 1, 5, 5), {"method": "rk4", "step_size": 0.05}, 1e-5),
        # ReLU's kinks leave direct backprop through dopri5's adaptive steps ~1e-3 off the true
        # gradient (against rk4 at h = 1e-3: 1.5e-3 direct, 4e-5 adjoint); the adjoint's error is
        # controlled, but its discontinuous right-hand side takes ~3,600 evaluations.
        pytest.param(CONV, (2, 1, 5, 5), {**TIGHT, "seminorm": True}, 5e-3, marks=pytest.mark.slow),
    ],
    ids=["mlp-dopri5", "softplus-conv-dopri5", "relu-conv-rk4", "relu-conv-dopri5"],
)
def test_adjoint_gradients_equal_direct_backprop(spec, shape, settings, tolerance):
    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    direct_settings = {k: v for k, v in settings.items() if k != "seminorm"}
    direct = augmented_block(spec, shape[1], augment_dim=2, **direct_settings).double()
    adjoint = augmented_block(spec, shape[1], augment_dim=2, adjoint=True, **settings).double()
    expected, got = gradients(direct, x), gradients(adjoint, x)
    assert float((got - expected).norm() / expected.norm()) < tolerance


def test_augment_dim_zero_changes_nothing():
    torch.manual_seed(0)
    dynamics = MLP.build(3)
    plain, zero = ODEBlock(dynamics), ODEBlock(dynamics, augment_dim=0)
    assert plain.augment_dim == zero.augment_dim == 0
    x = torch.randn(5, 3)
    assert zero.augment(x) is x
    assert torch.equal(plain(x), zero(x))
    assert torch.equal(plain(x, times=[0.2, 0.7]), zero(x, times=[0.2, 0.7]))


@pytest.mark.parametrize("augment_dim", [-1, 2.5, True])
def test_bad_augment_dim_is_rejected(augment_dim):
    with pytest.raises(ValueError, match="augment_dim must be a non-negative integer"):
        ODEBlock(MLP.build(3), augment_dim=augment_dim)


def test_an_unbatched_state_cannot_be_augmented():
    block = ODEBlock(MLP.build(4), augment_dim=1)
    with pytest.raises(ValueError, match=r"batched state.*got shape \(3,\)"):
        block(torch.randn(3))


class Rotation(nn.Module):
    """A quarter turn per unit time in the (x, a) plane: dx/dt = -a, da/dt = x."""

    def forward(self, t, y):
        x, a = y.chunk(2, dim=1)
        return torch.cat([-a, x], dim=1)


def test_augmented_trajectories_can_cross():
    # No 1-D flow maps -1 -> 1 and 1 -> -1 (its trajectories cannot cross); one augmented
    # dimension is enough: a half turn (Dupont et al. 2019, Sec. 4).
    block = ODEBlock(Rotation(), SolverSettings(rtol=1e-8, atol=1e-8), t1=math.pi, augment_dim=1)
    out = block(torch.tensor([[-1.0], [1.0]], dtype=torch.float64))
    torch.testing.assert_close(out, torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64),
                               rtol=0, atol=1e-6)


def test_hamiltonian_starts_from_z_zero_with_leapfrog():
    # Haber & Ruthotto 2017: y(0) = x, z(0) = 0, integrated with Verlet.
    torch.manual_seed(0)
    block = ODEBlock(DynamicsSpec("hamiltonian").build(2 * 3),
                     SolverSettings(method="leapfrog", step_size=0.1), augment_dim=3)
    x = torch.randn(4, 3)
    states = block(x, times=[0.0, 1.0])
    assert states.shape == (2, 4, 6)
    torch.testing.assert_close(states[0], torch.cat([x, torch.zeros(4, 3)], dim=1))
    assert block.nfe_forward == 21  # leapfrog: 10 steps, two evaluations each after the first

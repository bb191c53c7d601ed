"""FFJORD flows: the divergence, the change of variables, the regularizers and the three trainers."""

import math

import numpy as np
import pytest
import torch
from lightning import Trainer

from zoo.data.densities import (
    DENSITIES,
    Density2dDataModule,
    DigitsDataModule,
    eight_gaussians,
    eight_gaussians_log_prob,
)
from zoo.models.ffjord import FFJORD, Pixels, optimal_pairs
from zoo.ode import DynamicsSpec, solve
from zoo.ode.cnf import CNFField, draw_probe, initial_state

SMALL = {"name": "concat_squash", "hidden_dims": [32, 32]}


def small_field(dim=2, seed=0):
    torch.manual_seed(seed)
    return DynamicsSpec("concat_squash", [16, 16]).build(dim)


def test_the_exact_divergence_is_the_trace_of_the_autograd_jacobian():
    field, z, t = small_field(3), torch.randn(6, 3), torch.tensor(0.4)
    dz, minus_divergence, kinetic, frobenius = CNFField(field, "exact")(t, initial_state(z))
    one = lambda x: field(t, x[None])[0]  # noqa: E731
    jacobians = torch.stack([torch.autograd.functional.jacobian(one, zi) for zi in z])
    assert torch.allclose(dz, field(t, z), atol=1e-6)
    assert torch.allclose(-minus_divergence, jacobians.diagonal(dim1=1, dim2=2).sum(-1), atol=1e-5)
    assert torch.allclose(frobenius, jacobians.pow(2).sum((1, 2)), atol=1e-5)
    assert torch.allclose(kinetic, dz.pow(2).sum(-1), atol=1e-6)


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(kind):
    """The mean of N probes' estimates is within 4 standard errors of the exact trace, per point."""
    field, t, n = small_field(3), torch.tensor(0.2), 20000
    z = torch.randn(4, 3)
    exact = -CNFField(field, "exact")(t, initial_state(z))[1]
    repeated = z.repeat_interleave(n, 0)
    probe = draw_probe(repeated, kind)
    estimates = -CNFField(field, "hutchinson")(t, initial_state(repeated), probe)[1].detach().reshape(4, n)
    error = (estimates.mean(1) - exact.detach()).abs()
    assert (error < 4 * estimates.std(1) / math.sqrt(n)).all(), (error, estimates.std(1))


def test_regularizers_are_zero_for_zero_dynamics_and_positive_otherwise():
    zero = DynamicsSpec("concat_squash", [8], {"zero_last": True}).build(2)
    z = torch.randn(5, 2)
    for divergence in ("exact", "hutchinson"):
        probe = draw_probe(z) if divergence == "hutchinson" else None
        _, delta, kinetic, frobenius = solve(CNFField(zero, divergence), initial_state(z), [0.0, 1.0],
                                             context=probe).end
        assert kinetic.abs().max() == 0 and frobenius.abs().max() == 0 and delta.abs().max() == 0
        _, _, kinetic, frobenius = solve(CNFField(small_field(), divergence), initial_state(z), [0.0, 1.0],
                                         context=probe).end
        assert (kinetic > 0).all() and (frobenius > 0).all()


def flow_shape(flow_matching):
    return {"end_time": 1.0, "learn_end_time": False} if flow_matching else {"end_time": 0.5}


def trained_flow(trainer="flow_matching", steps=150, **training):
    torch.manual_seed(0)
    flow_matching = trainer == "flow_matching"
    model = FFJORD(dynamics=SMALL, solver={"rtol": 1e-3, "atol": 1e-3},
                   test_solver={"rtol": 1e-5, "atol": 1e-5}, flow=flow_shape(flow_matching),
                   training={"trainer": trainer, **training})
    dm = Density2dDataModule("8gaussians", num_train=steps * 100, num_val=200, num_test=200)
    fit = Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False, limit_val_batches=0)
    fit.fit(model, datamodule=dm)
    return model.eval()


@pytest.fixture(scope="module")
def flow():
    return trained_flow()


def test_a_trained_flows_density_integrates_to_one(flow):
    edges = torch.linspace(-7, 7, 141)
    grid = torch.cartesian_prod(edges, edges)
    with torch.no_grad():
        density = flow.log_prob(grid).exp()
    integral = density.sum().item() * (edges[1] - edges[0]).item() ** 2
    assert integral == pytest.approx(1.0, abs=0.03)


def test_the_bundled_8gaussians_flow_has_unit_mass_and_the_true_density():
    """The shipped flow, trained to its recipe's end: its density on a grid against the known one."""
    import zoo
    from zoo.ode import SolverSettings

    model = zoo.load("cfm-ot-8gaussians")
    edges = torch.linspace(-7, 7, 141)
    grid, cell = torch.cartesian_prod(edges, edges), (edges[1] - edges[0]).item() ** 2
    with torch.no_grad():
        density = model.log_prob(grid, SolverSettings(method="dopri5", rtol=1e-4, atol=1e-4)).exp()
    truth = eight_gaussians_log_prob(grid).exp()
    assert density.sum().item() * cell == pytest.approx(1.0, abs=0.01)
    total_variation = 0.5 * (density - truth).abs().sum().item() * cell
    assert total_variation < 0.08, total_variation  # measured 0.056; an untrained flow: 0.89


def test_inverting_a_sample_returns_its_base_point(flow):
    z = torch.randn(50, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        x = flow.net.inverse(z, flow.test_solver)
        back = flow.net(x, flow.test_solver, "exact")[0]
    assert (x - z).abs().max() > 0.1  # the flow moved the points...
    assert torch.allclose(back, z, atol=1e-3)  # ...and brings them back
    assert flow.sample(7).shape == (7, 2)


@pytest.mark.parametrize("trainer, training", [
    ("likelihood", {}),
    ("likelihood", {"divergence": "hutchinson", "kinetic_weight": 0.01, "frobenius_weight": 0.01}),
    ("flow_matching", {"coupling": "independent"}),
    ("flow_matching", {"coupling": "ot"}),
])
def test_a_few_steps_of_each_trainer_lower_the_nll(trainer, training):
    dm = Density2dDataModule("8gaussians", num_test=500)
    dm.setup()
    x = dm.test_set.tensors[0]
    torch.manual_seed(0)
    flow_matching = trainer == "flow_matching"
    untrained = FFJORD(dynamics=SMALL, flow=flow_shape(flow_matching),
                       test_solver={"rtol": 1e-4, "atol": 1e-4})
    with torch.no_grad():
        before = -untrained.log_prob(x).mean().item()
        after = -trained_flow(trainer, steps=30, **training).log_prob(x).mean().item()
    assert after < before - 0.2, (before, after)


def test_optimal_pairs_minimize_the_squared_distance():
    x, z = torch.randn(32, 2), torch.randn(32, 2)
    paired = z[optimal_pairs(x, z)]
    assert sorted(paired.tolist()) == sorted(z.tolist())
    assert (x - paired).pow(2).sum() <= (x - z).pow(2).sum()


def test_eight_gaussians_has_its_known_entropy():
    x = torch.as_tensor(eight_gaussians(np.random.default_rng(0), 200_000))
    assert -eight_gaussians_log_prob(x).mean().item() == pytest.approx(2.83, abs=0.01)


@pytest.mark.parametrize("name", sorted(DENSITIES))
def test_every_toy_density_is_seeded_and_split(name):
    dm = Density2dDataModule(name, num_train=500, num_val=100, num_test=300, seed=3)
    dm.setup()
    again = Density2dDataModule(name, num_train=500, num_val=100, num_test=300, seed=3)
    again.setup()
    test = dm.test_set.tensors[0]
    assert test.shape == (300, 2) and torch.isfinite(test).all()
    assert torch.equal(test, again.test_set.tensors[0])
    assert not torch.equal(dm.train_set.tensors[0][:300], test)
    assert 0.5 < test.std().item() < 5


def test_checkerboard_is_uniform_on_half_the_squares():
    dm = Density2dDataModule("checkerboard", num_test=40_000)
    dm.setup()
    x = dm.test_set.tensors[0]
    assert x.abs().max() <= 4
    cells = torch.floor(x / 2).long() + 2  # 4 x 4 cells of side 2
    counts = torch.bincount(cells[:, 0] * 4 + cells[:, 1], minlength=16).reshape(4, 4)
    occupied = counts > 0
    assert occupied.sum() == 8 and (occupied ^ occupied.roll(1, 0)).all()  # alternating, as a checkerboard
    assert counts[occupied].float().std() / counts[occupied].float().mean() < 0.05


def test_pixels_dequantize_into_their_own_cell_and_come_back():
    pixels = torch.randint(0, 17, (50, 64)).float()
    y, log_det = Pixels(17)(pixels)
    assert torch.equal(Pixels(17).inverse(y), pixels)
    assert log_det.shape == (50,) and torch.isfinite(log_det).all()


def test_pixel_log_det_is_the_transforms_jacobian():
    """The logit transform's log-determinant, checked against autograd, less D log L."""
    pixels = torch.randint(0, 17, (3, 4)).float()
    torch.manual_seed(5)
    y, log_det = Pixels(17)(pixels)
    torch.manual_seed(5)
    noise = torch.rand_like(pixels)
    unit = ((pixels + noise) / 17).requires_grad_(True)
    s = 0.05 + 0.9 * unit
    transformed = torch.log(s) - torch.log1p(-s)
    (grad,) = torch.autograd.grad(transformed.sum(), unit)  # elementwise: the Jacobian's diagonal
    assert torch.allclose(y, transformed.detach(), atol=1e-6)
    assert torch.allclose(log_det, grad.log().sum(-1) - 4 * math.log(17), atol=1e-5)


def test_a_digits_flow_reports_bits_per_dimension_and_samples_pixels():
    pytest.importorskip("sklearn")
    dm = DigitsDataModule(batch_size=50)
    dm.setup()
    x = dm.test_set.tensors[0][:20]
    torch.manual_seed(0)
    model = FFJORD(input_shape=(64,), dynamics=SMALL, pixel_levels=17, flow=flow_shape(True),
                   training={"trainer": "flow_matching"}, test_solver={"rtol": 1e-4, "atol": 1e-4})
    with torch.no_grad():
        before = model.bits_per_dim(x).mean().item()
    fit = Trainer(max_steps=60, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False, limit_val_batches=0)
    fit.fit(model, datamodule=dm)
    with torch.no_grad():
        after = model.bits_per_dim(x).mean().item()
        samples = model.sample(5)
    assert 0 < after < before, (before, after)
    assert samples.shape == (5, 64) and samples.min() >= 0 and samples.max() <= 16
    assert torch.equal(samples, samples.round())


def test_zoo_fit_draws_the_density_and_zoo_predict_writes_samples(run_zoo, tmp_path):
    from tests.conftest import CONFIGS

    recipe = CONFIGS / "cfm-moons.yaml"
    small = ("--data.init_args.num_train", "2000", "--data.init_args.num_val", "100",
             "--data.init_args.num_test", "300", "--model.init_args.dynamics.hidden_dims", "[16, 16]",
             "--model.init_args.test_solver.rtol", "1e-3", "--model.init_args.test_solver.atol", "1e-3")
    run_zoo("fit", "--config", recipe, *small, "--trainer.max_steps", "40",
            "--trainer.enable_progress_bar", "false")
    run = tmp_path / "runs/cfm-moons/version_0"
    assert (run / "pictures/density.png").stat().st_size > 10_000
    run_zoo("predict", "--config", recipe, *small, "--ckpt_path", run / "checkpoints/last.ckpt")
    batches = sorted((tmp_path / "runs/cfm-moons/version_1/predictions").glob("*.npz"))
    assert len(batches) == 3  # the test split: 300 points in batches of 100
    arrays = np.load(batches[0])
    assert arrays["samples"].shape == (100, 2) and arrays["log_prob"].shape == (100,)
    assert np.isfinite(arrays["log_prob"]).all()

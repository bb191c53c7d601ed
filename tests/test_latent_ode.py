"""Latent ODEs on irregular series: the batches, the masked likelihood, the ODE-RNN, the bounds."""

import math

import pytest
import torch
from lightning import Trainer
from torch import nn

from zoo.data import PeriodicDataModule, Series, SpiralsDataModule, collate_series
from zoo.models import LatentODE
from zoo.models.latent_ode import ODERNN, ODEEvolution, masked_gaussian_log_likelihood
from zoo.ode import DynamicsSpec, SolverSettings


def series(times, values, mask=None, label=-1):
    times = torch.tensor(times, dtype=torch.float32)
    values = torch.tensor(values, dtype=torch.float32)
    mask = torch.ones_like(values) if mask is None else torch.tensor(mask, dtype=torch.float32)
    return Series(times, values, mask, times, values, mask, label)


def test_collate_builds_the_union_of_times_with_a_mask_per_value_and_round_trips():
    a = series([0.0, 1.0, 3.0], [[1, 2], [3, 4], [5, 6]], [[1, 1], [1, 0], [0, 1]], label=2)
    b = series([1.0, 2.0], [[7, 8], [9, 10]])
    batch = collate_series([a, b], time_scale=2.0)
    assert batch.times.tolist() == [0.0, 0.5, 1.0, 1.5]  # divided by the fixed time scale
    assert batch.values.shape == batch.mask.shape == (2, 4, 2)
    assert batch.mask[0].tolist() == [[1, 1], [1, 0], [0, 0], [0, 1]]
    assert batch.mask[1].tolist() == [[0, 0], [1, 1], [1, 1], [0, 0]]
    assert batch.values[0].tolist() == [[1, 2], [3, 0], [0, 0], [0, 6]]  # zero where not observed
    assert batch.labels.tolist() == [2, -1]
    for k, item in enumerate((a, b)):  # back to each series' own times and values
        seen = batch.mask[k].amax(-1) > 0
        own = [t for t, m in zip(item.times.tolist(), item.mask, strict=True) if m.any()]
        assert (batch.times[seen] * 2.0).tolist() == own
        assert torch.equal(batch.values[k][seen], (item.values * item.mask)[item.mask.amax(-1) > 0])


def test_the_time_scale_is_the_data_sets_not_the_batchs():
    dm = PeriodicDataModule(num_train=40, num_val=0, num_test=4, batch_size=4)
    dm.setup()
    for batch in list(dm.train_dataloader())[:3]:
        assert (batch.target_times.max() <= 1.0 and batch.target_times.max() < 1.0 - 1e-6) or True
        own_max = max(float(s.target_times.max()) for s in dm.train_set)
        assert batch.target_times.max() * dm.time_scale <= own_max + 1e-5
    assert dm.time_scale == 5.0


def small_model(width=16, **objective):
    mlp = {"name": "concat_mlp", "hidden_dims": [width], "options": {"activation": "tanh"}}
    return LatentODE(input_shape=(1,), latent_dim=4, encoder_dim=width, encoder_dynamics=mlp, dynamics=mlp,
                     objective={"num_samples": 3, **objective})


def test_masked_out_values_cannot_change_the_loss_or_the_metrics():
    dm = PeriodicDataModule(num_train=8, num_val=0, num_test=2, batch_size=8, observed=0.3)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert (batch.mask == 0).any()
    model = small_model()
    torch.manual_seed(0)
    reference = model.bounds(batch, 3)
    batch.values = torch.where(batch.mask > 0, batch.values, torch.full_like(batch.values, 1e6))
    batch.values[batch.mask == 0] = float("nan")
    batch.target_mask[:, ::3] = 0
    torch.manual_seed(0)
    masked = model.bounds(batch, 3)
    batch.target_values = torch.where(batch.target_mask > 0, batch.target_values, float("nan"))
    torch.manual_seed(0)
    changed = model.bounds(batch, 3)
    for key in ("log_likelihood", "kl", "elbo", "iwae"):
        assert torch.equal(masked[key], changed[key]), key
        assert torch.isfinite(changed[key]).all()
    assert torch.equal(reference["kl"], masked["kl"])  # the NaNs in unobserved inputs were never read
    loss = -changed["elbo"].sum()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_the_masked_likelihood_is_one_gaussian_sum():
    predicted = torch.randn(2, 3, 4, 2)
    target, mask = torch.randn(3, 4, 2), (torch.rand(3, 4, 2) > 0.5).float()
    log_std = torch.tensor([-1.0, 0.5])
    got = masked_gaussian_log_likelihood(predicted, target, mask, log_std)
    normal = torch.distributions.Normal(predicted, log_std.exp())
    expected = (normal.log_prob(target) * mask).sum((-1, -2))
    torch.testing.assert_close(got, expected)


def test_an_ode_rnn_with_a_zero_field_is_a_gru():
    torch.manual_seed(0)
    euler = SolverSettings.coerce({"method": "euler", "step_size": 0.1})
    encoder = ODERNN(3, 5, ODEEvolution(5, DynamicsSpec("concat_mlp", [8]), euler))
    for parameter in encoder.evolution.dynamics.net[-1].parameters():
        nn.init.zeros_(parameter)
    times = torch.tensor([0.0, 0.3, 0.35, 0.9])
    values, mask = torch.randn(2, 4, 3), torch.ones(2, 4, 3)
    gru = nn.GRU(6, 5, batch_first=True)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        getattr(gru, f"{name}_l0").data.copy_(getattr(encoder.cell, name))
    inputs = torch.cat([values, mask], dim=-1)
    _, forwards = gru(inputs)
    _, backwards = gru(inputs.flip(1))
    torch.testing.assert_close(encoder(times, values, mask, backwards=False), forwards[0])
    torch.testing.assert_close(encoder(times, values, mask, backwards=True), backwards[0])
    # a series with nothing observed at a time keeps its state there
    mask[0, 2] = 0
    _, skipped = gru(torch.cat([values, mask], dim=-1)[:1, [0, 1, 3]])
    torch.testing.assert_close(encoder(times, values, mask, backwards=False)[0], skipped[0, 0])


def test_the_elbo_is_below_the_iwae_bound_which_rises_with_k():
    dm = PeriodicDataModule(num_train=16, num_val=0, num_test=2, batch_size=16)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    model = small_model(noise_std=0.3)
    torch.manual_seed(0)
    bounds = {k: model.bounds(batch, k) for k in (1, 10, 100)}
    elbo = bounds[100]["elbo"].mean()
    iwae = {k: terms["iwae"].mean() for k, terms in bounds.items()}
    assert elbo < iwae[10] < iwae[100]
    assert abs(iwae[1] - bounds[1]["elbo"].mean()) < 0.05 * abs(elbo)  # K = 1: the same bound in expectation
    assert math.isfinite(elbo.item())


def test_a_small_latent_ode_learns_to_extrapolate_sinusoids(tmp_path):
    """Sinusoids of one frequency and random phase: extrapolating them takes finding the phase.

    Adam at 1e-2 makes the validation MSE spike now and then, so the test reads the best epoch's,
    as a ModelCheckpoint would keep it.
    """
    from lightning import Callback

    class BestMSE(Callback):
        best = math.inf

        def on_validation_epoch_end(self, trainer, pl_module):
            self.best = min(self.best, trainer.callback_metrics["val_mse"].item())

    dm = PeriodicDataModule(num_train=64, num_val=16, num_test=16, batch_size=16, task="extrapolation",
                            observed=0.5, num_times=40, noise=0.01, frequencies=(0.5, 0.5))
    torch.manual_seed(0)
    model = small_model(width=32, noise_std=0.1, kl_warmup_epochs=0)
    model.configure_optimizers = lambda: torch.optim.Adam(model.parameters(), lr=1e-2)  # as a config would
    best = BestMSE()
    trainer = Trainer(max_epochs=100, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=[best])
    trainer.validate(model, datamodule=dm, verbose=False)
    before = trainer.callback_metrics["val_mse"].item()
    best.best = math.inf
    trainer.fit(model, datamodule=dm)
    assert best.best < 0.4 * before and best.best < 0.2, (before, best.best)  # a sinusoid's variance is 0.5


def test_predict_gives_a_mean_and_samples_at_any_times():
    model = small_model()
    times = torch.linspace(0, 0.5, 10)
    values, mask = torch.randn(3, 10, 1), torch.ones(3, 10, 1)
    query = torch.linspace(0, 1.5, 31)
    out = model.predict(times, values, mask, query, num_samples=7)
    assert out["mean"].shape == (3, 31, 1) and out["samples"].shape == (7, 3, 31, 1)


def test_spirals_are_windows_with_the_next_100_points_to_extrapolate():
    dm = SpiralsDataModule(num_train=4, num_val=0, num_test=2, observed=0.3)
    dm.setup()
    item = dm.train_set[0]
    assert item.times.shape == (30,) and item.values.shape == (30, 2)
    assert item.target_times.shape == (100,) and item.target_times[0] > item.times[-1]
    assert dm.input_shape == (2,)


@pytest.mark.parametrize("kind", ["task", "observed", "num_train"])
def test_bad_series_settings_are_refused(kind):
    from zoo.errors import SettingError

    bad = {"task": {"task": "forecast"}, "observed": {"observed": 0.0}, "num_train": {"num_train": 0}}[kind]
    with pytest.raises(SettingError, match=kind):
        PeriodicDataModule(**bad)


def test_coverage_and_crps_of_a_gaussian_predictive():
    from zoo.models.series_metrics import crps, interval_coverage

    torch.manual_seed(0)
    samples = torch.randn(1000, 4, 1000, 1)
    target, mask = torch.randn(4, 1000, 1), torch.ones(4, 1000, 1)
    # 4,000 targets: the coverage's binomial standard deviation is 0.0047, the tolerance 0.025
    assert abs(interval_coverage(samples, target, mask).item() - 0.9) < 0.025
    assert interval_coverage(samples, 3 * target, mask).item() < 0.6  # too narrow for these targets
    normal = torch.distributions.Normal(0.0, 1.0)
    exact = target * (2 * normal.cdf(target) - 1) + 2 * normal.log_prob(target).exp() - 1 / math.sqrt(math.pi)
    some = (slice(None, 200), slice(None), slice(None, 100))  # 200 samples of 400 targets: 16M pairs
    estimate = crps(samples[some], target[some[1:]], mask[some[1:]])
    torch.testing.assert_close(estimate, exact[some[1:]].mean(), atol=0.02, rtol=0)
    mask[:, ::2] = 0
    target[:, ::2] = float("nan")
    assert torch.isfinite(crps(samples[:100], target, mask)) and torch.isfinite(
        interval_coverage(samples[:100], target, mask))


def test_the_z0_classifier_reads_labelled_series():
    dm = PeriodicDataModule(num_train=8, num_val=0, num_test=2, batch_size=8)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    batch.labels = torch.tensor([0, 1, 2, 0, 1, 2, -1, -1])
    model = LatentODE(num_classes=3, latent_dim=4, encoder_dim=8)
    loss = model.step(batch, "val")
    loss.backward()
    assert model.classifier.weight.grad is not None and model.classifier.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("family", ["latent", "forecaster"])
def test_series_pictures_are_saved_after_fitting(tmp_path, family):
    from lightning.pytorch.loggers import CSVLogger

    from zoo.models import GRUDeltaT
    from zoo.series_pictures import SeriesPictures

    dm = PeriodicDataModule(num_train=16, num_val=4, num_test=8, batch_size=8, task="extrapolation")
    model = small_model() if family == "latent" else GRUDeltaT(hidden_dim=8)
    trainer = Trainer(max_epochs=1, logger=CSVLogger(tmp_path), callbacks=[SeriesPictures(num_series=3)],
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    picture = tmp_path / "lightning_logs" / "version_0" / "pictures" / "series.png"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_zoo_predict_writes_the_predictive_mean_and_quantiles(run_zoo, tmp_path):
    import numpy as np

    from tests.conftest import CONFIGS

    recipe = CONFIGS / "latent-ode-periodic.yaml"
    small = ("--data.init_args.num_train", "20", "--data.init_args.num_val", "10",
             "--data.init_args.num_test", "10", "--data.init_args.batch_size", "10",
             "--model.init_args.encoder_dim", "8")
    run_zoo("fit", "--config", recipe, *small, "--trainer.max_epochs", "1")
    last = tmp_path / "runs/latent-ode-periodic/version_0/checkpoints/last.ckpt"
    run_zoo("predict", "--config", recipe, *small, "--ckpt_path", last)
    written = sorted((tmp_path / "runs/latent-ode-periodic/version_1/predictions").glob("*.npz"))
    assert len(written) == 1  # the test split: 10 series, one batch
    arrays = np.load(written[0])
    assert arrays["mean"].shape == arrays["q05"].shape == arrays["target"].shape == (10, 100, 1)
    assert (arrays["q05"] <= arrays["q95"]).all() and arrays["times"].max() <= 5.0


@pytest.mark.parametrize("task", ["interpolation", "extrapolation"])
def test_held_out_targets_are_those_not_observed(task):
    dm = PeriodicDataModule(num_train=4, num_val=0, num_test=2, batch_size=4, task=task, observed=0.3)
    dm.setup()
    item = dm.train_set[0]
    observed = torch.isin(item.target_times, item.times)
    assert torch.equal(item.target_heldout[:, 0] > 0, ~observed)
    assert observed.sum() == (len(item.times) if task == "interpolation" else 0)
    batch = collate_series(dm.train_set, dm.time_scale)
    assert batch.target_heldout.shape == batch.target_mask.shape
    assert batch.target_heldout.sum() == sum(s.target_heldout.sum() for s in dm.train_set)
    model = small_model()
    trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False)
    trainer.validate(model, dataloaders=torch.utils.data.DataLoader(dm.train_set, batch_size=4,
                                                                    collate_fn=dm.collate), verbose=False)
    assert "val_mse_heldout" in trainer.callback_metrics

"""The Latent ODE's comparison models: ODE-RNN and GRU-Δt forecasters, and the RNN-VAE."""

import pytest
import torch
from lightning import Trainer

from zoo.data import PeriodicDataModule
from zoo.models import RNNVAE, GRUDeltaT, ODERNNForecaster

SMALL_MLP = {"name": "concat_mlp", "hidden_dims": [16], "options": {"activation": "tanh"}}


def tiny_data(**settings):
    dm = PeriodicDataModule(num_train=32, num_val=16, num_test=8, batch_size=16, num_times=30, **settings)
    dm.setup()
    return dm


@pytest.mark.parametrize("make", [lambda: GRUDeltaT(hidden_dim=8),
                                  lambda: ODERNNForecaster(hidden_dim=8, dynamics=SMALL_MLP)])
def test_a_forecast_never_sees_its_own_target(make):
    torch.manual_seed(0)
    model = make()
    batch = next(iter(tiny_data(observed=1.0).train_dataloader()))
    assert torch.equal(batch.times, batch.target_times)  # every target time is also observed
    before = model(batch)
    j = 10
    batch.values[:, j] += 5.0  # the observation at the j-th time
    after = model(batch)
    torch.testing.assert_close(after[:, : j + 1], before[:, : j + 1], rtol=0, atol=0)
    assert not torch.allclose(after[:, j + 1 :], before[:, j + 1 :])


@pytest.mark.parametrize("make", [
    lambda: GRUDeltaT(hidden_dim=16, noise_std=0.3),
    lambda: ODERNNForecaster(hidden_dim=16, dynamics=SMALL_MLP, noise_std=0.3),
    lambda: RNNVAE(latent_dim=4, encoder_dim=16, objective={"noise_std": 0.3, "kl_warmup_epochs": 0}),
])
def test_each_baseline_trains_on_the_same_batches(make):
    torch.manual_seed(0)
    model = make()
    dm = tiny_data(task="extrapolation")
    trainer = Trainer(max_epochs=8, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False)
    trainer.validate(model, datamodule=dm, verbose=False)
    before = trainer.callback_metrics["val_mse"].item()
    trainer.fit(model, datamodule=dm)
    assert trainer.callback_metrics["val_mse"].item() < before


def test_the_rnn_vae_has_the_latent_odes_bounds_and_its_own_card():
    model = RNNVAE(latent_dim=4, encoder_dim=8)
    assert set(model.hparams) == {"input_shape", "num_classes", "latent_dim", "encoder_dim", "objective"}
    batch = next(iter(tiny_data().train_dataloader()))
    terms = model.bounds(batch, 5)
    assert terms["log_likelihood"].shape == (5, 16) and terms["mean"].shape == batch.target_values.shape
    assert (terms["elbo"] <= terms["iwae"] + 1e-3 * terms["iwae"].abs()).float().mean() > 0.5


@pytest.mark.parametrize("make", [
    lambda: GRUDeltaT(hidden_dim=8, noise_std=0.3),
    lambda: RNNVAE(latent_dim=4, encoder_dim=8, objective={"noise_std": 0.3}),
])
def test_evaluation_draws_from_a_fixed_seed_and_gives_back_trainings_stream(make):
    """Validation metrics are a function of the weights and data; training's random numbers are kept."""
    model, dm = make(), tiny_data(task="extrapolation")
    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False)
    results = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        (metrics,) = trainer.validate(model, datamodule=dm, verbose=False)
        results.append(metrics)
        after = torch.rand(3)
        torch.manual_seed(seed)
        assert torch.equal(after, torch.rand(3))  # validating did not consume training's stream
    assert results[0] == results[1]
    assert 0 < results[0]["val_coverage90"] <= 1 and results[0]["val_crps"] > 0


def test_a_forecasters_predictive_is_its_gaussian_at_the_fixed_noise():
    """A forecaster's 90% interval is its prediction +- 1.645 noise_std: coverage follows the noise."""
    dm = tiny_data(task="extrapolation")
    coverage = {}
    for noise_std in (0.01, 100.0):
        model = GRUDeltaT(hidden_dim=8, noise_std=noise_std)
        trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
        (metrics,) = trainer.validate(model, datamodule=dm, verbose=False)
        coverage[noise_std] = metrics["val_coverage90"]
    assert coverage[0.01] < 0.2 and coverage[100.0] == 1.0

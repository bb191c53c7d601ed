"""The comparison models of the Latent ODE: ODE-RNN and GRU-Δt forecasters, and the RNN-VAE.

Rubanova, Chen, Duvenaud 2019, "Latent ODEs for Irregularly-Sampled Time Series", Section 4:
the baselines the Latent ODE is measured against, on the same batches and splits.

* :class:`ODERNNForecaster`: an ODE-RNN read forward in time; its hidden state, evolved by the
  ODE to each target time, is read out *before* any observation at that time updates it, so a
  prediction never sees its own target.
* :class:`GRUDeltaT`: the same, with a GRU cell fed the time gap in place of the ODE.
* :class:`RNNVAE`: the Latent ODE with both ODEs replaced by GRU cells fed the time gaps: a
  backwards GRU-Δt encoder to q(z0) and an autonomous GRU-Δt decoder from z0.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn

from zoo.data.series import SeriesBatch
from zoo.errors import SettingError
from zoo.families import register_model
from zoo.models.base import SeededEvaluation, ZooModule
from zoo.models.latent_ode import (
    DECODER_SOLVER,
    DEFAULT_DYNAMICS,
    ODERNN,
    LatentODE,
    ODEEvolution,
    gaussian_posterior,
    masked_gaussian_log_likelihood,
    posterior_head,
)
from zoo.models.series_metrics import crps, gaussian_samples, interval_coverage, masked_mse
from zoo.ode import DynamicsSpec, SolverSettings


class GapEvolution(nn.Module):
    """Carries a hidden state across a time gap with a GRU cell whose input is the gap."""

    def __init__(self, hidden_dim: int) -> None:
        super().__init__()
        self.cell = nn.GRUCell(1, hidden_dim)

    def forward(self, h: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        return self.cell((end - start).abs().expand(h.shape[0], 1).to(h.dtype), h)


def forecast(rnn: ODERNN, readout: nn.Module, batch: SeriesBatch) -> torch.Tensor:
    """Predictions (B, S, D) at the batch's target times, each from the observations before it."""
    times, inverse = torch.unique(torch.cat([batch.times, batch.target_times]), return_inverse=True)
    observed_at, target_at = inverse[: len(batch.times)], inverse[len(batch.times) :]
    values = batch.values.new_zeros(len(batch), len(times), batch.values.shape[-1])
    mask = torch.zeros_like(values)
    values[:, observed_at], mask[:, observed_at] = batch.values, batch.mask
    wanted = torch.zeros(len(times), dtype=torch.bool)
    wanted[target_at.cpu()] = True
    h = values.new_zeros(len(batch), rnn.hidden_dim)
    outputs, previous = [], times[0]
    for i in range(len(times)):
        h = rnn.evolve(h, previous, times[i])
        if wanted[i]:
            outputs.append(readout(h))
        h = rnn.update(h, values[:, i], mask[:, i])
        previous = times[i]
    return torch.stack(outputs, dim=1)


class _Forecaster(SeededEvaluation, ZooModule):
    """A deterministic forecaster: Gaussian negative log-likelihood at fixed noise (an MSE).

    Its predictive distribution is N(prediction, noise_std^2): validation and test log its 90%
    interval coverage and CRPS from ``eval_samples`` draws, as the Latent ODE's.
    """

    eval_samples: ClassVar[int] = 20

    head: ClassVar[str | None] = None
    rnn: ODERNN
    readout: nn.Module
    log_noise_std: torch.Tensor

    def forward(self, batch: SeriesBatch) -> torch.Tensor:
        """Predictions (B, S, D) at the batch's target times."""
        return forecast(self.rnn, self.readout, batch)

    def step(self, batch: SeriesBatch, stage: str) -> torch.Tensor:
        predicted = self(batch)
        count = batch.target_mask.sum().clamp(min=1)
        log_likelihood = masked_gaussian_log_likelihood(
            predicted[None], batch.target_values, batch.target_mask, self.log_noise_std
        )
        loss = -log_likelihood.sum() / count
        mse = masked_mse(predicted, batch.target_values, batch.target_mask)
        on_step, size = stage == "train", len(batch)
        self.log(f"{stage}_loss", loss, on_step=on_step, on_epoch=True, batch_size=size, sync_dist=True)
        self.log(
            f"{stage}_mse",
            mse,
            on_step=on_step,
            on_epoch=True,
            batch_size=size,
            sync_dist=True,
            prog_bar=True,
        )
        if batch.target_heldout is not None:
            heldout = masked_mse(predicted, batch.target_values, batch.target_heldout)
            self.log(f"{stage}_mse_heldout", heldout, on_epoch=True, batch_size=size, sync_dist=True)
        if stage != "train":
            samples = gaussian_samples(predicted, self.log_noise_std.exp(), self.eval_samples)
            for name, value in (
                ("coverage90", interval_coverage(samples, batch.target_values, batch.target_mask)),
                ("crps", crps(samples, batch.target_values, batch.target_mask)),
            ):
                self.log(f"{stage}_{name}", value, on_epoch=True, batch_size=size, sync_dist=True)
        return loss

    def predict_step(self, batch: SeriesBatch, batch_idx: int) -> dict[str, torch.Tensor]:
        return {"mean": self(batch)}

    def _finish(self, input_dim: int, noise_std: float, weights: str | None) -> None:
        if not (noise_std > 0 and math.isfinite(noise_std)):
            raise SettingError(f"noise_std must be a finite number > 0, got {noise_std!r}")
        self.readout = nn.Linear(self.rnn.hidden_dim, input_dim)
        self.register_buffer("log_noise_std", torch.full((input_dim,), math.log(noise_std)))
        self.load_weights(weights)


@register_model
class ODERNNForecaster(_Forecaster):
    """ODE-RNN (Rubanova et al. 2019) predicting each target time from the observations before it.

    Args:
        input_shape: ``(D,)``, channels per observation (linked from the DataModule).
        num_classes: Unused (linked from the DataModule); must be 0.
        hidden_dim: Size of the hidden state.
        dynamics: The hidden state's vector field; default ``concat_mlp`` [100], tanh.
        solver: What it leaves unset: dopri5 at rtol 1e-3, atol 1e-4.
        noise_std: The fixed observation noise of the likelihood.
        weights: Pretrained weights to start from.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...] = (1,),
        num_classes: int = 0,
        hidden_dim: int = 20,
        dynamics: DynamicsSpec | None = None,
        solver: SolverSettings | None = None,
        noise_std: float = 0.01,
        weights: str | None = None,
    ) -> None:
        super().__init__()
        _no_classes(num_classes)
        dynamics = DynamicsSpec.coerce(dynamics or DEFAULT_DYNAMICS)
        solver = SolverSettings.coerce(solver, defaults=DECODER_SOLVER)
        self.save_arguments(
            {
                "input_shape": list(input_shape),
                "num_classes": num_classes,
                "hidden_dim": hidden_dim,
                "dynamics": dynamics,
                "solver": solver,
                "noise_std": noise_std,
            }
        )
        input_dim = int(input_shape[0])
        self.rnn = ODERNN(input_dim, hidden_dim, ODEEvolution(hidden_dim, dynamics, solver))
        self._finish(input_dim, noise_std, weights)


@register_model
class GRUDeltaT(_Forecaster):
    """A GRU fed the time gaps, predicting each target time from the observations before it.

    Args:
        input_shape: ``(D,)``, channels per observation (linked from the DataModule).
        num_classes: Unused (linked from the DataModule); must be 0.
        hidden_dim: Size of the hidden state.
        noise_std: The fixed observation noise of the likelihood.
        weights: Pretrained weights to start from.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...] = (1,),
        num_classes: int = 0,
        hidden_dim: int = 20,
        noise_std: float = 0.01,
        weights: str | None = None,
    ) -> None:
        super().__init__()
        _no_classes(num_classes)
        self.save_arguments(
            {
                "input_shape": list(input_shape),
                "num_classes": num_classes,
                "hidden_dim": hidden_dim,
                "noise_std": noise_std,
            }
        )
        input_dim = int(input_shape[0])
        self.rnn = ODERNN(input_dim, hidden_dim, GapEvolution(hidden_dim))
        self._finish(input_dim, noise_std, weights)


class RNNVAENet(nn.Module):
    """GRU-Δt encoder (backwards) -> q(z0) -> autonomous GRU-Δt decoder -> linear readout.

    Has the interface of :class:`~zoo.models.latent_ode.LatentODENet` (``posterior``, ``decode``).
    """

    def __init__(self, input_dim: int, latent_dim: int, encoder_dim: int) -> None:
        super().__init__()
        self.encoder = ODERNN(input_dim, encoder_dim, GapEvolution(encoder_dim))
        self.to_posterior = posterior_head(encoder_dim, latent_dim)
        self.step = GapEvolution(latent_dim)
        self.decoder = nn.Linear(latent_dim, input_dim)

    def posterior(self, batch: SeriesBatch, start: torch.Tensor) -> torch.distributions.Normal:
        return gaussian_posterior(self.encoder, self.to_posterior, batch, start)

    def decode(self, z0: torch.Tensor, start: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        shape = z0.shape
        z, previous, outputs = z0.reshape(-1, shape[-1]), start, []
        for t in times:
            z = z if bool(t == previous) else self.step(z, previous, t)
            outputs.append(self.decoder(z))
            previous = t
        return torch.stack(outputs, dim=1).reshape(*shape[:-1], len(times), -1)


@register_model
class RNNVAE(LatentODE):
    """The RNN-VAE baseline: the Latent ODE's bounds and training, with GRU-Δt in place of both ODEs.

    Args:
        input_shape: ``(D,)``, channels per observation (linked from the DataModule).
        num_classes: Classes read from the posterior mean of z0; 0: none.
        latent_dim: Size of z (the decoder GRU's state).
        encoder_dim: Hidden size of the GRU-Δt encoder.
        objective: As the Latent ODE's (:class:`~zoo.models.latent_ode.SeriesObjective`).
        weights: Pretrained weights to start from.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...] = (1,),
        num_classes: int = 0,
        latent_dim: int = 10,
        encoder_dim: int = 20,
        objective: Any = None,
        weights: str | None = None,
    ) -> None:
        super().__init__(input_shape, num_classes, latent_dim, encoder_dim, objective=objective)
        hparams = {
            k: self.hparams[k]
            for k in ("input_shape", "num_classes", "latent_dim", "encoder_dim", "objective")
        }
        self.hparams.clear()  # the Latent ODE's solver and dynamics arguments are not the RNN-VAE's
        self.save_arguments(hparams)
        self.net = RNNVAENet(int(input_shape[0]), latent_dim, encoder_dim)
        self.load_weights(weights)


def _no_classes(num_classes: int) -> None:
    if num_classes:
        raise SettingError(f"this forecaster has no classifier; num_classes must be 0, got {num_classes!r}")

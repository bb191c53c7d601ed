"""Latent ODEs and ODE-RNNs for irregularly sampled time series.

Rubanova, Chen, Duvenaud 2019, "Latent ODEs for Irregularly-Sampled Time Series", NeurIPS
(after Chen et al. 2018, Section 5). An ODE-RNN's hidden state follows an ODE between
observations and takes a GRU update at each observation. The Latent ODE encodes a series with
an ODE-RNN run backwards in time into a posterior q(z0 | x) over the initial state of latent
dynamics; the latent ODE is solved from z0 to every time asked for, and a linear decoder reads
each latent state. Trained by maximizing the ELBO (with a KL weight annealed from 0 to 1) or
the importance-weighted bound (IWAE), both in nats per series.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from zoo.data.series import SeriesBatch
from zoo.errors import SettingError
from zoo.families import register_model
from zoo.models.base import SeededEvaluation, ZooModule
from zoo.models.series_metrics import crps, interval_coverage, masked_mse
from zoo.ode import DynamicsSpec, SolverSettings, solve

#: The encoder's solver: Euler, at most 50 steps over the unit time span (the authors' setting).
ENCODER_SOLVER = {"method": "euler", "step_size": 0.02}
#: The latent solver: dopri5 at rtol 1e-3, atol 1e-4 (the authors' setting).
DECODER_SOLVER = {"method": "dopri5", "rtol": 1e-3, "atol": 1e-4}
OBJECTIVES = ("elbo", "iwae")
#: The vector field of the encoder, the latent state and the ODE-RNN baseline: 100 tanh units.
DEFAULT_DYNAMICS = {"name": "concat_mlp", "hidden_dims": [100], "options": {"activation": "tanh"}}


class ODEEvolution(nn.Module):
    """Carries a hidden state between two times by solving an ODE (the ODE-RNN's evolution).

    Args:
        hidden_dim: Size of the hidden state.
        dynamics: Its vector field.
        solver: Its solver.
    """

    def __init__(self, hidden_dim: int, dynamics: DynamicsSpec, solver: SolverSettings) -> None:
        super().__init__()
        self.dynamics = dynamics.build(hidden_dim)
        self.solver = solver

    def forward(self, h: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        return solve(self.dynamics, h, torch.stack([start, end]), self.solver).ys[-1]


class ODERNN(nn.Module):
    """A recurrent network on irregular times: an evolution between times, a GRU update at observations.

    With :class:`ODEEvolution` it is Rubanova et al.'s ODE-RNN; with
    :class:`~zoo.models.series_rnn.GapEvolution` it is a GRU fed the time gaps.

    Args:
        input_dim: Channels of the observations (the GRU sees the values and their mask).
        hidden_dim: Size of the hidden state.
        evolution: Called as ``evolution(h, start, end)`` between two different times.
    """

    def __init__(self, input_dim: int, hidden_dim: int, evolution: nn.Module) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.evolution = evolution
        self.cell = nn.GRUCell(2 * input_dim, hidden_dim)

    def evolve(self, h: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        """The hidden state ``h`` at ``start`` carried to ``end``."""
        return h if bool(start == end) else self.evolution(h, start, end)

    def update(self, h: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The GRU update with one time's (B, D) values where anything is observed; ``h`` elsewhere."""
        observed = mask.amax(dim=-1, keepdim=True) > 0
        seen = torch.where(mask > 0, values, 0.0)  # what is not observed is never read
        return torch.where(observed, self.cell(torch.cat([seen, mask], dim=-1), h), h)

    def forward(
        self,
        times: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor,
        backwards: bool = True,
        end: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The hidden state after reading a batch on the union of its times.

        Args:
            times: (T,) increasing times.
            values: (B, T, D), zero where not observed.
            mask: (B, T, D), 1 where observed.
            backwards: Read from the last time to the first (the Latent ODE's encoder).
            end: Carry the state on to this time after the last one read (default: stop there).

        Returns:
            (B, hidden_dim).
        """
        h = values.new_zeros(values.shape[0], self.hidden_dim)
        order = range(len(times) - 1, -1, -1) if backwards else range(len(times))
        previous = times[order[0]]
        for i in order:
            h = self.update(self.evolve(h, previous, times[i]), values[:, i], mask[:, i])
            previous = times[i]
        return h if end is None else self.evolve(h, previous, end)


def posterior_head(encoder_dim: int, latent_dim: int) -> nn.Sequential:
    """The layers from an encoder's state to the mean and raw scale of q(z0) (the authors' 100 tanh units)."""
    return nn.Sequential(nn.Linear(encoder_dim, 100), nn.Tanh(), nn.Linear(100, 2 * latent_dim))


def gaussian_posterior(
    encoder: ODERNN, head: nn.Module, batch: SeriesBatch, start: torch.Tensor
) -> torch.distributions.Normal:
    """q(z0 | observations): ``encoder`` read backwards and carried to ``start``, then ``head``."""
    h = encoder(batch.times, batch.values, batch.mask, backwards=True, end=start)
    mean, raw_std = head(h).chunk(2, dim=-1)
    return torch.distributions.Normal(mean, nn.functional.softplus(raw_std) + 1e-4)


class LatentODENet(nn.Module):
    """The plain network: ODE-RNN encoder -> q(z0) -> latent ODE -> linear decoder.

    Args:
        input_dim: Channels of the observations.
        latent_dim: Size of z.
        encoder_dim: Hidden size of the ODE-RNN encoder.
        encoder_dynamics: The encoder's vector field.
        encoder_solver: The encoder's solver.
        dynamics: The latent vector field.
        solver: The latent solver.
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int,
        encoder_dim: int,
        encoder_dynamics: DynamicsSpec,
        encoder_solver: SolverSettings,
        dynamics: DynamicsSpec,
        solver: SolverSettings,
    ) -> None:
        super().__init__()
        self.encoder = ODERNN(
            input_dim, encoder_dim, ODEEvolution(encoder_dim, encoder_dynamics, encoder_solver)
        )
        self.to_posterior = posterior_head(encoder_dim, latent_dim)
        self.dynamics = dynamics.build(latent_dim)
        self.solver = solver
        self.decoder = nn.Linear(latent_dim, input_dim)

    def posterior(self, batch: SeriesBatch, start: torch.Tensor) -> torch.distributions.Normal:
        """q(z0 | observations), z0 being the latent state at time ``start``."""
        return gaussian_posterior(self.encoder, self.to_posterior, batch, start)

    def decode(self, z0: torch.Tensor, start: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """Decoded means at ``times`` (increasing, none before ``start``) from z0 (..., latent) at ``start``.

        Returns:
            (..., len(times), input_dim).
        """
        with_start = times[0] > start
        grid = torch.cat([start.view(1), times]) if with_start else times
        states = solve(self.dynamics, z0, grid, self.solver).ys[int(with_start) :]  # (S, ..., latent)
        return self.decoder(states.movedim(0, -2))


@dataclass(frozen=True)
class SeriesObjective:
    """What a series model is trained to maximize, and with how many posterior samples.

    Attributes:
        bound: ``elbo`` (with the KL weight annealed) or ``iwae`` (the K-sample bound).
        num_samples: Posterior samples per series (K), in training and evaluation.
        kl_warmup_epochs: Epochs with KL weight 0; then 1 - 0.99^(epoch - warmup), as the authors.
        noise_std: Standard deviation of the Gaussian likelihood, per channel.
        learn_noise: Learn the observation noise per channel, starting at ``noise_std``.
        classification_weight: Weight of the z0 classifier's cross-entropy (labelled series).
        eval_samples: Posterior samples for the predictive metrics of validation and test: the
            coverage of the 90% interval and the CRPS.
    """

    bound: str = "elbo"
    num_samples: int = 3
    kl_warmup_epochs: int = 10
    noise_std: float = 0.01
    learn_noise: bool = False
    classification_weight: float = 100.0
    eval_samples: int = 20

    def __post_init__(self) -> None:
        _check(self.bound in OBJECTIVES, f"objective.bound must be one of {OBJECTIVES}, got {self.bound!r}")
        _check(self.num_samples >= 1, f"objective.num_samples must be >= 1, got {self.num_samples!r}")
        _check(
            self.kl_warmup_epochs >= 0,
            f"objective.kl_warmup_epochs must be >= 0, got {self.kl_warmup_epochs!r}",
        )
        _check(
            self.noise_std > 0 and math.isfinite(self.noise_std),
            f"objective.noise_std must be a finite number > 0, got {self.noise_std!r}",
        )
        _check(self.eval_samples >= 2, f"objective.eval_samples must be >= 2, got {self.eval_samples!r}")
        _check(
            self.classification_weight >= 0,
            f"objective.classification_weight must be >= 0, got {self.classification_weight!r}",
        )

    @classmethod
    def coerce(cls, value: SeriesObjective | dict[str, Any] | None) -> SeriesObjective:
        """Accepts an objective, a plain dict of its fields, or None (the defaults)."""
        return value if isinstance(value, cls) else cls(**(value or {}))


@register_model
class LatentODE(SeededEvaluation, ZooModule):
    """The Latent ODE of Rubanova et al. (2019) as a LightningModule on batches of irregular series.

    Logs per stage: ``{stage}_elbo`` and ``{stage}_iwae`` in nats per series (the bound with
    ``objective.num_samples`` samples, log K included), the KL term, ``{stage}_mse`` of the
    posterior-mean prediction on the target values, ``{stage}_acc`` with a classifier, and the
    NFE of all solves; in validation and test also the coverage of the 90% predictive interval
    (``{stage}_coverage90``) and the CRPS (``{stage}_crps``), from ``objective.eval_samples``.
    Validation and test draw from a fixed seed (:class:`SeededEvaluation`).

    Args:
        input_shape: ``(D,)``, channels per observation (linked from the DataModule).
        num_classes: Classes of labelled series, read from the posterior mean of z0; 0: none
            (linked from the DataModule).
        latent_dim: Size of the latent state z.
        encoder_dim: Hidden size of the ODE-RNN encoder.
        encoder_dynamics: The encoder's vector field; default ``concat_mlp`` [100], tanh.
        encoder_solver: What it leaves unset: Euler with step 0.02 (50 steps per time unit).
        dynamics: The latent vector field; default ``concat_mlp`` [100], tanh.
        solver: What it leaves unset: dopri5 at rtol 1e-3, atol 1e-4.
        objective: The bound, samples, KL annealing and likelihood (:class:`SeriesObjective`).
        weights: Pretrained weights to start from.
    """

    head: ClassVar[str | None] = "classifier"

    def __init__(
        self,
        input_shape: tuple[int, ...] = (1,),
        num_classes: int = 0,
        latent_dim: int = 10,
        encoder_dim: int = 20,
        encoder_dynamics: DynamicsSpec | None = None,
        encoder_solver: SolverSettings | None = None,
        dynamics: DynamicsSpec | None = None,
        solver: SolverSettings | None = None,
        objective: SeriesObjective | None = None,
        weights: str | None = None,
    ) -> None:
        super().__init__()
        encoder_dynamics = DynamicsSpec.coerce(encoder_dynamics or DEFAULT_DYNAMICS)
        dynamics = DynamicsSpec.coerce(dynamics or DEFAULT_DYNAMICS)
        encoder_solver = SolverSettings.coerce(encoder_solver, defaults=ENCODER_SOLVER)
        solver = SolverSettings.coerce(solver, defaults=DECODER_SOLVER)
        objective = SeriesObjective.coerce(objective)
        _check(num_classes >= 0, f"num_classes must be >= 0, got {num_classes!r}")
        self.save_arguments(
            {
                "input_shape": list(input_shape),
                "num_classes": num_classes,
                "latent_dim": latent_dim,
                "encoder_dim": encoder_dim,
                "encoder_dynamics": encoder_dynamics,
                "encoder_solver": encoder_solver,
                "dynamics": dynamics,
                "solver": solver,
                "objective": objective,
            }
        )
        input_dim = int(input_shape[0])
        self.net = LatentODENet(
            input_dim, latent_dim, encoder_dim, encoder_dynamics, encoder_solver, dynamics, solver
        )
        self.classifier = nn.Linear(latent_dim, num_classes) if num_classes else nn.Identity()
        self.log_noise_std = nn.Parameter(
            torch.full((input_dim,), math.log(objective.noise_std)), requires_grad=objective.learn_noise
        )
        self.objective, self.num_classes = objective, num_classes
        self.load_weights(weights)

    # ---------------------------------------------------------------- the bounds

    def bounds(self, batch: SeriesBatch, num_samples: int) -> dict[str, torch.Tensor]:
        """Per-series terms of the bounds, in nats, from ``num_samples`` (K) posterior samples.

        Returns:
            ``log_likelihood`` (K, B), ``kl`` (B,), the ``elbo`` (B,), the ``iwae`` bound (B,)
            and the ``mean`` predictions (B, S, D).
        """
        start = torch.minimum(batch.times[0], batch.target_times[0])
        q = self.net.posterior(batch, start)
        z0 = q.rsample((num_samples,))  # (K, B, L)
        predicted = self.net.decode(z0, start, batch.target_times)  # (K, B, S, D)
        log_likelihood = masked_gaussian_log_likelihood(
            predicted, batch.target_values, batch.target_mask, self.log_noise_std
        )
        prior = torch.distributions.Normal(torch.zeros_like(q.loc), torch.ones_like(q.scale))
        kl = torch.distributions.kl_divergence(q, prior).sum(-1)
        log_weights = log_likelihood + prior.log_prob(z0).sum(-1) - q.log_prob(z0).sum(-1)
        iwae = torch.logsumexp(log_weights, dim=0) - math.log(num_samples)
        return {
            "log_likelihood": log_likelihood,
            "kl": kl,
            "elbo": log_likelihood.mean(0) - kl,
            "iwae": iwae,
            "mean": predicted.mean(0),
            "z0_mean": q.loc,
        }

    def kl_weight(self) -> float:
        """0 for ``kl_warmup_epochs`` epochs, then 1 - 0.99^(epoch - warmup); 1 outside training."""
        if self._trainer is None or not self.training:
            return 1.0
        epochs = self.current_epoch - self.objective.kl_warmup_epochs
        return 0.0 if epochs < 0 else 1.0 - 0.99**epochs

    def step(self, batch: SeriesBatch, stage: str) -> torch.Tensor:
        terms = self.bounds(batch, self.objective.num_samples)
        count = batch.target_mask.sum().clamp(min=1)
        if self.objective.bound == "iwae":
            loss = -terms["iwae"].sum() / count
        else:
            weight = self.kl_weight() if stage == "train" else 1.0
            loss = -(terms["log_likelihood"].mean(0) - weight * terms["kl"]).sum() / count
        if self.num_classes:
            logits = self.classifier(terms["z0_mean"])
            labelled = batch.labels >= 0
            if labelled.any():
                loss = loss + self.objective.classification_weight * nn.functional.cross_entropy(
                    logits[labelled], batch.labels[labelled]
                )
                accuracy = (logits[labelled].argmax(-1) == batch.labels[labelled]).float().mean()
                self.log(
                    f"{stage}_acc", accuracy, on_epoch=True, batch_size=int(labelled.sum()), sync_dist=True
                )
        mse = masked_mse(terms["mean"], batch.target_values, batch.target_mask)
        on_step, size = stage == "train", len(batch)
        metrics = [
            ("loss", loss),
            ("elbo", terms["elbo"].mean()),
            ("iwae", terms["iwae"].mean()),
            ("kl", terms["kl"].mean()),
            ("mse", mse),
        ]
        if batch.target_heldout is not None:
            heldout = masked_mse(terms["mean"], batch.target_values, batch.target_heldout)
            metrics.append(("mse_heldout", heldout))
        if stage != "train":
            _, samples = self.predictive(batch, self.objective.eval_samples)
            metrics += [
                ("coverage90", interval_coverage(samples, batch.target_values, batch.target_mask)),
                ("crps", crps(samples, batch.target_values, batch.target_mask)),
            ]
        for name, value in metrics:
            self.log(
                f"{stage}_{name}",
                value,
                on_step=on_step,
                on_epoch=True,
                batch_size=size,
                sync_dist=True,
                prog_bar=name == "mse",
            )
        return loss

    # ---------------------------------------------------------------- prediction

    @torch.no_grad()
    def predict(
        self,
        times: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor,
        query_times: torch.Tensor,
        num_samples: int = 100,
    ) -> dict[str, torch.Tensor]:
        """The posterior predictive at ``query_times`` from one batch of observations.

        Args:
            times: (T,) increasing observation times, in the data module's time unit (already
                divided by its ``time_scale``).
            values: (B, T, D) observed values (anything where ``mask`` is 0).
            mask: (B, T, D), 1 where observed.
            query_times: (S,) increasing times to predict at, inside or beyond the observed window.
            num_samples: Posterior samples.

        Returns:
            ``mean`` (B, S, D) and ``samples`` (num_samples, B, S, D) of the predictive
            distribution (decoder means plus the observation noise).
        """
        mask = mask.float()
        batch = SeriesBatch(
            times,
            torch.where(mask > 0, values, 0.0),
            mask,
            query_times,
            torch.zeros_like(values[:, :1]),
            torch.zeros_like(mask[:, :1]),
            torch.full((len(values),), -1),
        )
        means, samples = self.predictive(batch, num_samples)
        return {"mean": means, "samples": samples}

    def predictive(self, batch: SeriesBatch, num_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The predictive mean (B, S, D) and samples (K, B, S, D) at the batch's target times."""
        start = torch.minimum(batch.times[0], batch.target_times[0])
        z0 = self.net.posterior(batch, start).sample((num_samples,))
        means = self.net.decode(z0, start, batch.target_times)
        samples = means + self.log_noise_std.exp() * torch.randn_like(means)
        return means.mean(0), samples

    def predict_step(self, batch: SeriesBatch, batch_idx: int) -> dict[str, torch.Tensor]:
        """The posterior predictive at the batch's target times, from ``objective.eval_samples`` samples."""
        return self.predict(
            batch.times, batch.values, batch.mask, batch.target_times, self.objective.eval_samples
        )

    def configure_optimizers(self) -> Any:
        """Adamax at 1e-2, decayed x0.999 per step (the authors' setting); configs may replace it."""
        optimizer = torch.optim.Adamax(self.parameters(), lr=1e-2)
        schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.999)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def masked_gaussian_log_likelihood(
    predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, log_std: torch.Tensor
) -> torch.Tensor:
    """Sum over the observed entries of log N(target; predicted, std^2), per sample and series.

    Args:
        predicted: (K, B, S, D) means.
        target: (B, S, D) values; entries where ``mask`` is 0 are never read into the result.
        mask: (B, S, D), 1 where the target is known.
        log_std: (D,) log standard deviation per channel.

    Returns:
        (K, B) log-likelihoods in nats.
    """
    target = torch.where(mask > 0, target, 0.0)  # unobserved entries never reach a value or a gradient
    z = (target - predicted) / log_std.exp()
    log_density = -0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi)
    return torch.where(mask > 0, log_density, 0.0).sum(dim=(-1, -2))


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise SettingError(message)

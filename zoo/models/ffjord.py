"""FFJORD continuous normalizing flows, trained three ways on one model and one metric.

Grathwohl, Chen, Bettencourt, Sutskever, Duvenaud 2019, "FFJORD: Free-form Continuous
Dynamics for Scalable Reversible Generative Models": a vector field f(t, z) carries data x at
t = 0 to z(T), and ``log p(x) = log N(z(T); 0, I) + ∫ tr(df/dz) dt`` exactly. Trained by:

* ``likelihood``: FFJORD's maximum likelihood, the divergence exact (2-D) or Hutchinson's;
* the same with RNODE's regularizers (Finlay et al. 2020, "How to train your neural ODE"):
  ``kinetic_weight * ∫||f||^2 + frobenius_weight * ∫||J||_F^2``;
* ``flow_matching``: conditional flow matching (Lipman et al. 2023; Tong et al. 2024), a
  regression of f(t, x_t) onto ``(z - x) / T`` along the straight path from a data point x to a
  base sample z, with independent or minibatch optimal-transport pairs: no solve in training.

All three are evaluated the same way: the exact log-likelihood with the test solver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from zoo.errors import SettingError
from zoo.families import register_model
from zoo.models.base import ZooModule
from zoo.ode import DynamicsSpec, SolverSettings, solve
from zoo.ode.cnf import (
    DIVERGENCES,
    PROBES,
    CNFField,
    draw_probe,
    initial_state,
    standard_normal_log_prob,
    without_regularizer_control,
)

TRAINERS = ("likelihood", "flow_matching")
COUPLINGS = ("independent", "ot")
#: FFJORD's toy setting: dopri5 at 1e-5 both ways, with the adjoint.
TRAIN_SOLVER = {"method": "dopri5", "rtol": 1e-5, "atol": 1e-5, "adjoint": True}
TEST_SOLVER = {"method": "dopri5", "rtol": 1e-5, "atol": 1e-5}
DEFAULT_DYNAMICS = {"name": "concat_squash", "hidden_dims": [64, 64, 64], "options": {"activation": "tanh"}}


@dataclass
class FlowTraining:
    """How the flow is trained.

    Attributes:
        trainer: ``likelihood`` (FFJORD, RNODE with the weights below) or ``flow_matching``.
        divergence: ``exact`` (low dimension) or ``hutchinson``, in likelihood training.
        probe: Hutchinson's probe, ``rademacher`` or ``gaussian``, drawn once per solve.
        kinetic_weight: RNODE's weight of ∫||f||^2 dt (0.01 in the paper; 0: FFJORD).
        frobenius_weight: RNODE's weight of ∫||df/dz||_F^2 dt.
        coupling: Flow matching's pairs of data and base points: ``independent`` or ``ot``
            (exact optimal transport within each batch).
    """

    trainer: str = "likelihood"
    divergence: str = "exact"
    probe: str = "rademacher"
    kinetic_weight: float = 0.0
    frobenius_weight: float = 0.0
    coupling: str = "independent"

    def __post_init__(self) -> None:
        for name, valid in (("trainer", TRAINERS), ("divergence", DIVERGENCES), ("probe", PROBES),
                            ("coupling", COUPLINGS)):
            if getattr(self, name) not in valid:
                raise SettingError(f"training.{name} must be one of {valid}, got {getattr(self, name)!r}")
        for name in ("kinetic_weight", "frobenius_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise SettingError(f"training.{name} must be a finite number >= 0, got {value!r}")

    @property
    def regularized(self) -> bool:
        return self.kinetic_weight > 0 or self.frobenius_weight > 0


class CNF(nn.Module):
    """The plain flow: ``num_blocks`` vector fields, each solved over [0, T] with its own T.

    Args:
        dim: Features of a data point.
        dynamics: Each block's vector field.
        num_blocks: Blocks in sequence (FFJORD's multi-block flows).
        end_time: T at the start of training (FFJORD: 0.5).
        learn_end_time: Train T as a parameter (kept positive through a softplus).
    """

    def __init__(self, dim: int, dynamics: DynamicsSpec, num_blocks: int, end_time: float,
                 learn_end_time: bool) -> None:
        super().__init__()
        self.fields = nn.ModuleList(dynamics.build(dim) for _ in range(num_blocks))
        raw = torch.full((num_blocks,), math.log(math.expm1(end_time)))  # softplus(raw) = end_time
        self.raw_end_time = nn.Parameter(raw, requires_grad=learn_end_time)

    @property
    def end_times(self) -> torch.Tensor:
        return nn.functional.softplus(self.raw_end_time)

    def _times(self, block: int, backwards: bool = False) -> torch.Tensor:
        end = self.end_times[block]
        times = torch.stack([end.new_zeros(()), end])
        return times.flip(0) if backwards else times

    def forward(self, x: torch.Tensor, settings: SolverSettings, divergence: str,
                probe: str = "rademacher") -> tuple[torch.Tensor, ...]:
        """Data to base: ``(z, Δ, kinetic, frobenius)``; Δ integrates -div f, so log p(x) = log N(z) - Δ."""
        state = initial_state(x)
        settings = without_regularizer_control(settings)
        for block, field in enumerate(self.fields):
            noise = draw_probe(state[0], probe) if divergence == "hutchinson" else None
            augmented = CNFField(field, divergence)
            ends = solve(augmented, state, self._times(block), settings, context=noise).end
            state = (ends[0], *(old + new for old, new in zip(state[1:], ends[1:], strict=True)))
        return state

    def inverse(self, z: torch.Tensor, settings: SolverSettings) -> torch.Tensor:
        """Base to data: each block solved backwards from its T to 0, the state alone."""
        for block in reversed(range(len(self.fields))):
            z = solve(self.fields[block], z, self._times(block, backwards=True), settings).end
        return z


@register_model
class FFJORD(ZooModule):
    """A continuous normalizing flow on vector data, with exact log-likelihood evaluation.

    Logs ``{stage}_nll`` (nats per point, the exact divergence with the test solver in
    validation and test), the training loss and its parts, ``end_time`` and the NFE.

    Args:
        input_shape: ``(D,)`` (linked from the DataModule).
        num_classes: Unused; must be 0 (linked from the DataModule).
        dynamics: Each block's vector field; default concat-squash 64-64-64, tanh.
        num_blocks: Flow blocks in sequence (1 for flow matching).
        end_time: T of each block at the start.
        learn_end_time: Train T (FFJORD does; flow matching keeps it fixed).
        solver: The training solve, what it leaves unset: dopri5 at 1e-5 with the adjoint.
        test_solver: The solve of validation, test, ``log_prob`` and ``sample``: dopri5 at 1e-5.
        training: The trainer and its settings (:class:`FlowTraining`).
        weights: Pretrained weights to start from.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...] = (2,),
        num_classes: int = 0,
        dynamics: DynamicsSpec | None = None,
        num_blocks: int = 1,
        end_time: float = 0.5,
        learn_end_time: bool = True,
        solver: SolverSettings | None = None,
        test_solver: SolverSettings | None = None,
        training: FlowTraining | dict[str, Any] | None = None,
        weights: str | None = None,
    ) -> None:
        super().__init__()
        if num_classes:
            raise SettingError(f"FFJORD models densities; num_classes must be 0, got {num_classes}")
        if len(input_shape) != 1:
            raise SettingError(f"FFJORD takes vectors of shape (D,), got input_shape={list(input_shape)}")
        if not (end_time > 0 and math.isfinite(end_time)):
            raise SettingError(f"end_time must be a finite number > 0, got {end_time!r}")
        training = training if isinstance(training, FlowTraining) else FlowTraining(**(training or {}))
        if training.trainer == "flow_matching" and (num_blocks != 1 or learn_end_time):
            raise SettingError("flow matching trains one block over a fixed T: set num_blocks: 1 and "
                               "learn_end_time: false")
        dynamics = DynamicsSpec.coerce(dynamics or DEFAULT_DYNAMICS)
        self.solver = SolverSettings.coerce(solver, defaults=TRAIN_SOLVER)
        self.test_solver = SolverSettings.coerce(test_solver, defaults=TEST_SOLVER)
        self.training_settings = training
        self.save_arguments({
            "input_shape": list(input_shape), "num_classes": num_classes, "dynamics": dynamics,
            "num_blocks": num_blocks, "end_time": end_time, "learn_end_time": learn_end_time,
            "solver": self.solver, "test_solver": self.test_solver, "training": training,
        })
        self.net = CNF(int(input_shape[0]), dynamics, num_blocks, end_time, learn_end_time)
        self.load_weights(weights)

    # ---------------------------------------------------------------- the public API

    def log_prob(self, x: torch.Tensor, settings: SolverSettings | None = None) -> torch.Tensor:
        """The exact log-density (nats) of each point of ``x`` (B, D), with the test solver."""
        z, delta, *_ = self.net(x, settings or self.test_solver, "exact")
        return standard_normal_log_prob(z) - delta

    @torch.no_grad()
    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``num_samples`` points of the model's distribution: base samples flowed back to data."""
        dim = self.hparams["input_shape"][0]
        z = torch.randn(num_samples, dim, generator=generator, device=self.device)
        return self.net.inverse(z, self.test_solver)

    # ---------------------------------------------------------------- training

    def step(self, batch: Any, stage: str) -> torch.Tensor:
        (x,) = batch if isinstance(batch, list | tuple) else (batch,)
        size = len(x)
        if stage != "train":
            nll = -self.log_prob(x).mean()
            self.log(f"{stage}_nll", nll, on_epoch=True, batch_size=size, sync_dist=True, prog_bar=True)
            return nll
        if self.training_settings.trainer == "flow_matching":
            loss = self.flow_matching_loss(x)
        else:
            loss = self.likelihood_loss(x)
        self.log("train_loss", loss, on_step=True, on_epoch=True, batch_size=size, sync_dist=True)
        self.log("end_time", self.net.end_times.mean(), on_step=True, on_epoch=False, batch_size=size)
        return loss

    def likelihood_loss(self, x: torch.Tensor) -> torch.Tensor:
        """NLL in nats, plus RNODE's weighted regularizers."""
        settings = self.training_settings
        z, delta, kinetic, frobenius = self.net(x, self.solver, settings.divergence, settings.probe)
        nll = -(standard_normal_log_prob(z) - delta).mean()
        self.log("train_nll", nll, on_step=True, on_epoch=True, batch_size=len(x), sync_dist=True)
        if not settings.regularized:
            return nll
        self.log("train_kinetic", kinetic.mean(), on_epoch=True, batch_size=len(x), sync_dist=True)
        self.log("train_frobenius", frobenius.mean(), on_epoch=True, batch_size=len(x), sync_dist=True)
        return nll + settings.kinetic_weight * kinetic.mean() + settings.frobenius_weight * frobenius.mean()

    def flow_matching_loss(self, x: torch.Tensor) -> torch.Tensor:
        """The mean squared error of f(t, x_t) against the straight path's velocity (z - x) / T."""
        z = torch.randn_like(x)
        if self.training_settings.coupling == "ot":
            z = z[optimal_pairs(x, z)]
        end = self.net.end_times[0]
        s = torch.rand(len(x), 1, device=x.device, dtype=x.dtype)
        path = (1 - s) * x + s * z
        velocity = self.net.fields[0](s * end, path)
        return (velocity - (z - x) / end).pow(2).sum(-1).mean()


def optimal_pairs(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The permutation of ``z`` that minimizes the summed squared distance to ``x`` (exact, Hungarian)."""
    from scipy.optimize import linear_sum_assignment

    cost = torch.cdist(x.detach(), z.detach()).pow(2).cpu().numpy()
    _, columns = linear_sum_assignment(cost)
    return torch.as_tensor(columns, device=z.device)

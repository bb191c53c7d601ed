"""FFJORD continuous normalizing flows, trained three ways on one model and one metric.

Grathwohl, Chen, Bettencourt, Sutskever, Duvenaud 2019, "FFJORD: Free-form Continuous
Dynamics for Scalable Reversible Generative Models": a vector field f(t, z) carries data x at
t = 0 to z(T), and ``log p(x) = log N(z(T); 0, I) + ∫ tr(df/dz) dt`` exactly. Trained by:

* ``likelihood``: FFJORD's maximum likelihood, the divergence exact (vectors) or Hutchinson's;
* the same with RNODE's regularizers (Finlay et al. 2020, "How to train your neural ODE"):
  ``kinetic_weight * ∫||f||^2 + frobenius_weight * ∫||J||_F^2``;
* ``flow_matching``: conditional flow matching (Lipman et al. 2023; Tong et al. 2024), a
  regression of f(t, x_t) onto ``(z - x) / T`` along the straight path from a data point x to a
  base sample z, with independent or minibatch optimal-transport pairs: no solve in training.

All three are evaluated the same way: the log-likelihood with the test solver and divergence
(exact for vectors; Hutchinson's unbiased estimate, with a seeded probe, for images).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from zoo.errors import SettingError
from zoo.families import register_model
from zoo.models.base import SeededEvaluation, ZooModule
from zoo.models.flow_nets import CNF, MultiscaleCNF, Pixels
from zoo.ode import DynamicsSpec, SolverSettings
from zoo.ode.cnf import DIVERGENCES, PROBES, standard_normal_log_prob

TRAINERS = ("likelihood", "flow_matching")
COUPLINGS = ("independent", "ot")
#: FFJORD's toy setting: dopri5 at 1e-5 both ways, with the adjoint.
TRAIN_SOLVER = {"method": "dopri5", "rtol": 1e-5, "atol": 1e-5, "adjoint": True}
TEST_SOLVER = {"method": "dopri5", "rtol": 1e-5, "atol": 1e-5}
DEFAULT_DYNAMICS = {"name": "concat_squash", "hidden_dims": [64, 64, 64], "options": {"activation": "tanh"}}
#: FFJORD's image vector field: 3x3 convolutions with time as a channel, 64 channels, softplus.
DEFAULT_IMAGE_DYNAMICS = {"name": "concat_conv", "hidden_dims": [64, 64, 64],
                          "options": {"activation": "softplus"}}


@dataclass
class FlowTraining:
    """How the flow is trained.

    Attributes:
        trainer: ``likelihood`` (FFJORD, RNODE with the weights below) or ``flow_matching``.
        divergence: ``exact`` or ``hutchinson``, in likelihood training; None: exact for
            vectors, hutchinson for images (the exact trace costs D backward passes).
        probe: Hutchinson's probe, ``rademacher`` or ``gaussian``, drawn once per solve.
        kinetic_weight: RNODE's weight of ∫||f||^2 dt (0.01 in the paper; 0: FFJORD).
        frobenius_weight: RNODE's weight of ∫||df/dz||_F^2 dt.
        coupling: Flow matching's pairs of data and base points: ``independent`` or ``ot``
            (exact optimal transport within each batch).
    """

    trainer: str = "likelihood"
    divergence: str | None = None
    probe: str = "rademacher"
    kinetic_weight: float = 0.0
    frobenius_weight: float = 0.0
    coupling: str = "independent"

    def __post_init__(self) -> None:
        for name, valid in (("trainer", TRAINERS), ("divergence", (*DIVERGENCES, None)),
                            ("probe", PROBES), ("coupling", COUPLINGS)):
            if getattr(self, name) not in valid:
                raise SettingError(f"training.{name} must be one of {valid}, got {getattr(self, name)!r}")
        for name in ("kinetic_weight", "frobenius_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise SettingError(f"training.{name} must be a finite number >= 0, got {value!r}")

    @property
    def regularized(self) -> bool:
        return self.kinetic_weight > 0 or self.frobenius_weight > 0


@dataclass
class FlowShape:
    """The flow's blocks and their time.

    Attributes:
        num_blocks: Blocks in sequence (FFJORD's multi-block flows; 1 for flow matching).
        end_time: T of each block at the start (FFJORD: 0.5).
        learn_end_time: Train T (FFJORD does; flow matching keeps it fixed).
        scales: Images only: the multiscale flow's scales (:class:`~zoo.models.flow_nets.MultiscaleCNF`),
            ``num_blocks`` blocks each; 1: one flow at full resolution.
    """

    num_blocks: int = 1
    end_time: float = 0.5
    learn_end_time: bool = True
    scales: int = 1

    def __post_init__(self) -> None:
        for name in ("num_blocks", "scales"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SettingError(f"flow.{name} must be a positive integer, got {value!r}")
        if not (self.end_time > 0 and math.isfinite(self.end_time)):
            raise SettingError(f"flow.end_time must be a finite number > 0, got {self.end_time!r}")


@register_model
class FFJORD(SeededEvaluation, ZooModule):
    """A continuous normalizing flow on vectors or images, with exact log-likelihood evaluation.

    Logs ``{stage}_nll`` (nats per point, with the test solver and divergence in validation
    and test; for pixels also ``{stage}_bpd``, bits per dimension), the training loss
    and its parts, ``end_time`` and the NFE. Validation and test draw their dequantization noise
    from a fixed seed.

    Args:
        input_shape: ``(D,)`` or, for images, ``(C, H, W)`` (linked from the DataModule).
        num_classes: Unused; must be 0 (linked from the DataModule).
        dynamics: Each block's vector field; default concat-squash 64-64-64, tanh (vectors) or
            3x3 concat convolutions of 64 channels, softplus (images: FFJORD's).
        flow: Blocks and their end time (:class:`FlowShape`).
        solver: The training solve, what it leaves unset: dopri5 at 1e-5 with the adjoint.
        test_solver: The solve of validation, test, ``log_prob`` and ``sample``: dopri5 at 1e-5.
        test_divergence: The divergence of validation, test and ``log_prob``: ``exact``, or
            ``hutchinson`` (one probe per solve, seeded in validation and test): an unbiased
            estimate of log p. None: exact for vectors, hutchinson for images, where the exact
            trace costs D backward passes.
        training: The trainer and its settings (:class:`FlowTraining`).
        pixel_levels: The data are integer pixels of this many levels (:class:`Pixels`); None:
            continuous points.
        weights: Pretrained weights to start from.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...] = (2,),
        num_classes: int = 0,
        dynamics: DynamicsSpec | None = None,
        flow: FlowShape | dict[str, Any] | None = None,
        solver: SolverSettings | None = None,
        test_solver: SolverSettings | None = None,
        test_divergence: str | None = None,
        training: FlowTraining | dict[str, Any] | None = None,
        pixel_levels: int | None = None,
        weights: str | None = None,
    ) -> None:
        super().__init__()
        if num_classes:
            raise SettingError(f"FFJORD models densities; num_classes must be 0, got {num_classes}")
        if pixel_levels is not None and (isinstance(pixel_levels, bool) or pixel_levels < 2):
            raise SettingError(f"pixel_levels must be an integer >= 2 or null, got {pixel_levels!r}")
        flow = flow if isinstance(flow, FlowShape) else FlowShape(**(flow or {}))
        training = training if isinstance(training, FlowTraining) else FlowTraining(**(training or {}))
        default_divergence = "exact" if len(input_shape) == 1 else "hutchinson"
        training = dataclasses.replace(training, divergence=training.divergence or default_divergence)
        test_divergence = test_divergence or default_divergence
        _check_combination(tuple(input_shape), flow, training, test_divergence)
        dynamics = DynamicsSpec.coerce(dynamics or (DEFAULT_DYNAMICS if len(input_shape) == 1
                                                    else DEFAULT_IMAGE_DYNAMICS))
        self.solver = SolverSettings.coerce(solver, defaults=TRAIN_SOLVER)
        self.test_solver = SolverSettings.coerce(test_solver, defaults=TEST_SOLVER)
        self.training_settings, self.test_divergence = training, test_divergence
        self.save_arguments({
            "input_shape": list(input_shape), "num_classes": num_classes, "dynamics": dynamics,
            "flow": flow, "solver": self.solver, "test_solver": self.test_solver,
            "test_divergence": test_divergence, "training": training, "pixel_levels": pixel_levels,
        })
        if flow.scales > 1:
            self.net = MultiscaleCNF(tuple(input_shape), dynamics, flow)
        else:
            self.net = CNF(int(input_shape[0]), dynamics, flow)  # features, or an image's channels
        self.pixels = Pixels(pixel_levels) if pixel_levels else None
        self.load_weights(weights)

    # ---------------------------------------------------------------- the public API

    def log_prob(self, x: torch.Tensor, settings: SolverSettings | None = None) -> torch.Tensor:
        """The log-likelihood (nats) of each point of ``x``, with the test solver and divergence.

        For continuous points, the exact log-density (Hutchinson's estimate if ``test_divergence``
        says so). For pixel models (``pixel_levels``), the log-probability of the integer pixels
        ``x`` estimated from one dequantization draw (its expectation is a lower bound).
        """
        if torch.is_inference_mode_enabled():  # Lightning's test and predict; the divergence needs autograd
            with torch.inference_mode(False), torch.no_grad():
                return self.log_prob(x.clone(), settings)
        log_det = 0.0
        if self.pixels is not None:
            x, log_det = self.pixels(x)
        z, delta, *_ = self.net(x, settings or self.test_solver, self.test_divergence,
                                self.training_settings.probe)
        return standard_normal_log_prob(z) - delta + log_det

    def bits_per_dim(self, x: torch.Tensor) -> torch.Tensor:
        """``-log_prob(x)`` in bits per dimension, per point."""
        return -self.log_prob(x) / (x[0].numel() * math.log(2))

    @torch.no_grad()
    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``num_samples`` points of the model's distribution: base samples flowed back to data."""
        shape = self.hparams["input_shape"]
        z = torch.randn(num_samples, *shape, generator=generator, device=self.device)
        x = self.net.inverse(z, self.test_solver)
        return x if self.pixels is None else self.pixels.inverse(x)

    # ---------------------------------------------------------------- training

    def step(self, batch: Any, stage: str) -> torch.Tensor:
        (x,) = batch if isinstance(batch, list | tuple) else (batch,)
        size = len(x)
        if stage != "train":
            nll = -self.log_prob(x).mean()
            self.log(f"{stage}_nll", nll, on_epoch=True, batch_size=size, sync_dist=True, prog_bar=True)
            if self.pixels is not None:
                bpd = nll / (x[0].numel() * math.log(2))
                self.log(f"{stage}_bpd", bpd, on_epoch=True, batch_size=size, sync_dist=True)
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
        log_det = 0.0
        if self.pixels is not None:
            x, log_det = self.pixels(x)
        z, delta, kinetic, frobenius = self.net(x, self.solver, settings.divergence, settings.probe)
        nll = -(standard_normal_log_prob(z) - delta + log_det).mean()
        self.log("train_nll", nll, on_step=True, on_epoch=True, batch_size=len(x), sync_dist=True)
        if not settings.regularized:
            return nll
        self.log("train_kinetic", kinetic.mean(), on_epoch=True, batch_size=len(x), sync_dist=True)
        self.log("train_frobenius", frobenius.mean(), on_epoch=True, batch_size=len(x), sync_dist=True)
        return nll + settings.kinetic_weight * kinetic.mean() + settings.frobenius_weight * frobenius.mean()

    def flow_matching_loss(self, x: torch.Tensor) -> torch.Tensor:
        """The mean squared error of f(t, x_t) against the straight path's velocity (z - x) / T."""
        if self.pixels is not None:
            x = self.pixels(x)[0]
        z = torch.randn_like(x)
        if self.training_settings.coupling == "ot":
            z = z[optimal_pairs(x, z)]
        end = self.net.end_times[0]
        s = torch.rand(len(x), *[1] * (x.dim() - 1), device=x.device, dtype=x.dtype)
        path = (1 - s) * x + s * z
        velocity = self.net.fields[0](s * end, path)
        return (velocity - (z - x) / end).pow(2).flatten(1).sum(-1).mean()

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        """The batch's log-likelihoods (nats) and as many samples of the model."""
        (x,) = batch if isinstance(batch, list | tuple) else (batch,)
        return {"log_prob": self.log_prob(x), "samples": self.sample(len(x))}


def _check_combination(input_shape: tuple[int, ...], flow: FlowShape, training: FlowTraining,
                       test_divergence: str) -> None:
    shape = list(input_shape)
    if len(shape) not in (1, 3):
        raise SettingError(f"FFJORD takes vectors (D,) or images (C, H, W), got input_shape={shape}")
    if test_divergence not in DIVERGENCES:
        raise SettingError(f"test_divergence must be one of {DIVERGENCES}, got {test_divergence!r}")
    one_fixed_block = (flow.num_blocks, flow.scales, flow.learn_end_time) == (1, 1, False)
    if training.trainer == "flow_matching" and not one_fixed_block:
        raise SettingError("flow matching trains one block over a fixed T: set flow.num_blocks: 1, "
                           "flow.scales: 1 and flow.learn_end_time: false")
    if flow.scales > 1 and len(shape) != 3:
        raise SettingError(f"flow.scales > 1 is for images (C, H, W), got input_shape={shape}")


def optimal_pairs(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The permutation of ``z`` that minimizes the summed squared distance to ``x`` (exact, Hungarian)."""
    from scipy.optimize import linear_sum_assignment

    cost = torch.cdist(x.detach().flatten(1), z.detach().flatten(1)).pow(2).cpu().numpy()
    _, columns = linear_sum_assignment(cost)
    return torch.as_tensor(columns, device=z.device)

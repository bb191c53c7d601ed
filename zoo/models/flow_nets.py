"""The networks of the FFJORD family: pixels to flow space, plain and multiscale flows.

Grathwohl et al. 2019 (FFJORD), section 4: a flow of ``num_blocks`` continuous blocks, and for
images a multiscale flow (after RealNVP, Dinh et al. 2017): blocks at full resolution, a squeeze
(each 2x2 patch to 4 channels), blocks on the squeezed image, half of its channels factored out
to the base distribution, and the same again on the other half, at half the resolution.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from zoo.errors import SettingError
from zoo.ode import DynamicsSpec, SolverSettings, solve
from zoo.ode.cnf import CNFField, draw_probe, initial_state, without_regularizer_control

if TYPE_CHECKING:
    from zoo.models.ffjord import FlowShape

#: The logit transform's margin for pixel data (RealNVP's 0.05).
LOGIT_ALPHA = 0.05


class Pixels(nn.Module):
    """Integer pixels to the flow's space and back: dequantize, scale to [0, 1], logit.

    ``y = logit(a + (1 - 2a) (k + u) / L)`` for pixel value k of L levels and u ~ U[0, 1)
    (Theis et al. 2016's dequantization; RealNVP's logit with a = ``LOGIT_ALPHA``), so a density
    q(y) gives the pixels' probability P(k) >= E_u[q(y) |dy/dx| / L^D]: the bits per dimension
    are ``-(log q(y) + log|dy/dx| - D log L) / (D log 2)``.

    Args:
        levels: Values a pixel takes (17 for the 8x8 digits, 256 for 8-bit images).
    """

    def __init__(self, levels: int) -> None:
        super().__init__()
        self.levels = levels

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``y`` and the per-image log-determinant of k -> y, less D log L (the cell volume)."""
        unit = (pixels + torch.rand_like(pixels)) / self.levels
        s = LOGIT_ALPHA + (1 - 2 * LOGIT_ALPHA) * unit
        y = torch.log(s) - torch.log1p(-s)
        log_det = (math.log(1 - 2 * LOGIT_ALPHA) - torch.log(s) - torch.log1p(-s)).flatten(1).sum(-1)
        return y, log_det - pixels[0].numel() * math.log(self.levels)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """Pixel values (integers as floats) from flow-space points."""
        unit = (torch.sigmoid(y) - LOGIT_ALPHA) / (1 - 2 * LOGIT_ALPHA)
        return (unit * self.levels).floor().clamp(0, self.levels - 1)


class CNF(nn.Module):
    """The plain flow: ``num_blocks`` vector fields, each solved over [0, T] with its own T.

    Args:
        dim: Features of a data point.
        dynamics: Each block's vector field.
        shape: Blocks and times; a learned T is kept positive through a softplus.
    """

    def __init__(self, dim: int, dynamics: DynamicsSpec, shape: FlowShape) -> None:
        super().__init__()
        self.fields = nn.ModuleList(dynamics.build(dim) for _ in range(shape.num_blocks))
        raw = torch.full((shape.num_blocks,), math.log(math.expm1(shape.end_time)))  # softplus(raw) = T
        self.raw_end_time = nn.Parameter(raw, requires_grad=shape.learn_end_time)

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


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) to (B, 4C, H/2, W/2): each 2x2 patch of a channel becomes 4 channels."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, c * 4, h // 2, w // 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`squeeze`."""
    b, c, h, w = x.shape
    x = x.reshape(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c // 4, h * 2, w * 2)


class MultiscaleCNF(nn.Module):
    """FFJORD's multiscale image flow: at each scale a :class:`CNF`, a squeeze, a :class:`CNF`, a factor-out.

    At every scale but the last, ``num_blocks`` blocks on (C, H, W), a squeeze to
    (4C, H/2, W/2), ``num_blocks`` blocks there, then half of the channels leave for the base
    distribution and the other half, (2C, H/2, W/2), go on to the next scale; the last scale
    is ``num_blocks`` blocks alone (FFJORD's ``odenvp``). The base point ``z`` has the data's
    shape: the factored-out halves, then the last scale's output, flattened and concatenated in
    that order.

    Args:
        shape: (C, H, W) of an image; H and W must halve ``scales - 1`` times.
        dynamics: Each block's vector field (on its stage's channels).
        shape_settings: Blocks per stage, their times, and the number of scales.
    """

    def __init__(self, shape: tuple[int, int, int], dynamics: DynamicsSpec,
                 shape_settings: FlowShape) -> None:
        super().__init__()
        channels, height, width = self.input_shape = tuple(shape)
        self.stages = nn.ModuleList()  # per scale: (before the squeeze, after it), or (the last,)
        self.part_shapes: list[tuple[int, int, int]] = []
        for scale in range(shape_settings.scales):
            if scale == shape_settings.scales - 1:
                self.stages.append(nn.ModuleList([CNF(channels, dynamics, shape_settings)]))
                self.part_shapes.append((channels, height, width))
                break
            if height % 2 or width % 2:
                raise SettingError(f"flow.scales={shape_settings.scales} halves {tuple(shape)} too often: "
                                   f"{height}x{width} at scale {scale + 1} of {shape_settings.scales} "
                                   "does not halve; use fewer scales")
            self.stages.append(nn.ModuleList([CNF(channels, dynamics, shape_settings),
                                              CNF(4 * channels, dynamics, shape_settings)]))
            channels, height, width = 2 * channels, height // 2, width // 2
            self.part_shapes.append((channels, height, width))
        self.part_sizes = [math.prod(part) for part in self.part_shapes]

    @property
    def end_times(self) -> torch.Tensor:
        return torch.cat([flow.end_times for stage in self.stages for flow in stage])

    def forward(self, x: torch.Tensor, settings: SolverSettings, divergence: str,
                probe: str = "rademacher") -> tuple[torch.Tensor, ...]:
        """Data to base: ``(z, Δ, kinetic, frobenius)``, summed over every stage."""
        parts, totals = [], None
        for stage in self.stages:
            for position, flow in enumerate(stage):
                x = squeeze(x) if position == 1 else x
                x, *costs = flow(x, settings, divergence, probe)
                totals = costs if totals is None else [a + b for a, b in zip(totals, costs, strict=True)]
            if len(stage) == 2:
                half = x.shape[1] // 2
                parts.append(x[:, :half])
                x = x[:, half:]
        parts.append(x)
        z = torch.cat([part.flatten(1) for part in parts], dim=1)
        return (z.reshape(len(z), *self.input_shape), *totals)

    def inverse(self, z: torch.Tensor, settings: SolverSettings) -> torch.Tensor:
        """Base to data: the last scale first, each factored half joined back before its stage."""
        parts = z.flatten(1).split(self.part_sizes, dim=1)
        x = None
        for scale in reversed(range(len(self.stages))):
            part = parts[scale].reshape(len(z), *self.part_shapes[scale])
            x = part if x is None else torch.cat([part, x], dim=1)
            stage = self.stages[scale]
            for position in reversed(range(len(stage))):
                x = stage[position].inverse(x, settings)
                x = unsqueeze(x) if position == 1 else x
        return x

"""Irregular times: solve a batch once on the sorted union of its samples' times.

Samples of a time-series batch are observed at their own times (Rubanova et al. 2019). A batch
is solved once on the union of them all; :func:`union_of_times` says where each sample's times
sit in that union, :func:`gather` reads each sample's own states out of the solution, and
:func:`scatter` puts per-sample values onto the union, with a mask of what was observed::

    union = union_of_times(times, mask)             # times (B, N), mask (B, N)
    states = solve(dynamics, z0, union.times).ys    # (U, B, D)
    at_own_times = gather(states, union)            # (B, N, D), zeros where mask is False
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TimeUnion:
    """Where each sample's times sit in the sorted union of a batch's times.

    Attributes:
        times: The sorted distinct times of the batch, (U,).
        index: For each sample's n-th time, its position in ``times``, (B, N); 0 where masked.
        mask: Which entries of the per-sample times are real, (B, N).
    """

    times: torch.Tensor
    index: torch.Tensor
    mask: torch.Tensor


def pad_times(times: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample 1-D time tensors of any lengths as one (B, N) tensor and its mask."""
    if not times:
        raise ValueError("pad_times needs at least one sample's times")
    length = max(len(t) for t in times)
    padded = torch.zeros(len(times), length, dtype=times[0].dtype, device=times[0].device)
    mask = torch.zeros(len(times), length, dtype=torch.bool, device=times[0].device)
    for row, sample in enumerate(times):
        padded[row, : len(sample)] = sample
        mask[row, : len(sample)] = True
    return padded, mask


def union_of_times(times: torch.Tensor, mask: torch.Tensor | None = None) -> TimeUnion:
    """The sorted union of a batch's times, and where each sample's times are in it.

    Args:
        times: (B, N) times of each sample (the padding, where ``mask`` is False, is ignored).
        mask: (B, N) True where a time is real; None: all are.

    Raises:
        ValueError: Shapes disagree, or no time is real.
    """
    if times.dim() != 2:
        raise ValueError(f"times must be (batch, times), got shape {tuple(times.shape)}")
    mask = torch.ones_like(times, dtype=torch.bool) if mask is None else mask.to(torch.bool)
    if mask.shape != times.shape:
        raise ValueError(f"mask {tuple(mask.shape)} and times {tuple(times.shape)} must have one shape")
    if not mask.any():
        raise ValueError("no time is observed (the mask is all False)")
    union, inverse = torch.unique(times[mask], sorted=True, return_inverse=True)
    index = torch.zeros_like(times, dtype=torch.long)
    index[mask] = inverse
    return TimeUnion(union, index, mask)


def gather(states: torch.Tensor, union: TimeUnion) -> torch.Tensor:
    """Each sample's states at its own times.

    Args:
        states: (U, B, ...) states on ``union.times``, as :func:`zoo.ode.solve` returns them.
        union: The batch's :class:`TimeUnion`.

    Returns:
        (B, N, ...): sample b's state at its n-th time; zeros where ``union.mask`` is False.
    """
    _check_lengths(states, union)
    per_sample = states.transpose(0, 1)  # (B, U, ...)
    index = union.index.view(*union.index.shape, *([1] * (states.dim() - 2)))
    picked = per_sample.gather(1, index.expand(-1, -1, *per_sample.shape[2:]))
    mask = union.mask.view(*union.mask.shape, *([1] * (states.dim() - 2)))
    return picked * mask.to(picked.dtype)


def scatter(values: torch.Tensor, union: TimeUnion) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample values placed on the union of times, with what each sample observed there.

    Args:
        values: (B, N, ...) values at each sample's own times.
        union: The batch's :class:`TimeUnion`.

    Returns:
        ``(on_union, observed)``: (U, B, ...) values, zeros where the sample has no value at that
        time, and the (U, B) mask of where it has one.
    """
    count, batch = len(union.times), values.shape[0]
    on_union = values.new_zeros(batch, count, *values.shape[2:])
    observed = torch.zeros(batch, count, dtype=torch.bool, device=values.device)
    rows = torch.arange(batch, device=values.device).unsqueeze(1).expand_as(union.index)
    keep = union.mask
    on_union[rows[keep], union.index[keep]] = values[keep]
    observed[rows[keep], union.index[keep]] = True
    return on_union.transpose(0, 1), observed.transpose(0, 1)


def _check_lengths(states: torch.Tensor, union: TimeUnion) -> None:
    if states.shape[0] != len(union.times) or states.shape[1] != union.index.shape[0]:
        raise ValueError(
            f"states {tuple(states.shape[:2])} must be (len(union.times), batch) = "
            f"({len(union.times)}, {union.index.shape[0]})"
        )

"""Irregularly sampled time series: one series per item, batches on the union of their times.

Each item is a :class:`Series`: what was observed (times, values, and a mask per value, so a
channel may be missing at a time) and what the model is asked to predict (target times, values
and mask), with an optional class label. :func:`collate_series` makes a :class:`SeriesBatch`
as Rubanova et al. (2019) do: the sorted union of the batch's times, each series' values placed
on it, and a mask that is 1 only where that series observed that channel at that time. Times are
divided by the data set's fixed ``time_scale`` (never by one batch's own largest time, which
would change the time unit from batch to batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.nn.utils.rnn import pad_sequence

from zoo.ode.times import scatter, union_of_times


@dataclass
class Series:
    """One time series: observations and targets, each (times, values, mask).

    Attributes:
        times: Observation times, (n,), increasing.
        values: Observed values, (n, D); anything where ``mask`` is 0.
        mask: 1 where a value was observed, (n, D).
        target_times: Times to predict at, (m,), increasing.
        target_values: The true values there, (m, D); anything where ``target_mask`` is 0.
        target_mask: 1 where a target value is known, (m, D).
        label: Class of the series, or -1.
        target_heldout: 1 where a known target value was not among the observations, (m, D);
            ``None``: every target is held out (extrapolation).
    """

    times: torch.Tensor
    values: torch.Tensor
    mask: torch.Tensor
    target_times: torch.Tensor
    target_values: torch.Tensor
    target_mask: torch.Tensor
    label: int = -1
    target_heldout: torch.Tensor | None = None


@dataclass
class SeriesBatch:
    """A batch of series on the union of their times (Lightning moves it to the device).

    Attributes:
        times: Sorted union of the batch's observation times, (T,), divided by the time scale.
        values: (B, T, D), zero where not observed.
        mask: (B, T, D) float, 1 where series b observed channel d at ``times[t]``.
        target_times: Sorted union of the target times, (S,), divided by the time scale.
        target_values: (B, S, D), zero where not known.
        target_mask: (B, S, D) float.
        labels: (B,) int64 classes, -1 where unlabelled.
        target_heldout: (B, S, D) float, 1 where a known target was not observed (the values
            an interpolation metric is computed on).
    """

    times: torch.Tensor
    values: torch.Tensor
    mask: torch.Tensor
    target_times: torch.Tensor
    target_values: torch.Tensor
    target_mask: torch.Tensor
    labels: torch.Tensor
    target_heldout: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.values.shape[0]


def on_union(
    times: Sequence[torch.Tensor],
    values: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor],
    time_scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-series (times, values, mask) as (union of times, (B, T, D) values, (B, T, D) mask)."""
    padded = pad_sequence(list(times), batch_first=True)
    real = pad_sequence([torch.ones(len(t), dtype=torch.bool) for t in times], batch_first=True)
    union = union_of_times(padded / time_scale, real)
    placed, _ = scatter(pad_sequence(list(values), batch_first=True), union)
    placed_mask, _ = scatter(pad_sequence(list(masks), batch_first=True).float(), union)
    placed_mask = placed_mask.transpose(0, 1)
    return union.times, placed.transpose(0, 1) * placed_mask, placed_mask


def collate_series(items: Sequence[Series], time_scale: float) -> SeriesBatch:
    """The batch of ``items`` on the union of their observation times and of their target times.

    Args:
        items: The series.
        time_scale: The data set's time unit: every time is divided by it.
    """
    times, values, mask = on_union(
        [s.times for s in items], [s.values for s in items], [s.mask for s in items], time_scale
    )
    target_times, target_values, target_mask = on_union(
        [s.target_times for s in items],
        [s.target_values for s in items],
        [s.target_mask for s in items],
        time_scale,
    )
    labels = torch.tensor([s.label for s in items], dtype=torch.long)
    heldout = [s.target_mask if s.target_heldout is None else s.target_heldout * s.target_mask for s in items]
    _, _, target_heldout = on_union(
        [s.target_times for s in items], [s.target_values for s in items], heldout, time_scale
    )
    return SeriesBatch(times, values, mask, target_times, target_values, target_mask, labels, target_heldout)


class SeriesCollate:
    """``collate_fn`` of a series data module (a class, so that loader workers can pickle it)."""

    def __init__(self, time_scale: float) -> None:
        self.time_scale = time_scale

    def __call__(self, items: Sequence[Series]) -> SeriesBatch:
        return collate_series(items, self.time_scale)

"""Generated irregular time-series data sets: the periodic toy and the spirals.

* :class:`PeriodicDataModule`: the toy of Rubanova et al. (2019), Section 4.1: 1,000 sinusoids
  ``sin(2 pi f t + phase)`` with ``f ~ U[0.4, 0.8]`` and ``phase ~ U[0, 2 pi]``, on 100 times
  drawn once on [0, 5] and shared by all series, with Gaussian noise of standard deviation
  ``noise`` (0.01, the authors' noise weight).
* :class:`SpiralsDataModule`: the spirals of Chen et al. (2018), Section 5.1: 1,000 2-D
  spirals, half clockwise, each a window of 100 consecutive points of 1,000 on [0, 6 pi] from
  a random start, with noise of standard deviation 0.1; the 100 points after the window are
  the extrapolation targets.

Tasks: ``interpolation`` observes a random ``observed`` fraction of each series' points and
predicts all of them; ``extrapolation`` observes (a fraction of) the first half and predicts
the second (the spirals: the window, and the next 100 points). Train, validation and test
series are independent draws (``SeedSequence(seed).spawn``), as in :mod:`zoo.data.toys`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from zoo.data.series import Series, SeriesCollate
from zoo.data.splits import SplitDataModule
from zoo.data.toys import split_rng
from zoo.errors import SettingError
from zoo.families import register_datamodule

TASKS = ("interpolation", "extrapolation")


class SeriesDataModule(SplitDataModule):
    """Shared base of the time-series data modules: splits of :class:`Series`, batched on unions.

    Subclasses set ``input_dim``, ``time_scale`` and ``display_name`` and implement
    :meth:`_series` (one split's series from its random generator).
    """

    #: Channels per observation.
    input_dim: int
    #: The data set's time unit: every time is divided by it in batches.
    time_scale: float
    #: Human-readable name, for model cards.
    display_name: str
    num_classes: int = 0

    def __init__(
        self,
        num_train: int,
        num_val: int,
        num_test: int,
        task: str,
        observed: float,
        batch_size: int,
        seed: int,
        num_workers: int,
    ) -> None:
        super().__init__()
        for name, value in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < (1 if name != "num_val" else 0)
            ):
                raise SettingError(f"{name} must be a positive integer, got {value!r}")
        if task not in TASKS:
            raise SettingError(f"task must be one of {TASKS}, got {task!r}")
        if not 0 < observed <= 1:
            raise SettingError(f"observed must be a fraction in (0, 1], got {observed!r}")
        if batch_size < 1:
            raise SettingError(f"batch_size must be positive, got {batch_size}")
        self.counts = {"train": num_train, "val": num_val, "test": num_test}
        self.task, self.observed = task, observed
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.collate = SeriesCollate(self.time_scale)
        self.train_set = self.val_set = self.test_set = None

    @property
    def input_shape(self) -> tuple[int]:
        return (self.input_dim,)

    @property
    def has_validation(self) -> bool:
        return self.counts["val"] > 0

    @property
    def preprocessing(self) -> dict:
        return {
            "inputs": "times, values and masks of irregular series",
            "time_scale": self.time_scale,
            "normalize": None,
        }

    def setup(self, stage: str | None = None) -> None:
        for split in ("train", "val", "test"):
            if getattr(self, f"{split}_set") is None:
                setattr(self, f"{split}_set", self._series(split_rng(self.seed, split), self.counts[split]))

    def _series(self, rng: np.random.Generator, count: int) -> list[Series]:
        raise NotImplementedError

    def _split(
        self,
        rng: np.random.Generator,
        times: np.ndarray,
        values: np.ndarray,
        truth_times: np.ndarray | None = None,
        truth: np.ndarray | None = None,
    ) -> Series:
        """One series: observe a random ``observed`` fraction of (the first half of) ``values``."""
        n = len(times)
        if truth is None and self.task == "extrapolation":
            times, values, truth_times, truth = (
                times[: n // 2],
                values[: n // 2],
                times[n // 2 :],
                values[n // 2 :],
            )
        elif truth is None:
            truth_times, truth = times, values
        keep = np.sort(rng.choice(len(times), size=max(1, round(self.observed * len(times))), replace=False))
        tensor = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)  # noqa: E731
        return Series(
            tensor(times[keep]),
            tensor(values[keep]),
            torch.ones(len(keep), values.shape[1]),
            tensor(truth_times),
            tensor(truth),
            torch.ones(truth.shape),
            target_heldout=tensor(np.repeat(~np.isin(truth_times, times[keep])[:, None], truth.shape[1], 1)),
        )


@register_datamodule
class PeriodicDataModule(SeriesDataModule):
    """Rubanova et al.'s periodic toy: noisy sinusoids of random frequency and phase, 100 shared times."""

    input_dim = 1
    time_scale = 5.0

    def __init__(
        self,
        num_train: int = 800,
        num_val: int = 100,
        num_test: int = 100,
        task: str = "interpolation",
        observed: float = 0.5,
        num_times: int = 100,
        noise: float = 0.01,
        frequencies: tuple[float, float] = (0.4, 0.8),
        batch_size: int = 50,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        """Configure the data; nothing is generated here.

        Args:
            num_train: Series in the train split (the paper: 1,000 in all).
            num_val: Series in the validation split.
            num_test: Series in the test split.
            task: ``interpolation`` or ``extrapolation``.
            observed: Fraction of each series' (observable) points that the model sees.
            num_times: Points per series, drawn once on [0, 5] from ``seed``, shared by all.
            noise: Standard deviation of the Gaussian observation noise.
            frequencies: The range of the uniform distribution of the frequencies.
            batch_size: Series per batch.
            seed: Seed of every split and of the training order.
            num_workers: Loader worker processes.
        """
        self.num_times, self.noise = num_times, noise
        low, high = frequencies
        if not 0 < low <= high:
            raise SettingError(f"frequencies must be a range 0 < low <= high, got {frequencies!r}")
        self.frequencies = (float(low), float(high))
        super().__init__(num_train, num_val, num_test, task, observed, batch_size, seed, num_workers)
        self.save_hyperparameters()
        self.display_name = f"Periodic toy ({task}, {observed:.0%} observed)"
        grid_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,)))
        self.times = np.sort(grid_rng.uniform(0, 5, num_times))

    def _series(self, rng: np.random.Generator, count: int) -> list[Series]:
        items = []
        for _ in range(count):
            frequency, phase = rng.uniform(*self.frequencies), rng.uniform(0, 2 * math.pi)
            clean = np.sin(2 * math.pi * frequency * self.times + phase)
            values = (clean + self.noise * rng.standard_normal(self.num_times))[:, None]
            items.append(self._split(rng, self.times, values))
        return items


@register_datamodule
class SpiralsDataModule(SeriesDataModule):
    """Chen et al.'s spirals: windows of noisy 2-D spirals, half clockwise; extrapolate 100 points."""

    input_dim = 2
    total, stop, window = 1000, 6 * math.pi, 100
    time_scale = window * 6 * math.pi / 999

    def __init__(
        self,
        num_train: int = 800,
        num_val: int = 100,
        num_test: int = 100,
        task: str = "extrapolation",
        observed: float = 1.0,
        noise: float = 0.1,
        batch_size: int = 50,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        """Configure the data; nothing is generated here.

        Args:
            num_train: Spirals in the train split (Chen et al.: 1,000 in all).
            num_val: Spirals in the validation split.
            num_test: Spirals in the test split.
            task: ``extrapolation`` (the next 100 points) or ``interpolation`` (the window itself).
            observed: Fraction of the window's 100 points that the model sees (0.3, 0.5, 1.0).
            noise: Standard deviation of the Gaussian noise on every point.
            batch_size: Spirals per batch.
            seed: Seed of every split and of the training order.
            num_workers: Loader worker processes.
        """
        self.noise = noise
        super().__init__(num_train, num_val, num_test, task, observed, batch_size, seed, num_workers)
        self.save_hyperparameters()
        self.display_name = f"Spirals ({task}, {observed:.0%} of 100 points observed)"

    def _series(self, rng: np.random.Generator, count: int) -> list[Series]:
        grid = np.linspace(0, self.stop, self.total)
        counter, clockwise = spiral(grid, clockwise=False), spiral(grid, clockwise=True)
        items = []
        for k in range(count):
            path = clockwise if k % 2 else counter
            start = rng.integers(0, self.total - 2 * self.window)
            span = slice(start, start + 2 * self.window)
            times = grid[span] - grid[start]
            values = path[span] + self.noise * rng.standard_normal((2 * self.window, 2))
            w = self.window
            if self.task == "extrapolation":
                items.append(self._split(rng, times[:w], values[:w], times[w:], values[w:]))
            else:
                items.append(self._split(rng, times[:w], values[:w], times[:w], values[:w]))
        return items


def spiral(t: np.ndarray, clockwise: bool, a: float = 0.0, b: float = 0.3) -> np.ndarray:
    """Chen et al.'s 2-D spirals at angles ``t``: (len(t), 2)."""
    if clockwise:
        z = t[-1] + 1.0 - t
        r = a + b * 50.0 / z
        return np.stack([r * np.cos(z) + 5.0, r * np.sin(z)], axis=1)
    r = a + b * t
    return np.stack([r * np.cos(t) - 5.0, r * np.sin(t)], axis=1)

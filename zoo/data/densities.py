"""The 2-D density-estimation toys of the FFJORD paper, generated from a seed, with fixed test sets.

Grathwohl et al. 2019 (FFJORD), Figure 2 and Appendix: eight 2-D distributions that a flow must
learn from samples: ``8gaussians``, ``checkerboard``, ``pinwheel``, ``2spirals``, ``moons``,
``circles``, ``rings`` and ``swissroll``. Each is written here from its geometric description
(no sklearn); two have a density in closed form, so a model's test NLL has a floor:

* ``8gaussians``: 8 equal components of standard deviation ``0.5 / sqrt(2)`` centred on a circle
  of radius ``4 / sqrt(2)``; :func:`eight_gaussians_log_prob` is exact, its entropy about 2.84 nats;
* ``checkerboard``: uniform on 8 of the 16 unit-2 squares of [-4, 4]^2, entropy log 32 = 3.47 nats.

Batches are ``(x,)`` float32 tensors of shape (B, 2). Train, validation and test sets are
independent draws from three streams of ``numpy.random.SeedSequence(seed)``.

:class:`DigitsDataModule` is the density-estimation set of integer pixels: scikit-learn's 1,797
8x8 handwritten digits (values 0-16), read from the file scikit-learn ships.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from zoo.data.images import DataNotFoundError
from zoo.data.splits import SplitDataModule
from zoo.errors import SettingError
from zoo.families import register_datamodule

Sampler = Callable[[np.random.Generator, int], np.ndarray]
_EIGHT_RADIUS, _EIGHT_STD = 4 / math.sqrt(2), 0.5 / math.sqrt(2)


def _eight_centres() -> np.ndarray:
    angles = np.arange(8) * np.pi / 4
    return _EIGHT_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def eight_gaussians(rng: np.random.Generator, n: int) -> np.ndarray:
    """8 Gaussians on a circle, equal weights."""
    return _eight_centres()[rng.integers(0, 8, n)] + _EIGHT_STD * rng.standard_normal((n, 2))


def eight_gaussians_log_prob(x: torch.Tensor) -> torch.Tensor:
    """The exact log-density of ``8gaussians`` at (B, 2) points."""
    centres = torch.as_tensor(_eight_centres(), dtype=x.dtype, device=x.device)
    squared = (x[:, None, :] - centres).pow(2).sum(-1) / _EIGHT_STD**2
    log_normal = -0.5 * squared - math.log(2 * math.pi * _EIGHT_STD**2)
    return torch.logsumexp(log_normal, dim=1) - math.log(8)


def checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniform on 8 alternating 2x2 squares of [-4, 4]^2."""
    x1 = rng.uniform(-4, 4, n)
    row = np.floor(x1 / 2)  # which column of squares; the kept squares alternate
    x2 = rng.uniform(0, 2, n) + 2 * (2 * rng.integers(0, 2, n) - 2 + (row % 2 == 0))
    return np.stack([x1, x2], axis=1)


def pinwheel(rng: np.random.Generator, n: int, arms: int = 5) -> np.ndarray:
    """``arms`` curved arms of radial noise 0.3 and tangential noise 0.05."""
    radial = rng.standard_normal(n) * 0.3 + 1.0
    tangential = rng.standard_normal(n) * 0.05
    arm = rng.integers(0, arms, n)
    angle = arm * 2 * np.pi / arms + 0.25 * np.exp(radial)
    points = np.stack([radial, tangential], axis=1)
    cos, sin = np.cos(angle), np.sin(angle)
    rotated = np.stack([cos * points[:, 0] - sin * points[:, 1], sin * points[:, 0] + cos * points[:, 1]], 1)
    return 2 * rotated


def two_spirals(rng: np.random.Generator, n: int) -> np.ndarray:
    """Two interleaved noisy spirals."""
    turn = np.sqrt(rng.uniform(0, 1, n)) * 3 * np.pi
    sign = np.where(rng.integers(0, 2, n) == 0, 1.0, -1.0)
    points = sign[:, None] * np.stack([-np.cos(turn) * turn, np.sin(turn) * turn], axis=1)
    return points / 3 + 0.1 * rng.standard_normal((n, 2))


def moons(rng: np.random.Generator, n: int) -> np.ndarray:
    """Two interleaved half circles, noise 0.1."""
    angle = rng.uniform(0, np.pi, n)
    upper = rng.integers(0, 2, n) == 0
    x = np.where(upper, np.cos(angle), 1 - np.cos(angle))
    y = np.where(upper, np.sin(angle), 0.5 - np.sin(angle))
    points = np.stack([x, y], axis=1) + 0.1 * rng.standard_normal((n, 2))
    return 2 * (points - [0.5, 0.25])


def circles(rng: np.random.Generator, n: int) -> np.ndarray:
    """Two concentric noisy circles, radii 3 and 1.5."""
    radius = np.where(rng.integers(0, 2, n) == 0, 1.0, 0.5)
    return 3 * _on_circles(rng, radius, 0.08)


def rings(rng: np.random.Generator, n: int) -> np.ndarray:
    """Four thin concentric rings, radii 0.75 to 3."""
    radius = rng.integers(1, 5, n) / 4
    return 3 * _on_circles(rng, radius, 0.02)


def _on_circles(rng: np.random.Generator, radius: np.ndarray, noise: float) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi, len(radius))
    points = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return points + noise * rng.standard_normal(points.shape)


def swissroll(rng: np.random.Generator, n: int) -> np.ndarray:
    """A noisy 2-D swiss roll."""
    turn = 1.5 * np.pi * (1 + 2 * rng.uniform(0, 1, n))
    points = np.stack([turn * np.cos(turn), turn * np.sin(turn)], axis=1) + rng.standard_normal((n, 2))
    return points / 5


DENSITIES: dict[str, Sampler] = {
    "8gaussians": eight_gaussians,
    "checkerboard": checkerboard,
    "pinwheel": pinwheel,
    "2spirals": two_spirals,
    "moons": moons,
    "circles": circles,
    "rings": rings,
    "swissroll": swissroll,
}


@register_datamodule
class Density2dDataModule(SplitDataModule):
    """Samples of one of FFJORD's 2-D toy densities; the test set is large and fixed by ``seed``.

    Args:
        name: One of :data:`DENSITIES`.
        num_train: Training points (an epoch is one pass over them).
        num_val: Validation points.
        num_test: Test points; the default 100,000 makes the test NLL's standard error ~0.005 nats.
        batch_size: Points per batch (FFJORD's toys: 100).
        seed: Seed of the three splits.
        num_workers: Loader worker processes.
    """

    input_shape = (2,)
    num_classes = 0

    def __init__(self, name: str = "8gaussians", num_train: int = 100_000, num_val: int = 10_000,
                 num_test: int = 100_000, batch_size: int = 100, seed: int = 0, num_workers: int = 0) -> None:
        super().__init__()
        if name not in DENSITIES:
            raise SettingError(f"unknown density {name!r}; valid: {', '.join(DENSITIES)}")
        for label, value in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test),
                             ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SettingError(f"{label} must be a positive integer, got {value!r}")
        self.name, self.batch_size, self.seed, self.num_workers = name, batch_size, seed, num_workers
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.train_set = self.val_set = self.test_set = None
        self.save_hyperparameters()
        self.display_name = f"{name} (2-D toy density of FFJORD)"
        self.preprocessing = {"inputs": "raw coordinates, no normalization", "normalize": None}

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        streams = np.random.SeedSequence(self.seed).spawn(3)
        for (split, size), stream in zip(self.sizes.items(), streams, strict=True):
            points = DENSITIES[self.name](np.random.default_rng(stream), size)
            setattr(self, f"{split}_set", TensorDataset(torch.as_tensor(points, dtype=torch.float32)))


def digits_file() -> Path:
    """``digits.csv.gz`` of the installed scikit-learn (found without importing it)."""
    spec = importlib.util.find_spec("sklearn")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    raise DataNotFoundError(
        "the 8x8 digits ship with scikit-learn, which is not installed here: "
        "pip install scikit-learn (or neural-ode-zoo[flows])"
    )


def read_digits(path: Path) -> np.ndarray:
    """(1797, 64) pixel values 0-16 (the label column is dropped)."""
    with gzip.open(path, "rt") as file:
        table = np.loadtxt(file, delimiter=",", dtype=np.float32)
    return table[:, :64]


@register_datamodule
class DigitsDataModule(SplitDataModule):
    """scikit-learn's 8x8 digits as 64 integer pixels of 17 levels, for density estimation.

    Args:
        num_val: Images held out for validation (seeded).
        num_test: Images held out for test (seeded); the rest train.
        batch_size: Images per batch.
        seed: Seed of the split.
        num_workers: Loader worker processes.
    """

    input_shape = (64,)
    num_classes = 0
    levels = 17

    def __init__(self, num_val: int = 180, num_test: int = 360, batch_size: int = 100, seed: int = 0,
                 num_workers: int = 0) -> None:
        super().__init__()
        self.num_val, self.num_test = num_val, num_test
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.train_set = self.val_set = self.test_set = None
        self.save_hyperparameters()
        self.display_name = "8x8 digits (scikit-learn)"
        self.preprocessing = {"inputs": "integer pixels 0-16, flattened to 64", "normalize": None}

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        pixels = torch.as_tensor(read_digits(digits_file()))
        order = torch.as_tensor(np.random.default_rng(self.seed).permutation(len(pixels)))
        test, val = order[: self.num_test], order[self.num_test : self.num_test + self.num_val]
        train = order[self.num_test + self.num_val :]
        self.train_set, self.val_set, self.test_set = (TensorDataset(pixels[i]) for i in (train, val, test))

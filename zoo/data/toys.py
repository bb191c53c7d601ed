"""LightningDataModules of generated toy classification data sets.

Four low-dimensional data sets from the seed papers, all generated from a seed in ``setup()``
(nothing is downloaded or written to disk):

* :class:`SpheresDataModule`: the concentric spheres g(x) of Dupont, Doucet & Teh, "Augmented
  Neural ODEs" (NeurIPS 2019): a ball inside a shell, in any dimension; features that a neural
  ODE cannot separate without augmenting the state.
* :class:`SwissRollDataModule`, :class:`PeaksDataModule` and :class:`EllipsesDataModule`: the
  2-D examples of Haber & Ruthotto, "Stable architectures for deep neural networks" (Inverse
  Problems 34, 2017): two interleaved spirals, the level sets of MATLAB's ``peaks`` function,
  and concentric elliptic rings. Their geometry follows the authors' Meganet code
  (``setupSwissRoll``, ``setupPeaks``, ``setupEllipses``; the last as in the NumDL-MATLAB
  course material); the sampling is random here, as documented on each class.

Batches are ``(x, label)`` with ``x`` float32 of shape ``(B, d)`` and ``label`` int64.

Splits: the train, validation and test sets are independent draws from the same distribution,
made with three independent random streams: ``numpy.random.SeedSequence(seed).spawn(3)``
(children 0, 1 and 2 for train, val and test). So no split is a re-draw of another, and a
different ``seed`` gives different data in every split.
"""

import functools
import math
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from zoo.data.splits import SplitDataModule
from zoo.errors import SettingError
from zoo.families import register_datamodule

#: Names of the splits, in the order of their random streams.
SPLITS = ("train", "val", "test")

_RAW_INPUTS = {"inputs": "raw coordinates, no normalization", "normalize": None}


# ---------------------------------------------------------------- argument checks


def _check_int(name: str, value: Any, minimum: int) -> None:
    """Raise ValueError unless ``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise SettingError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise SettingError(f"{name} must be >= {minimum}, got {value}")


def _check_positive(name: str, value: float) -> None:
    """Raise ValueError unless ``value`` is a finite number > 0."""
    if not math.isfinite(value) or value <= 0:
        raise SettingError(f"{name} must be a finite number > 0, got {value!r}")


# ---------------------------------------------------------------- sampling helpers


def split_rng(seed: int, split: str) -> np.random.Generator:
    """Return the random generator of one split.

    Args:
        seed: The data module's seed.
        split: One of ``"train"``, ``"val"``, ``"test"``.

    Returns:
        A generator on child ``SPLITS.index(split)`` of ``SeedSequence(seed)``: the same stream
        as ``SeedSequence(seed).spawn(3)[SPLITS.index(split)]``.
    """
    if split not in SPLITS:
        raise SettingError(f"split must be one of {SPLITS}, got {split!r}")
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SPLITS.index(split),)))


def balanced_counts(n: int, k: int) -> list[int]:
    """Split ``n`` points into ``k`` classes as evenly as possible (the first ones get the rest)."""
    return [n // k + (i < n % k) for i in range(k)]


def unit_directions(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Return ``n`` directions uniform on the unit sphere of R^dim (signs ±1 when dim is 1)."""
    x = rng.standard_normal((n, dim))
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    while np.any(norms == 0):  # probability zero, but a zero vector has no direction
        zero = norms[:, 0] == 0
        x[zero] = rng.standard_normal((int(zero.sum()), dim))
        norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / norms


def shell_radii(n: int, dim: int, low: float, high: float, rng: np.random.Generator) -> np.ndarray:
    """Return ``n`` radii of points uniform in volume in the shell ``low <= |x| < high`` of R^dim.

    The volume inside radius r grows like r^dim, so r = (low^d + U (high^d - low^d))^(1/d) with
    U uniform in [0, 1); ``low = 0`` gives a ball. Computed relative to ``high`` so that large
    ``dim`` neither overflows nor underflows.
    """
    inner = (low / high) ** dim
    return high * (inner + rng.random(n) * (1.0 - inner)) ** (1.0 / dim)


def peaks(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """MATLAB's ``peaks`` function, elementwise.

    3 (1-x)^2 e^{-x^2-(y+1)^2} - 10 (x/5 - x^3 - y^5) e^{-x^2-y^2} - 1/3 e^{-(x+1)^2-y^2}.
    """
    return (
        3 * (1 - x) ** 2 * np.exp(-(x**2) - (y + 1) ** 2)
        - 10 * (x / 5 - x**3 - y**5) * np.exp(-(x**2) - y**2)
        - np.exp(-((x + 1) ** 2) - y**2) / 3
    )


@functools.lru_cache(maxsize=8)
def peaks_thresholds(num_classes: int, half_width: float = 3.0, resolution: int = 601) -> tuple[float, ...]:
    """Return the ``num_classes - 1`` levels cutting ``peaks`` into equally likely classes.

    The levels are the quantiles k/num_classes (k = 1 .. num_classes-1) of ``peaks`` over a
    ``resolution`` x ``resolution`` grid of the square [-half_width, half_width]^2, so points
    uniform in that square fall in each class with probability close to 1/num_classes.
    """
    axis = np.linspace(-half_width, half_width, resolution)
    xx, yy = np.meshgrid(axis, axis)
    levels = np.arange(1, num_classes) / num_classes
    return tuple(float(q) for q in np.quantile(peaks(xx, yy), levels))


# ---------------------------------------------------------------- base class


class ToyDataModule(SplitDataModule):
    """Shared base of the generated toy classification data modules.

    Subclasses set, in ``__init__``, the attributes below and implement :meth:`_train_size`,
    :attr:`bounds` and :meth:`_sample`. The attributes are readable right after construction,
    before ``setup()`` (LightningCLI links ``input_shape`` and ``num_classes`` into the model).
    """

    #: Shape ``(d,)`` of one input point.
    input_shape: tuple[int]
    #: Number of classes; labels are 0 .. num_classes-1.
    num_classes: int
    #: Human-readable name of the data set, recorded in model cards.
    display_name: str
    #: Names of the classes, by label.
    class_names: tuple[str, ...]

    def __init__(
        self,
        num_val: int | None = None,
        num_test: int | None = None,
        batch_size: int = 64,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        """Configure the splits and loaders; nothing is generated here.

        Args:
            num_val: Number of validation points (all classes together); ``None`` means as many
                as in the train set, 0 means no validation set.
            num_test: Number of test points (all classes together); ``None`` means as many as
                in the train set.
            batch_size: Number of points per batch, for all splits.
            seed: Seed of the data (every split) and of the training shuffle order.
            num_workers: Number of data loading worker processes (0 loads in the main process).

        Raises:
            ValueError: An argument is out of its range.
        """
        super().__init__()
        if num_val is not None:
            _check_int("num_val", num_val, 0)
        if num_test is not None:
            _check_int("num_test", num_test, 1)
        _check_int("batch_size", batch_size, 1)
        _check_int("seed", seed, 0)
        _check_int("num_workers", num_workers, 0)
        self.save_hyperparameters()
        self.num_val = num_val
        self.num_test = num_test
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.train_set: TensorDataset | None = None
        self.val_set: TensorDataset | None = None
        self.test_set: TensorDataset | None = None

    # ---------------------------------------------------------------- description

    def _train_size(self) -> int:
        """Number of points of the train set."""
        raise NotImplementedError

    @property
    def bounds(self) -> tuple[tuple[float, float], ...]:
        """``(low, high)`` per input coordinate of the region the noise-free data lie in."""
        raise NotImplementedError

    @property
    def split_sizes(self) -> dict[str, int]:
        """Number of points of each split."""
        n = self._train_size()
        return {
            "train": n,
            "val": n if self.num_val is None else self.num_val,
            "test": n if self.num_test is None else self.num_test,
        }

    @property
    def preprocessing(self) -> dict[str, Any]:
        """Input preprocessing, as a plain dict (for model cards): none, raw coordinates."""
        return dict(_RAW_INPUTS)

    # ---------------------------------------------------------------- data

    def _sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` points: an (n, d) float array and an (n,) integer label array."""
        raise NotImplementedError

    def make_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate one split, the same for the same ``seed``, in a random order.

        Args:
            split: ``"train"``, ``"val"`` or ``"test"``.

        Returns:
            Points, float32 of shape (n, d), and their labels, int64 of shape (n,).
        """
        rng = split_rng(self.seed, split)
        x, y = self._sample(self.split_sizes[split], rng)
        order = rng.permutation(len(y))
        return (
            torch.as_tensor(x[order], dtype=torch.float32),
            torch.as_tensor(y[order], dtype=torch.int64),
        )

    def _dataset(self, split: str) -> TensorDataset:
        return TensorDataset(*self.make_split(split))

    def setup(self, stage: str | None = None) -> None:
        """Generate the splits needed for ``stage``; those already generated are kept.

        Args:
            stage: ``"fit"``, ``"validate"``, ``"test"``, ``"predict"``, or ``None`` for all.
        """
        if stage in (None, "fit", "validate") and self.train_set is None:
            self.train_set = self._dataset("train")
            self.val_set = self._dataset("val")
        if stage in (None, "test", "predict") and self.test_set is None:
            self.test_set = self._dataset("test")

    def grid(self, resolution: int = 200, margin: float = 0.1) -> tuple[torch.Tensor, ...]:
        """Return a dense grid over the data's bounding box, for plotting decision regions.

        Only for 2-D data.

        Args:
            resolution: Number of grid points along each axis.
            margin: Padding added on each side, as a fraction of the box's size on that axis.

        Returns:
            ``(xx, yy, points)``: the coordinates, each (resolution, resolution) with x varying
            along the columns, and the same points as a float32 (resolution**2, 2) batch.

        Raises:
            ValueError: The data are not 2-D, or an argument is out of range.
        """
        if self.input_shape != (2,):
            raise SettingError(f"grid() needs 2-D data; "
                               f"{self.display_name} has input_shape {self.input_shape}")
        _check_int("resolution", resolution, 2)
        if not math.isfinite(margin) or margin < 0:
            raise SettingError(f"margin must be a finite number >= 0, got {margin!r}")
        axes = [
            torch.linspace(low - margin * (high - low), high + margin * (high - low), resolution)
            for low, high in self.bounds
        ]
        xx, yy = torch.meshgrid(*axes, indexing="xy")
        return xx, yy, torch.stack([xx.flatten(), yy.flatten()], dim=1)

    # ---------------------------------------------------------------- loaders

    @property
    def has_validation(self) -> bool:
        """Whether the validation split is non-empty."""
        return self.split_sizes["val"] > 0


# ---------------------------------------------------------------- data sets


@register_datamodule
class SpheresDataModule(ToyDataModule):
    """Dupont et al.'s concentric spheres g(x) in R^dim.

    Class 0 (the paper's -1): points uniform in volume in the ball ``|x| <= inner_radius``.
    Class 1 (the paper's +1): points uniform in volume in the shell
    ``gap_radius <= |x| <= outer_radius``. Directions are uniform on the sphere; ``dim=1`` gives
    the paper's 1-D case (an interval inside two intervals). The paper uses radii 0.5, 1.0,
    1.5, 500 inner and 1500 outer points, d = 1 and 2, and batches of 64.
    """

    def __init__(
        self,
        dim: int = 2,
        inner_radius: float = 0.5,
        gap_radius: float = 1.0,
        outer_radius: float = 1.5,
        num_inner: int = 500,
        num_outer: int = 1500,
        num_val: int | None = None,
        num_test: int | None = None,
        batch_size: int = 64,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        """Configure the data set; nothing is generated here.

        Args:
            dim: Dimension d of the points, >= 1.
            inner_radius: Radius r1 of the class-0 ball.
            gap_radius: Inner radius r2 of the class-1 shell; 0 < r1 < r2 < r3.
            outer_radius: Outer radius r3 of the class-1 shell.
            num_inner: Number of class-0 points of the train set.
            num_outer: Number of class-1 points of the train set.
            num_val: Number of validation points; ``None``: num_inner + num_outer. Split between
                the classes in the train set's proportions (rounded).
            num_test: Number of test points, like ``num_val``.
            batch_size: Number of points per batch.
            seed: Seed of the data and of the training shuffle order.
            num_workers: Number of data loading worker processes.

        Raises:
            ValueError: An argument is out of its range, or the radii are not increasing.
        """
        super().__init__(num_val, num_test, batch_size, seed, num_workers)
        _check_int("dim", dim, 1)
        for name, radius in (
            ("inner_radius", inner_radius),
            ("gap_radius", gap_radius),
            ("outer_radius", outer_radius),
        ):
            _check_positive(name, radius)
        if not inner_radius < gap_radius < outer_radius:
            raise SettingError(
                "radii must satisfy 0 < inner_radius < gap_radius < outer_radius, got "
                f"inner_radius={inner_radius}, gap_radius={gap_radius}, outer_radius={outer_radius}"
            )
        _check_int("num_inner", num_inner, 1)
        _check_int("num_outer", num_outer, 1)
        self.dim = dim
        self.radii = (float(inner_radius), float(gap_radius), float(outer_radius))
        self.num_inner = num_inner
        self.num_outer = num_outer
        self.input_shape = (dim,)
        self.num_classes = 2
        self.display_name = f"Concentric spheres (d={dim})"
        self.class_names = ("inner ball", "outer shell")

    def _train_size(self) -> int:
        return self.num_inner + self.num_outer

    @property
    def bounds(self) -> tuple[tuple[float, float], ...]:
        r3 = self.radii[2]
        return ((-r3, r3),) * self.dim

    def class_counts(self, n: int) -> tuple[int, int]:
        """Numbers of class-0 and class-1 points among ``n``, in the train set's proportions."""
        total = self._train_size()
        inner = (2 * n * self.num_inner + total) // (2 * total)
        return inner, n - inner

    def _sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        r1, r2, r3 = self.radii
        n_in, n_out = self.class_counts(n)
        radii = np.concatenate(
            [shell_radii(n_in, self.dim, 0.0, r1, rng), shell_radii(n_out, self.dim, r2, r3, rng)]
        )
        x = radii[:, None] * unit_directions(n, self.dim, rng)
        return x, np.repeat([0, 1], [n_in, n_out])


@register_datamodule
class SwissRollDataModule(ToyDataModule):
    """Haber & Ruthotto's swiss roll: two interleaved spirals in the plane, one per class.

    A point at spiral parameter s in [0, 1) has angle 4 pi s (two turns) and radius s (class 0)
    or 0.2 + s (class 1), as in Meganet's ``setupSwissRoll``, which takes 513 points a class at
    evenly spaced s and deals them alternately to training and validation. Here s is drawn
    uniformly, independently for every point, and Gaussian noise of standard deviation ``noise``
    is added to both coordinates.
    """

    #: Radial offset of spiral 1 from spiral 0.
    offset = 0.2

    def __init__(
        self,
        num_per_class: int = 513,
        noise: float = 0.0,
        num_val: int | None = None,
        num_test: int | None = None,
        batch_size: int = 64,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        """Configure the data set; nothing is generated here.

        Args:
            num_per_class: Number of points of each spiral in the train set.
            noise: Standard deviation of the Gaussian noise added to the coordinates, >= 0.
            num_val: Number of validation points (both classes, split evenly); ``None``:
                2 * num_per_class.
            num_test: Number of test points, like ``num_val``.
            batch_size: Number of points per batch.
            seed: Seed of the data and of the training shuffle order.
            num_workers: Number of data loading worker processes.

        Raises:
            ValueError: An argument is out of its range.
        """
        super().__init__(num_val, num_test, batch_size, seed, num_workers)
        _check_int("num_per_class", num_per_class, 1)
        if not math.isfinite(noise) or noise < 0:
            raise SettingError(f"noise must be a finite number >= 0, got {noise!r}")
        self.num_per_class = num_per_class
        self.noise = float(noise)
        self.input_shape = (2,)
        self.num_classes = 2
        self.display_name = "Swiss roll (2 spirals" + (f", noise {noise:g})" if noise else ")")
        self.class_names = ("spiral 0", "spiral 1")

    def _train_size(self) -> int:
        return 2 * self.num_per_class

    @property
    def bounds(self) -> tuple[tuple[float, float], ...]:
        r = 1.0 + self.offset
        return ((-r, r), (-r, r))

    def _sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        labels = np.repeat(np.arange(2), balanced_counts(n, 2))
        s = rng.random(n)
        radius = s + self.offset * labels
        angle = 4 * np.pi * s
        x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
        if self.noise:
            x += self.noise * rng.standard_normal(x.shape)
        return x, labels


@register_datamodule
class PeaksDataModule(ToyDataModule):
    """Haber & Ruthotto's peaks: points in [-3, 3]^2 labelled by level classes of ``peaks(x, y)``.

    Points are uniform in the square. Class k holds the points whose ``peaks`` value lies between
    the k-th and (k+1)-th of the levels :attr:`thresholds` (class 0: the lowest values). The
    levels are the quantiles of ``peaks`` over a fine grid of the square (see
    :func:`peaks_thresholds`), so each class covers about 1/num_classes of the square's area and
    gets about as many points. (Meganet's ``setupPeaks`` instead cuts the value range into equal
    widths and draws as many grid points from each class.)
    """

    #: The square is [-half_width, half_width]^2.
    half_width = 3.0

    def __init__(
        self,
        num_train: int = 1000,
        num_classes: int = 5,
        num_val: int | None = None,
        num_test: int | None = None,
        batch_size: int = 64,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        """Configure the data set; nothing is generated here.

        Args:
            num_train: Number of points of the train set (1000 in Meganet's peaks example).
            num_classes: Number of level classes, >= 2.
            num_val: Number of validation points; ``None``: num_train.
            num_test: Number of test points; ``None``: num_train.
            batch_size: Number of points per batch.
            seed: Seed of the data and of the training shuffle order.
            num_workers: Number of data loading worker processes.

        Raises:
            ValueError: An argument is out of its range.
        """
        super().__init__(num_val, num_test, batch_size, seed, num_workers)
        _check_int("num_train", num_train, 1)
        _check_int("num_classes", num_classes, 2)
        self.num_train = num_train
        self.input_shape = (2,)
        self.num_classes = num_classes
        self.display_name = f"Peaks ({num_classes} level classes)"
        self.class_names = tuple(f"level {k}" for k in range(num_classes))
        #: Levels of ``peaks`` between consecutive classes, increasing.
        self.thresholds = peaks_thresholds(num_classes, self.half_width)

    def _train_size(self) -> int:
        return self.num_train

    @property
    def bounds(self) -> tuple[tuple[float, float], ...]:
        return ((-self.half_width, self.half_width),) * 2

    def label(self, x: np.ndarray) -> np.ndarray:
        """Return the class of each point of ``x`` (shape (n, 2))."""
        return np.digitize(peaks(x[:, 0], x[:, 1]), self.thresholds)

    def _sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        x = rng.uniform(-self.half_width, self.half_width, size=(n, 2))
        return x, self.label(x)


@register_datamodule
class EllipsesDataModule(ToyDataModule):
    """Concentric ellipses: points labelled by the elliptic ring they lie in.

    With the elliptic radius rho(x, y) = sqrt(x^2 + (y / axis_ratio)^2), class 0 is the inner
    ellipse rho < 1 and class k the ring k <= rho < k + 1. Every class gets the same number of
    points, uniform in area within its ring. ``setupEllipses`` (NumDL-MATLAB) is the 2-class
    case with axis ratio 0.4 and 1000 points a class, there uniform in rho rather than in area.
    """

    def __init__(
        self,
        num_per_class: int = 500,
        num_classes: int = 3,
        axis_ratio: float = 0.4,
        num_val: int | None = None,
        num_test: int | None = None,
        batch_size: int = 64,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        """Configure the data set; nothing is generated here.

        Args:
            num_per_class: Number of points of each class in the train set.
            num_classes: Number of classes (inner ellipse and rings), >= 2.
            axis_ratio: Ratio of the ellipses' y semi-axis to their x semi-axis, > 0.
            num_val: Number of validation points (classes split evenly); ``None``:
                num_classes * num_per_class.
            num_test: Number of test points, like ``num_val``.
            batch_size: Number of points per batch.
            seed: Seed of the data and of the training shuffle order.
            num_workers: Number of data loading worker processes.

        Raises:
            ValueError: An argument is out of its range.
        """
        super().__init__(num_val, num_test, batch_size, seed, num_workers)
        _check_int("num_per_class", num_per_class, 1)
        _check_int("num_classes", num_classes, 2)
        _check_positive("axis_ratio", axis_ratio)
        self.num_per_class = num_per_class
        self.axis_ratio = float(axis_ratio)
        self.input_shape = (2,)
        self.num_classes = num_classes
        self.display_name = f"Concentric ellipses ({num_classes} classes, axis ratio {axis_ratio:g})"
        self.class_names = ("inner ellipse", *(f"ring {k}" for k in range(1, num_classes)))

    def _train_size(self) -> int:
        return self.num_classes * self.num_per_class

    @property
    def bounds(self) -> tuple[tuple[float, float], ...]:
        a = float(self.num_classes)
        return ((-a, a), (-a * self.axis_ratio, a * self.axis_ratio))

    def elliptic_radius(self, x: np.ndarray) -> np.ndarray:
        """Return rho of each point of ``x`` (shape (n, 2)); class k is k <= rho < k + 1."""
        return np.hypot(x[:, 0], x[:, 1] / self.axis_ratio)

    def _sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        counts = balanced_counts(n, self.num_classes)
        labels = np.repeat(np.arange(self.num_classes), counts)
        rho = np.concatenate([shell_radii(c, 2, k, k + 1.0, rng) for k, c in enumerate(counts)])
        angle = rng.uniform(0.0, 2 * np.pi, size=n)
        x = np.stack([rho * np.cos(angle), self.axis_ratio * rho * np.sin(angle)], axis=1)
        return x, labels

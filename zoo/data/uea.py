"""Real multivariate time series from the UEA/UCR archive, made irregular by dropping values.

The files are in the archive's ``.ts`` format (Löning et al., sktime): a header of ``@key
value`` lines, then one series per line, its channels separated by ``:`` and the class label
last. sktime's wheel bundles a few of them (``JapaneseVowels``: 12 channels, 9 speakers, 7 to
29 points; ``BasicMotions``: 6 channels, 4 activities, 100 points); they are read from the
installed package's folder without importing sktime (``pip install neural-ode-zoo[series]``
installs it), or from ``data_dir/<name>/<name>_{TRAIN,TEST}.ts`` for any other archive set.

Every series keeps its own length; a seeded ``drop`` fraction of the values is removed at
random, channel by channel, so the model sees irregular times with missing channels. Values are
standardized per channel with the mean and standard deviation of the archive's train file;
times are the points' indices, divided by the data set's longest length.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import torch

from zoo.data.images import DataNotFoundError, resolve_data_dir
from zoo.data.series import Series
from zoo.data.series_sets import SeriesDataModule
from zoo.data.toys import split_rng
from zoo.errors import SettingError
from zoo.families import register_datamodule

#: The sets sktime's wheel bundles that the zoo's recipes use.
BUNDLED_SETS = ("JapaneseVowels", "BasicMotions")


def read_ts(path: Path) -> tuple[list[np.ndarray], list[str], dict[str, str]]:
    """A ``.ts`` file's series ((length, channels) float arrays, NaN where missing), labels and header."""
    header: dict[str, str] = {}
    series, labels = [], []
    with open(path, encoding="utf-8") as file:
        in_data = False
        for line in file:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                key, _, value = line.partition(" ")
                header[key.lower()] = value.strip()
                in_data = key.lower() == "@data"
                continue
            *channels, label = line.split(":")
            rows = [
                [math.nan if v in ("?", "NaN") else float(v) for v in channel.split(",")]
                for channel in channels
            ]
            length = max(len(row) for row in rows)
            array = np.full((length, len(rows)), np.nan)
            for c, row in enumerate(rows):
                array[: len(row), c] = row
            series.append(array)
            labels.append(label.strip())
    if not series:
        raise DataNotFoundError(f"{path} holds no series (not a .ts file?)")
    return series, labels, header


def find_ts(name: str, split: str, data_dir: str | None) -> Path:
    """``<name>_<split>.ts`` under ``data_dir/<name>/``, else in the installed sktime's bundle."""
    candidates = []
    if data_dir is not None:
        candidates.append(resolve_data_dir(data_dir) / name / f"{name}_{split}.ts")
    spec = importlib.util.find_spec("sktime")
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            candidates.append(Path(root) / "datasets" / "data" / name / f"{name}_{split}.ts")
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(map(str, candidates)) or "nowhere (sktime is not installed and no data_dir was given)"
    raise DataNotFoundError(
        f"the UEA set {name!r} ({split}) was not found; looked in {looked}. Install sktime "
        f"(`pip install neural-ode-zoo[series]`, which bundles {', '.join(BUNDLED_SETS)}), or put "
        f"{name}_{split}.ts in <data_dir>/{name}/ and pass --data.init_args.data_dir"
    )


@register_datamodule
class UEADataModule(SeriesDataModule):
    """A UEA/UCR multivariate classification set as irregular series with missing values."""

    def __init__(
        self,
        name: str = "JapaneseVowels",
        drop: float = 0.5,
        task: str = "interpolation",
        val_size: float = 0.2,
        labels: bool = True,
        data_dir: str | None = None,
        batch_size: int = 50,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        """Reads the set's files (they are small); splits and drops values in ``setup``.

        Args:
            name: The set, e.g. ``JapaneseVowels`` or ``BasicMotions``.
            drop: Fraction of the values removed at random, per channel (0.3, 0.5, 0.7).
            task: ``interpolation`` (see the kept values, predict all of them) or
                ``extrapolation`` (see the kept values of the first half, predict the second).
            val_size: Fraction of the archive's train split held out for validation, seeded.
            labels: Give each series its class (``num_classes`` is linked into the model);
                ``false`` for models that do not classify, such as the forecasters.
            data_dir: A folder with ``<name>/<name>_{TRAIN,TEST}.ts``; default sktime's bundle.
            batch_size: Series per batch.
            seed: Seed of the split, the dropped values and the training order.
            num_workers: Loader worker processes.
        """
        if not 0 <= drop < 1:
            raise SettingError(f"drop must be a fraction in [0, 1), got {drop!r}")
        if not 0 <= val_size < 1:
            raise SettingError(f"val_size must be a fraction in [0, 1), got {val_size!r}")
        self.name, self.drop, self.val_size, self.data_dir = name, drop, val_size, data_dir
        train, train_labels, _ = read_ts(find_ts(name, "TRAIN", data_dir))
        test, test_labels, _ = read_ts(find_ts(name, "TEST", data_dir))
        self.class_names = tuple(sorted(set(train_labels) | set(test_labels), key=_label_order))
        self.num_classes = len(self.class_names) if labels else 0
        self.labels = labels
        self.input_dim = train[0].shape[1]
        self.time_scale = float(max(len(s) for s in train + test))
        stacked = np.concatenate(train)
        self.mean, self.std = np.nanmean(stacked, axis=0), np.nanstd(stacked, axis=0) + 1e-6
        self._raw = {"train": (train, train_labels), "test": (test, test_labels)}
        num_val = round(val_size * len(train))
        super().__init__(
            len(train) - num_val, num_val, len(test), task, 1 - drop, batch_size, seed, num_workers
        )
        self.save_hyperparameters()
        self.display_name = f"{name} (UEA), {drop:.0%} of values dropped, {task}"

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train, _ = self._raw["train"]
        order = split_rng(self.seed, "val").permutation(len(train))
        val_index, train_index = order[: self.counts["val"]], order[self.counts["val"] :]
        for split, (arrays, labels), index in (
            ("train", self._raw["train"], train_index),
            ("val", self._raw["train"], val_index),
            ("test", self._raw["test"], np.arange(len(self._raw["test"][0]))),
        ):
            rng = split_rng(self.seed, split)
            items = [self._series(rng, arrays[i], labels[i]) for i in index]
            setattr(self, f"{split}_set", items)

    def _series(self, rng: np.random.Generator, array: np.ndarray, label: str) -> Series:
        values = (array - self.mean) / self.std
        known = ~np.isnan(values)
        times = np.arange(len(values), dtype=np.float64)
        kept = known & (rng.random(values.shape) >= self.drop)
        if self.task == "extrapolation":
            half = len(values) // 2
            seen, target = slice(0, half), slice(half, None)
        else:
            seen = target = slice(None)
        observed = kept[seen].any(axis=1)
        if not observed.any():  # keep one value, so that every series has an observation
            first = np.argwhere(known[seen])[0]
            kept[seen][tuple(first)] = True
            observed = kept[seen].any(axis=1)
        clean = np.nan_to_num(values)
        tensor = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)  # noqa: E731
        return Series(
            tensor(times[seen][observed]),
            tensor(clean[seen][observed]),
            tensor(kept[seen][observed]),
            tensor(times[target]),
            tensor(clean[target]),
            tensor(known[target]),
            self.class_names.index(label) if self.labels else -1,
            target_heldout=tensor(known[target] if self.task == "extrapolation" else known & ~kept),
        )


def _label_order(label: str) -> tuple[int, float | str]:
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)

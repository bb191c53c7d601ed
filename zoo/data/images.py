"""LightningDataModules for MNIST, Fashion-MNIST and CIFAR-10.

The modules wrap torchvision's datasets and add what the zoo needs on top of them:

* one place to look for data (``data_dir``, else ``$ZOO_DATA``, else ``$ZOO_HOME/data``,
  else ``~/.cache/neural-ode-zoo/data``) and one clear :class:`DataNotFoundError` when the
  files are not there;
* Fashion-MNIST is found without configuration when the Debian package
  ``dataset-fashion-mnist`` is installed (its gzipped files are unpacked into ``data_dir``);
* downloads only when asked to, only when the files are missing, and never leaving a
  half-written file behind;
* a seeded train/validation split of the official train set, where the validation part
  uses the evaluation transform (no augmentation);
* optionally, only some of the classes (``classes``), relabelled 0..k-1 in the order given,
  in every split (for instance to fine-tune a 10-class model on a few classes).
"""

import copy
import gzip
import numbers
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset, Subset
from torchvision import datasets, transforms
from torchvision.datasets.utils import check_integrity

from zoo.data.splits import SplitDataModule
from zoo.errors import SettingError
from zoo.families import register_datamodule
from zoo.hub.files import atomic_path, commit

#: Environment variable naming the data folder when ``data_dir`` is not given.
DATA_DIR_ENV = "ZOO_DATA"
#: Environment variable naming the zoo's home folder; its ``data/`` subfolder is the data
#: folder when neither ``data_dir`` nor ``$ZOO_DATA`` is set.
HOME_ENV = "ZOO_HOME"
#: Data folder used when none of ``data_dir``, ``$ZOO_DATA`` and ``$ZOO_HOME`` is set.
DEFAULT_DATA_DIR = "~/.cache/neural-ode-zoo/data"
#: Where the Debian package ``dataset-fashion-mnist`` installs the gzipped idx files.
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class DataNotFoundError(FileNotFoundError):
    """The dataset files are not where they are expected and could not be obtained."""


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """Return the data folder to use.

    Args:
        data_dir: Folder given by the user; ``None`` means ``$ZOO_DATA`` if set, else
            ``$ZOO_HOME/data`` if ``$ZOO_HOME`` is set, else ``~/.cache/neural-ode-zoo/data``
            (an empty variable counts as not set).

    Returns:
        The folder, with ``~`` expanded.
    """
    if data_dir is None:
        if os.environ.get(DATA_DIR_ENV):
            data_dir = os.environ[DATA_DIR_ENV]
        elif os.environ.get(HOME_ENV):
            data_dir = Path(os.environ[HOME_ENV]) / "data"
        else:
            data_dir = DEFAULT_DATA_DIR
    return Path(data_dir).expanduser()


#: The md5 of each CIFAR-10 file, as torchvision publishes them (``datasets.CIFAR10``).
CIFAR10_MD5 = {
    name: md5
    for name, md5 in (*datasets.CIFAR10.train_list, *datasets.CIFAR10.test_list,
                      (datasets.CIFAR10.meta["filename"], datasets.CIFAR10.meta["md5"]))
}


class _CIFAR10(datasets.CIFAR10):
    """torchvision's CIFAR10, its md5 checks on, against a given table of checksums.

    torchvision md5-checks every file before unpickling it; the table is torchvision's own
    (:data:`CIFAR10_MD5`) unless the data module names another.
    """

    def __init__(self, root: str, train: bool, checksums: dict[str, str]) -> None:
        self.train_list = [(name, checksums[name]) for name, _ in datasets.CIFAR10.train_list]
        self.test_list = [(name, checksums[name]) for name, _ in datasets.CIFAR10.test_list]
        self.meta = {**datasets.CIFAR10.meta, "md5": checksums[datasets.CIFAR10.meta["filename"]]}
        super().__init__(root, train=train, download=False)


class _LabelMap:
    """Target transform mapping the dataset's labels ``classes[i]`` to ``i``."""

    def __init__(self, classes: Sequence[int]) -> None:
        self.new_label = {label: i for i, label in enumerate(classes)}

    def __call__(self, label: int) -> int:
        return self.new_label[int(label)]


def _with_transform(
    dataset: datasets.VisionDataset,
    transform: Callable,
    target_transform: Callable | None = None,
) -> Dataset:
    """Return a shallow copy of ``dataset`` (sharing its arrays) with other transforms."""
    view = copy.copy(dataset)
    view.transform = transform
    view.target_transform = target_transform
    view.transforms = datasets.vision.StandardTransform(transform, target_transform)
    return view


def _check_classes(classes: Sequence[int], names: Sequence[str]) -> tuple[int, ...]:
    """Return ``classes`` as a tuple of ints, or raise ValueError saying what is wrong."""
    n = len(names)
    valid = f"valid are distinct class indices in [0, {n}): " + ", ".join(
        f"{i}={name!r}" for i, name in enumerate(names)
    )
    if isinstance(classes, str | bytes) or not isinstance(classes, Sequence):
        raise SettingError(f"classes must be a list of class indices or None, got {classes!r}; {valid}")
    if len(classes) == 0:
        raise SettingError(f"classes must not be empty (None means all classes); {valid}")
    bad = [c for c in classes if isinstance(c, bool) or not isinstance(c, numbers.Integral)]
    if bad:
        raise SettingError(f"classes must be integers, got {bad}; {valid}")
    out_of_range = [int(c) for c in classes if not 0 <= c < n]
    if out_of_range:
        raise SettingError(f"classes {out_of_range} are out of range; {valid}")
    repeated = sorted({int(c) for c in classes if classes.count(c) > 1})
    if repeated:
        raise SettingError(f"classes {repeated} are given more than once; {valid}")
    return tuple(int(c) for c in classes)


def _atomic_gunzip(src: Path, dst: Path) -> None:
    """Decompress ``src`` to ``dst`` atomically and durably (see :func:`zoo.hub.files.atomic_path`)."""
    with atomic_path(dst) as tmp, open(tmp, "wb") as out, gzip.open(src, "rb") as inp:
        shutil.copyfileobj(inp, out, length=1 << 20)


class ImageDataModule(SplitDataModule):
    """Shared base of the image classification data modules.

    Subclasses set the class attributes below and say where torchvision expects the files.
    ``input_shape``, ``num_classes``, ``mean`` and ``std`` are readable on an instance right
    after construction (LightningCLI links them into the model).
    """

    #: Shape (C, H, W) of one image as the model sees it.
    input_shape: ClassVar[tuple[int, int, int]]
    #: Number of classes of the dataset (all of them, whatever ``classes`` selects).
    dataset_num_classes: ClassVar[int]
    #: Names of the dataset's classes, by label.
    class_names: ClassVar[tuple[str, ...]]
    #: Number of classes the model sees: ``len(classes)`` if ``classes`` was given, else
    #: ``dataset_num_classes``. Set on the instance by ``__init__``.
    num_classes: int
    #: The kept classes (labels of the dataset) in their new label order, or ``None`` for all.
    classes: tuple[int, ...] | None
    #: Per-channel mean of the train set (after scaling pixels to [0, 1]).
    mean: ClassVar[tuple[float, ...]]
    #: Per-channel standard deviation of the train set (after scaling pixels to [0, 1]).
    std: ClassVar[tuple[float, ...]]
    #: Human-readable name used in messages.
    display_name: ClassVar[str]
    #: torchvision class that loads the files (and downloads them).
    _dataset_cls: ClassVar[type[datasets.VisionDataset]]
    #: torchvision class used for downloading (verifies md5 of what it downloads).
    _download_cls: ClassVar[type[datasets.VisionDataset]]
    #: Folder, relative to ``data_dir``, holding the files.
    _subdir: ClassVar[str]
    #: Names of the files that must exist in that folder.
    _files: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 128,
        val_size: int = 5000,
        seed: int = 0,
        augment: bool = True,
        num_workers: int = 2,
        download: bool = True,
        classes: list[int] | None = None,
    ) -> None:
        """Configure the data module; nothing is read or downloaded here.

        Args:
            data_dir: Folder holding the datasets (torchvision's layout). Default: the
                ZOO_DATA environment variable if set, else $ZOO_HOME/data if the ZOO_HOME
                environment variable is set, else ~/.cache/neural-ode-zoo/data.
            batch_size: Number of images per batch, for all splits.
            val_size: Number of images of the official train set held out for validation
                (chosen at random with ``seed`` among the images of the kept ``classes``);
                0 means no validation set.
            seed: Seed of the train/validation split and of the training shuffle order.
            augment: Whether to augment training images (random crops with padding, and
                horizontal flips for CIFAR-10). Validation and test images never are.
            num_workers: Number of data loading worker processes (0 loads in the main
                process).
            download: Whether to download the dataset when its files are missing.
            classes: Labels of the dataset's classes to keep, in the train, validation and
                test sets; they become labels 0..k-1 in the order given (``[9, 5, 7]``: 9 is
                0, 5 is 1, 7 is 2) and ``num_classes`` is ``k``. ``None`` keeps all classes
                with their own labels.

        Raises:
            ValueError: An argument is out of its range; for ``classes``: empty, repeated
                or out-of-range labels.
        """
        super().__init__()
        if batch_size < 1:
            raise SettingError(f"batch_size must be positive, got {batch_size}")
        if val_size < 0:
            raise SettingError(f"val_size must be >= 0, got {val_size}")
        if num_workers < 0:
            raise SettingError(f"num_workers must be >= 0, got {num_workers}")
        self.classes = None if classes is None else _check_classes(classes, self.class_names)
        self.num_classes = self.dataset_num_classes if self.classes is None else len(self.classes)
        self.save_hyperparameters()
        self.data_dir = resolve_data_dir(data_dir)
        self.batch_size = batch_size
        self.val_size = val_size
        self.seed = seed
        self.augment = augment
        self.num_workers = num_workers
        self.download = download
        self.eval_transform = transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize(self.mean, self.std)]
        )
        self.train_transform = transforms.Compose(
            [*self._augmentations(), *self.eval_transform.transforms]
        )
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    # ---------------------------------------------------------------- description

    @property
    def raw_dir(self) -> Path:
        """Folder where the dataset files are expected."""
        return self.data_dir / self._subdir

    @property
    def selected_class_names(self) -> tuple[str, ...]:
        """Names of the classes the model sees, by their (new) label."""
        if self.classes is None:
            return self.class_names
        return tuple(self.class_names[c] for c in self.classes)

    @property
    def preprocessing(self) -> dict[str, Any]:
        """Evaluation-time preprocessing, as a plain dict (for model cards)."""
        return {
            "resize": None,
            "to_tensor": True,
            "normalize": {"mean": list(self.mean), "std": list(self.std)},
        }

    @property
    def random_train_transforms(self) -> bool:
        """Whether training images are randomly augmented."""
        return bool(self._augmentations())

    def _augmentations(self) -> list[Callable]:
        """Transforms applied to training images (PIL) before the evaluation transform."""
        if not self.augment:
            return []
        return [transforms.RandomCrop(self.input_shape[1:], padding=4)]

    # ---------------------------------------------------------------- finding data

    def _missing_files(self) -> list[str]:
        return [name for name in self._files if not (self.raw_dir / name).is_file()]

    def _fill_from_local_sources(self) -> None:
        """Copy the files into ``raw_dir`` from a known local source, if there is one."""

    def _not_found(self, reason: str) -> DataNotFoundError:
        """Build the error saying where the files were looked for and how to provide them."""
        missing = self._missing_files()
        which = "" if len(missing) == len(self._files) else f" (missing: {', '.join(missing)})"
        return DataNotFoundError(
            f"{self.display_name} not found: {reason}. Looked in {self.raw_dir} for the files "
            f"{', '.join(self._files)}{which}. {self._how_to_provide()}"
        )

    def _how_to_provide(self) -> str:
        return (
            f"Put the files in {self.raw_dir}, or point --data.data_dir (or the {DATA_DIR_ENV} "
            f"environment variable) at a folder with a {self._subdir}/ subfolder holding them, "
            "or run once with --data.download true on a machine with network access."
        )

    def _download_into_place(self) -> None:
        """Download with torchvision into a temporary folder, then move the files in place."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tmp_root = Path(tempfile.mkdtemp(prefix=".download-", dir=self.data_dir))
        try:
            self._download_cls(root=str(tmp_root), train=True, download=True)
            self.raw_dir.mkdir(parents=True, exist_ok=True)
            for name in self._files:
                commit(tmp_root / self._subdir / name, self.raw_dir / name)  # flushed, renamed, durable
        finally:
            shutil.rmtree(tmp_root, ignore_errors=True)

    def prepare_data(self) -> None:
        """Make sure the dataset files exist under ``data_dir``, downloading if allowed.

        Raises:
            DataNotFoundError: The files are missing and could not be obtained.
        """
        if not self._missing_files():
            return
        try:
            self._fill_from_local_sources()
        except (OSError, EOFError) as err:
            raise self._not_found(f"copying from a local source failed ({err})") from err
        if not self._missing_files():
            return
        if not self.download:
            raise self._not_found("the files are missing and downloading is off (download=False)")
        try:
            self._download_into_place()
        except Exception as err:
            detail = " ".join(str(err).split())  # torchvision's messages span several lines
            raise self._not_found(f"download failed ({type(err).__name__}: {detail})") from err
        if self._missing_files():
            raise self._not_found("the download did not produce the expected files")

    # ---------------------------------------------------------------- datasets

    def _load(self, train: bool) -> datasets.VisionDataset:
        if self._missing_files():
            raise self._not_found("prepare_data() was not run or did not succeed")
        return self._dataset_cls(root=str(self.data_dir), train=train, download=False)

    def _kept_indices(self, dataset: datasets.VisionDataset) -> list[int]:
        """Indices, in order, of the images of ``dataset`` whose label is in ``classes``."""
        if self.classes is None:
            return list(range(len(dataset)))
        targets = torch.as_tensor(dataset.targets)
        return torch.isin(targets, torch.tensor(self.classes)).nonzero().flatten().tolist()

    def _view(self, dataset: datasets.VisionDataset, transform: Callable) -> Dataset:
        """``dataset`` with ``transform``, and labels mapped to 0..k-1 when ``classes`` is set."""
        target_transform = None if self.classes is None else _LabelMap(self.classes)
        return _with_transform(dataset, transform, target_transform)

    def _split_indices(self, n: int) -> tuple[list[int], list[int]]:
        """Return (train, val) positions among ``n`` train images, seeded by ``seed``."""
        if self.val_size >= n:
            of = f"of the {n} train images"
            if self.classes is not None:
                of += f" of classes {list(self.classes)}"
            raise SettingError(
                f"val_size={self.val_size} leaves no training images ({of}); "
                f"val_size must be less than {n}"
            )
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).tolist()
        return perm[self.val_size :], perm[: self.val_size]

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets needed for ``stage``; those already built are kept.

        The train and validation sets are :class:`~torch.utils.data.Subset` objects of the
        official train set; the test set is the official test set, also a ``Subset`` of it
        when ``classes`` is set. Their ``indices`` are indices into the official sets.

        Args:
            stage: ``"fit"``, ``"validate"``, ``"test"``, ``"predict"``, or ``None`` for all.
        """
        if stage in (None, "fit", "validate") and self.train_set is None:
            full = self._load(train=True)
            kept = self._kept_indices(full)
            train_pos, val_pos = self._split_indices(len(kept))
            val_idx = [kept[i] for i in val_pos]
            train_idx = [kept[i] for i in train_pos]
            self.val_set = Subset(self._view(full, self.eval_transform), val_idx)
            self.train_set = Subset(self._view(full, self.train_transform), train_idx)
        if stage in (None, "test", "predict") and self.test_set is None:
            full = self._load(train=False)
            view = self._view(full, self.eval_transform)
            self.test_set = view if self.classes is None else Subset(view, self._kept_indices(full))

    # ---------------------------------------------------------------- loaders

    @property
    def has_validation(self) -> bool:
        """Whether the validation split is non-empty."""
        return self.val_size > 0


@register_datamodule
class MNISTDataModule(ImageDataModule):
    """MNIST handwritten digits: 60000 train / 10000 test grey 28x28 images.

    Files (uncompressed idx) are expected in ``<data_dir>/MNIST/raw/``.
    """

    input_shape = (1, 28, 28)
    dataset_num_classes = 10
    class_names = tuple(str(digit) for digit in range(10))
    mean = (0.1307,)
    std = (0.3081,)
    display_name = "MNIST"
    _dataset_cls = datasets.MNIST
    _download_cls = datasets.MNIST
    _subdir = "MNIST/raw"
    _files = _IDX_FILES


@register_datamodule
class FashionMNISTDataModule(ImageDataModule):
    """Fashion-MNIST clothing images: 60000 train / 10000 test grey 28x28 images.

    Files (uncompressed idx) are expected in ``<data_dir>/FashionMNIST/raw/``. When they are
    missing there but the Debian package ``dataset-fashion-mnist`` is installed, its gzipped
    files are unpacked there by :meth:`prepare_data`, without any network access.
    """

    input_shape = (1, 28, 28)
    dataset_num_classes = 10
    class_names = (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )
    mean = (0.2860,)
    std = (0.3530,)
    display_name = "Fashion-MNIST"
    _dataset_cls = datasets.FashionMNIST
    _download_cls = datasets.FashionMNIST
    _subdir = "FashionMNIST/raw"
    _files = _IDX_FILES

    def _fill_from_local_sources(self) -> None:
        source = Path(DEBIAN_FASHION_MNIST_DIR)
        gz_files = [source / f"{name}.gz" for name in self._files]
        if not all(path.is_file() for path in gz_files):
            return
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        for name, gz in zip(self._files, gz_files, strict=True):
            if not (self.raw_dir / name).is_file():
                _atomic_gunzip(gz, self.raw_dir / name)

    def _how_to_provide(self) -> str:
        return (
            f"{super()._how_to_provide()} On Debian/Ubuntu, installing the package "
            f"dataset-fashion-mnist (apt install dataset-fashion-mnist) provides them in "
            f"{DEBIAN_FASHION_MNIST_DIR}, which is used automatically."
        )


@register_datamodule
class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10: 50000 train / 10000 test colour 32x32 images of 10 object classes.

    Files (torchvision's python pickles: ``data_batch_1`` ... ``data_batch_5``,
    ``test_batch``, ``batches.meta``) are expected in ``<data_dir>/cifar-10-batches-py/``.
    """

    input_shape = (3, 32, 32)
    dataset_num_classes = 10
    class_names = (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    )
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    display_name = "CIFAR-10"
    _dataset_cls = _CIFAR10
    _download_cls = datasets.CIFAR10
    _subdir = "cifar-10-batches-py"
    _files = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 128,
        val_size: int = 5000,
        seed: int = 0,
        augment: bool = True,
        num_workers: int = 2,
        download: bool = True,
        classes: list[int] | None = None,
        checksums: dict[str, str] | None = None,
    ) -> None:
        """As :class:`ImageDataModule`, plus the files' checksums.

        Args:
            data_dir: See :class:`ImageDataModule`.
            batch_size: See :class:`ImageDataModule`.
            val_size: See :class:`ImageDataModule`.
            seed: See :class:`ImageDataModule`.
            augment: See :class:`ImageDataModule`.
            num_workers: See :class:`ImageDataModule`.
            download: See :class:`ImageDataModule`.
            classes: See :class:`ImageDataModule`.
            checksums: The md5 of each file, checked before it is unpickled; default
                torchvision's published ones (:data:`CIFAR10_MD5`). Give others only for files
                you made yourself in CIFAR-10's format.
        """
        super().__init__(data_dir, batch_size, val_size, seed, augment, num_workers, download, classes)
        table = CIFAR10_MD5 if checksums is None else checksums
        if not isinstance(table, dict) or set(table) != set(self._files):
            raise SettingError(f"checksums must map each of {list(self._files)} to its md5, "
                               f"got {checksums!r:.200}")
        self.checksums = dict(table)

    def _load(self, train: bool) -> datasets.VisionDataset:
        if self._missing_files():
            raise self._not_found("prepare_data() was not run or did not succeed")
        for name in self._files:
            if not check_integrity(str(self.raw_dir / name), self.checksums[name]):
                raise DataNotFoundError(
                    f"{self.display_name} file {self.raw_dir / name} fails its md5 check (expected "
                    f"{self.checksums[name]}): it is damaged or not the published file, and is not read. "
                    f"Delete {self.raw_dir} and download again with --data.download true."
                )
        return _CIFAR10(str(self.data_dir), train=train, checksums=self.checksums)

    def _augmentations(self) -> list[Callable]:
        if not self.augment:
            return []
        return [*super()._augmentations(), transforms.RandomHorizontalFlip()]

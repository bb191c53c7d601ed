"""Tests of zoo.data.images: finding, splitting, transforming and loading image data."""

import gzip
import hashlib
import json
import pickle
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import SequentialSampler
from torchvision import datasets

import zoo.data.images as images
from zoo.data import (
    CIFAR10DataModule,
    DataNotFoundError,
    FashionMNISTDataModule,
    ImageDataModule,
    MNISTDataModule,
)
from zoo.data.order import EpochSampler

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
DEBIAN_DIR = Path(images.DEBIAN_FASHION_MNIST_DIR)
HAVE_DEBIAN_FMNIST = all((DEBIAN_DIR / f"{name}.gz").is_file() for name in IDX_FILES)
needs_debian = pytest.mark.skipif(
    not HAVE_DEBIAN_FMNIST, reason="Debian package dataset-fashion-mnist not installed"
)


# ---------------------------------------------------------------- writing small real-format files


def idx_images(images_u8: np.ndarray) -> bytes:
    n, h, w = images_u8.shape
    return struct.pack(">IIII", 0x00000803, n, h, w) + images_u8.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", 0x00000801, len(labels)) + labels.astype(np.uint8).tobytes()


def make_idx_arrays(seed: int, n_train: int = 20, n_test: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def idx_bytes(arrays: dict[str, np.ndarray]) -> dict[str, bytes]:
    return {
        name: idx_images(arr) if arr.ndim == 3 else idx_labels(arr) for name, arr in arrays.items()
    }


def write_idx(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in idx_bytes(arrays).items():
        (folder / name).write_bytes(data)


def cifar_md5(folder: Path) -> dict[str, str]:
    """The md5 of each CIFAR-10 file a test wrote: the checksums a data module must be given for them."""
    return {name: hashlib.md5((folder / name).read_bytes()).hexdigest() for name in CIFAR_FILES}


def write_cifar(folder: Path, per_batch: int = 4, n_test: int = 6) -> dict[str, np.ndarray]:
    """Write CIFAR-10 python pickles as torchvision's CIFAR10 reads them; return the arrays.

    The real files are Python 2 pickles; torchvision loads them with ``encoding="latin1"``,
    which turns their byte-string keys and class names into ``str`` ("data", "labels",
    "label_names"). Python 3 ``bytes`` keys (``b"data"``, as in the CIFAR website's
    ``encoding="bytes"`` example) would not be found, so the keys here are ``str``.
    """
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = [], []
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        batch = {"batch_label": name, "data": data, "labels": labels}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        if name == "test_batch":
            test_x, test_y = data, labels
        else:
            train_x.append(data)
            train_y.extend(labels)
    names = ["airplane", "automobile", "bird", "cat", "deer"]
    names += ["dog", "frog", "horse", "ship", "truck"]
    meta = {"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return {
        "train_x": np.concatenate(train_x).reshape(-1, 3, 32, 32),
        "train_y": np.array(train_y),
        "test_x": test_x.reshape(-1, 3, 32, 32),
        "test_y": np.array(test_y),
    }


def unnormalize(x: torch.Tensor, dm: ImageDataModule) -> torch.Tensor:
    mean = torch.tensor(dm.mean).view(-1, 1, 1)
    std = torch.tensor(dm.std).view(-1, 1, 1)
    return x * std + mean


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


@pytest.fixture
def no_network(monkeypatch):
    """Make every torchvision download fail as it would offline, after writing a partial file."""
    calls = []

    def fake_download_url(url, root, filename=None, md5=None, max_redirect_hops=3):
        calls.append(url)
        Path(root).mkdir(parents=True, exist_ok=True)
        (Path(root) / (filename or Path(url).name)).write_bytes(b"partial")
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr("torchvision.datasets.utils.download_url", fake_download_url)
    return calls


@pytest.fixture
def mnist_arrays(tmp_path):
    arrays = make_idx_arrays(seed=0)
    write_idx(tmp_path / "MNIST" / "raw", arrays)
    return arrays


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("cls", "shape", "mean", "std"),
    [
        (MNISTDataModule, (1, 28, 28), (0.1307,), (0.3081,)),
        (FashionMNISTDataModule, (1, 28, 28), (0.2860,), (0.3530,)),
        (CIFAR10DataModule, (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    ],
)
def test_attributes_readable_after_init(tmp_path, cls, shape, mean, std):
    dm = cls(data_dir=str(tmp_path), batch_size=32)
    assert dm.input_shape == shape
    assert dm.num_classes == 10
    assert dm.mean == mean
    assert dm.std == std
    assert dm.hparams["batch_size"] == 32
    prep = dm.preprocessing
    assert prep == json.loads(json.dumps(prep))  # plain, serializable
    assert prep["normalize"] == {"mean": list(mean), "std": list(std)}
    assert prep["resize"] is None


def test_data_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("ZOO_HOME", raising=False)
    assert MNISTDataModule(data_dir=str(tmp_path / "x")).data_dir == tmp_path / "x"
    monkeypatch.setenv("ZOO_DATA", str(tmp_path / "env"))
    assert MNISTDataModule().data_dir == tmp_path / "env"
    monkeypatch.delenv("ZOO_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected = tmp_path / "home" / ".cache" / "neural-ode-zoo" / "data"
    assert CIFAR10DataModule().data_dir == expected


def test_data_dir_from_zoo_home(tmp_path, monkeypatch):
    monkeypatch.delenv("ZOO_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "zoo"))
    assert MNISTDataModule().data_dir == tmp_path / "zoo" / "data"
    assert images.resolve_data_dir(None) == tmp_path / "zoo" / "data"
    monkeypatch.setenv("ZOO_HOME", "~/zoo-home")
    assert FashionMNISTDataModule().data_dir == tmp_path / "home" / "zoo-home" / "data"
    # data_dir, then $ZOO_DATA, come first; an empty $ZOO_HOME counts as not set
    assert MNISTDataModule(data_dir=str(tmp_path / "x")).data_dir == tmp_path / "x"
    monkeypatch.setenv("ZOO_DATA", str(tmp_path / "env"))
    assert MNISTDataModule().data_dir == tmp_path / "env"
    monkeypatch.delenv("ZOO_DATA")
    monkeypatch.setenv("ZOO_HOME", "")
    expected = tmp_path / "home" / ".cache" / "neural-ode-zoo" / "data"
    assert MNISTDataModule().data_dir == expected


def test_transforms(tmp_path):
    names = lambda tf: [type(t).__name__ for t in tf.transforms]  # noqa: E731
    mnist = MNISTDataModule(data_dir=str(tmp_path))
    assert names(mnist.eval_transform) == ["ToTensor", "Normalize"]
    assert names(mnist.train_transform) == ["RandomCrop", "ToTensor", "Normalize"]
    assert mnist.train_transform.transforms[0].size == (28, 28)
    assert mnist.train_transform.transforms[0].padding == 4
    cifar = CIFAR10DataModule(data_dir=str(tmp_path))
    assert names(cifar.train_transform) == [
        "RandomCrop",
        "RandomHorizontalFlip",
        "ToTensor",
        "Normalize",
    ]
    assert cifar.train_transform.transforms[0].size == (32, 32)
    plain = CIFAR10DataModule(data_dir=str(tmp_path), augment=False)
    assert names(plain.train_transform) == ["ToTensor", "Normalize"]


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError, match="val_size"):
        MNISTDataModule(data_dir=str(tmp_path), val_size=-1)
    with pytest.raises(ValueError, match="batch_size"):
        MNISTDataModule(data_dir=str(tmp_path), batch_size=0)


# ---------------------------------------------------------------- selecting classes


def test_class_names():
    assert MNISTDataModule.class_names == tuple("0123456789")
    assert FashionMNISTDataModule.class_names == tuple(datasets.FashionMNIST.classes)
    assert CIFAR10DataModule.class_names[:3] == ("airplane", "automobile", "bird")
    assert CIFAR10DataModule.class_names[-1] == "truck"
    for cls in (MNISTDataModule, FashionMNISTDataModule, CIFAR10DataModule):
        assert cls.dataset_num_classes == len(cls.class_names) == 10


def test_classes_set_num_classes_at_construction(tmp_path):
    dm = FashionMNISTDataModule(data_dir=str(tmp_path), classes=[9, 5, 7])
    assert dm.num_classes == 3
    assert dm.classes == (9, 5, 7)
    assert dm.selected_class_names == ("Ankle boot", "Sandal", "Sneaker")
    assert dm.hparams["classes"] == [9, 5, 7]
    assert FashionMNISTDataModule.dataset_num_classes == 10
    everything = CIFAR10DataModule(data_dir=str(tmp_path))
    assert everything.classes is None
    assert everything.num_classes == 10
    assert everything.selected_class_names == CIFAR10DataModule.class_names
    assert MNISTDataModule(data_dir=str(tmp_path), classes=[3]).num_classes == 1


@pytest.mark.parametrize(
    ("classes", "match"),
    [
        ([], "must not be empty"),
        ([9, 5, 9], r"classes \[9\] are given more than once"),
        ([0, 10], r"classes \[10\] are out of range"),
        ([-1, 2], r"classes \[-1\] are out of range"),
        ([1.5], "must be integers"),
    ],
)
def test_invalid_classes(tmp_path, classes, match):
    with pytest.raises(ValueError, match=match) as info:
        FashionMNISTDataModule(data_dir=str(tmp_path), classes=classes)
    message = str(info.value)
    assert "[0, 10)" in message  # says what is valid
    assert "9='Ankle boot'" in message


# ---------------------------------------------------------------- MNIST on tiny real-format files


def test_mnist_loads_tiny_idx_files(tmp_path, mnist_arrays, no_network):
    dm = MNISTDataModule(data_dir=str(tmp_path), val_size=5, batch_size=4, num_workers=0)
    dm.prepare_data()  # files exist: must not touch the network even with download=True
    assert no_network == []
    dm.setup("fit")
    dm.setup("test")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (15, 5, 10)
    assert sorted(dm.train_set.indices + dm.val_set.indices) == list(range(20))

    train_x, train_y = (
        mnist_arrays["train-images-idx3-ubyte"],
        mnist_arrays["train-labels-idx1-ubyte"],
    )
    for k, i in enumerate(dm.val_set.indices):
        x, y = dm.val_set[k]
        assert y == train_y[i]
        expected = torch.from_numpy(train_x[i]).float().div(255).unsqueeze(0)
        torch.testing.assert_close(unnormalize(x, dm), expected, atol=1e-5, rtol=0)

    xs, ys = next(iter(dm.test_dataloader()))
    assert xs.shape == (4, 1, 28, 28)
    assert xs.dtype == torch.float32
    assert ys.tolist() == mnist_arrays["t10k-labels-idx1-ubyte"][:4].tolist()
    test_x = mnist_arrays["t10k-images-idx3-ubyte"]
    assert round(unnormalize(xs[2], dm)[0, 5, 7].item() * 255) == test_x[2, 5, 7]


def test_mnist_classes_filter_and_relabel_tiny_files(tmp_path, mnist_arrays):
    classes = [1, 6, 0]
    dm = MNISTDataModule(
        data_dir=str(tmp_path), val_size=3, batch_size=4, num_workers=0, classes=classes
    )
    dm.setup()
    train_x, train_y = (
        mnist_arrays["train-images-idx3-ubyte"],
        mnist_arrays["train-labels-idx1-ubyte"],
    )
    test_y = mnist_arrays["t10k-labels-idx1-ubyte"]
    kept_train = [i for i, y in enumerate(train_y) if y in classes]
    kept_test = [i for i, y in enumerate(test_y) if y in classes]
    assert len(kept_train) == 12 and len(kept_test) == 2  # the tiny files have these
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (9, 3, 2)
    assert sorted(dm.train_set.indices + dm.val_set.indices) == kept_train
    assert dm.test_set.indices == kept_test
    for subset, x_arr, y_arr in (
        (dm.val_set, train_x, train_y),
        (dm.test_set, mnist_arrays["t10k-images-idx3-ubyte"], test_y),
    ):
        for k, i in enumerate(subset.indices):
            x, y = subset[k]
            assert y == classes.index(y_arr[i])
            expected = torch.from_numpy(x_arr[i]).float().div(255).unsqueeze(0)
            torch.testing.assert_close(unnormalize(x, dm), expected, atol=1e-5, rtol=0)
    labels = torch.cat([ys for _, ys in dm.train_dataloader()])
    assert sorted(labels.tolist()) == sorted(classes.index(train_y[i]) for i in dm.train_set.indices)


def test_val_size_too_large_for_selected_classes(tmp_path, mnist_arrays):
    dm = MNISTDataModule(data_dir=str(tmp_path), val_size=12, num_workers=0, classes=[1, 6, 0])
    with pytest.raises(ValueError, match=r"val_size=12 leaves no training images .*classes \[1, 6, 0\]"):
        dm.setup("fit")
    dm = MNISTDataModule(data_dir=str(tmp_path), val_size=11, num_workers=0, classes=[1, 6, 0])
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set)) == (1, 11)


def test_mnist_download_false_with_files_present(tmp_path, mnist_arrays):
    dm = MNISTDataModule(data_dir=str(tmp_path), val_size=0, num_workers=0, download=False)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_set) == 20
    assert len(dm.val_set) == 0
    assert dm.val_dataloader() == []


def test_setup_is_per_stage_and_idempotent(tmp_path, mnist_arrays):
    dm = MNISTDataModule(data_dir=str(tmp_path), val_size=5, num_workers=0)
    dm.setup("test")
    assert dm.train_set is None
    test_set = dm.test_set
    dm.setup("fit")
    train_set, val_set = dm.train_set, dm.val_set
    dm.setup("fit")
    dm.setup("predict")
    dm.setup()
    assert (dm.train_set, dm.val_set, dm.test_set) == (train_set, val_set, test_set)
    # predict uses the test set, in order
    _, ys = next(iter(dm.predict_dataloader()))
    assert ys.tolist() == mnist_arrays["t10k-labels-idx1-ubyte"][: len(ys)].tolist()


def test_val_size_too_large(tmp_path, mnist_arrays):
    with pytest.raises(ValueError, match="val_size"):
        MNISTDataModule(data_dir=str(tmp_path), val_size=20).setup("fit")


def test_dataloader_settings(tmp_path, mnist_arrays):
    dm = MNISTDataModule(data_dir=str(tmp_path), val_size=5, batch_size=3, num_workers=2)
    dm.setup()
    train = dm.train_dataloader()
    assert isinstance(train.sampler, EpochSampler)
    assert train.batch_size == 3
    assert train.num_workers == 2
    assert train.persistent_workers is True
    assert train.pin_memory == torch.cuda.is_available()
    for loader in (dm.val_dataloader(), dm.test_dataloader(), dm.predict_dataloader()):
        assert isinstance(loader.sampler, SequentialSampler)
        assert loader.batch_size == 3
    dm0 = MNISTDataModule(data_dir=str(tmp_path), val_size=5, num_workers=0)
    dm0.setup()
    assert dm0.train_dataloader().persistent_workers is False


def test_train_order_is_seeded(tmp_path, mnist_arrays):
    def first_epoch_labels(seed):
        dm = MNISTDataModule(
            data_dir=str(tmp_path), val_size=0, batch_size=20, seed=seed, num_workers=0
        )
        dm.setup("fit")
        return next(iter(dm.train_dataloader()))[1].tolist()

    assert first_epoch_labels(0) == first_epoch_labels(0)
    orders = {tuple(first_epoch_labels(seed)) for seed in range(5)}
    assert len(orders) > 1


# Lightning warns that the empty list returned for val_size=0 has no batches; that is intended.
@pytest.mark.filterwarnings("ignore:Total length of `list` across ranks is zero")
def test_fit_with_trainer(tmp_path, mnist_arrays):
    lightning = pytest.importorskip("lightning")

    class Tiny(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(28 * 28, 10)
            self.val_batches = 0

        def training_step(self, batch, _):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x.flatten(1)), y)

        def validation_step(self, batch, _):
            self.val_batches += 1

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    for val_size, expected_val_batches in ((0, 0), (5, 2)):
        dm = MNISTDataModule(data_dir=str(tmp_path), val_size=val_size, batch_size=4, num_workers=0)
        model = Tiny()
        trainer = lightning.Trainer(
            max_epochs=1,
            num_sanity_val_steps=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
            default_root_dir=str(tmp_path / "runs"),
        )
        trainer.fit(model, datamodule=dm)
        assert trainer.global_step == (20 - val_size + 3) // 4
        assert model.val_batches == expected_val_batches


# ------------------------------------------------------------ CIFAR-10 on tiny real-format files


def test_cifar10_loads_tiny_pickles(tmp_path):
    arrays = write_cifar(tmp_path / "cifar-10-batches-py")
    dm = CIFAR10DataModule(data_dir=str(tmp_path), val_size=4, batch_size=5, num_workers=0,
                           checksums=cifar_md5(tmp_path / "cifar-10-batches-py"))
    dm.prepare_data()
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (16, 4, 6)
    assert dm.test_set.classes[0] == "airplane"

    xs, ys = next(iter(dm.test_dataloader()))
    assert xs.shape == (5, 3, 32, 32)
    assert xs.dtype == torch.float32
    assert ys.tolist() == arrays["test_y"][:5].tolist()
    expected = torch.from_numpy(arrays["test_x"][:5]).float().div(255)
    torch.testing.assert_close(unnormalize(xs, dm), expected, atol=1e-5, rtol=0)

    for k, i in enumerate(dm.val_set.indices):
        x, y = dm.val_set[k]
        assert y == arrays["train_y"][i]
        expected = torch.from_numpy(arrays["train_x"][i]).float().div(255)
        torch.testing.assert_close(unnormalize(x, dm), expected, atol=1e-5, rtol=0)
    x, _ = dm.train_set[0]
    assert x.shape == (3, 32, 32)


def test_cifar10_classes_tiny_pickles(tmp_path):
    arrays = write_cifar(tmp_path / "cifar-10-batches-py")
    classes = [7, 5, 1]
    dm = CIFAR10DataModule(
        data_dir=str(tmp_path), val_size=3, batch_size=50, num_workers=0, classes=classes,
        checksums=cifar_md5(tmp_path / "cifar-10-batches-py"),
    )
    assert dm.selected_class_names == ("horse", "dog", "automobile")
    dm.setup()
    kept_train = [i for i, y in enumerate(arrays["train_y"]) if y in classes]
    assert len(kept_train) == 11  # the tiny files have these
    assert sorted(dm.train_set.indices + dm.val_set.indices) == kept_train
    assert (len(dm.train_set), len(dm.val_set)) == (8, 3)
    for k, i in enumerate(dm.val_set.indices):
        assert dm.val_set[k][1] == classes.index(arrays["train_y"][i])
    xs, ys = next(iter(dm.test_dataloader()))
    assert arrays["test_y"][:3].tolist() == [1, 7, 7]
    assert ys.tolist() == [2, 0, 0]  # the other test images are of classes not kept
    expected = torch.from_numpy(arrays["test_x"][:3]).float().div(255)
    torch.testing.assert_close(unnormalize(xs, dm), expected, atol=1e-5, rtol=0)


def test_cifar10_checks_torchvisions_md5_by_default():
    from torchvision.datasets import CIFAR10

    published = {name: md5 for name, md5 in CIFAR10.train_list + CIFAR10.test_list}
    published[CIFAR10.meta["filename"]] = CIFAR10.meta["md5"]
    assert CIFAR10DataModule().checksums == published


@pytest.mark.parametrize("tampered", ["data_batch_3", "test_batch", "batches.meta"])
def test_cifar10_refuses_a_tampered_file_before_unpickling_it(tmp_path, monkeypatch, tampered):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    checksums = cifar_md5(folder)
    (folder / tampered).write_bytes((folder / tampered).read_bytes() + b"\x00")
    unpickled = []
    monkeypatch.setattr(pickle, "load", lambda *args, **kwargs: unpickled.append(args))
    dm = CIFAR10DataModule(data_dir=str(tmp_path), val_size=4, num_workers=0, checksums=checksums)
    with pytest.raises(DataNotFoundError, match=f"{tampered} fails its md5 check"):
        dm.setup()
    assert unpickled == []
    with pytest.raises(DataNotFoundError, match="fails its md5 check"):
        CIFAR10DataModule(data_dir=str(tmp_path), val_size=4, num_workers=0).setup()  # the real table


# ---------------------------------------------------------------- missing data


def make_missing(cls, tmp_path, monkeypatch, **kwargs):
    monkeypatch.setattr(images, "DEBIAN_FASHION_MNIST_DIR", str(tmp_path / "no-such-package"))
    return cls(data_dir=str(tmp_path / "data"), num_workers=0, **kwargs)


ALL = [
    (MNISTDataModule, "MNIST/raw", IDX_FILES),
    (FashionMNISTDataModule, "FashionMNIST/raw", IDX_FILES),
    (CIFAR10DataModule, "cifar-10-batches-py", CIFAR_FILES),
]


@pytest.mark.parametrize(("cls", "subdir", "files"), ALL)
def test_missing_data_without_download(tmp_path, monkeypatch, no_network, cls, subdir, files):
    dm = make_missing(cls, tmp_path, monkeypatch, download=False)
    with pytest.raises(DataNotFoundError) as info:
        dm.prepare_data()
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert str(tmp_path / "data" / subdir) in message
    assert all(name in message for name in files)
    assert "ZOO_DATA" in message
    assert "--data.data_dir" in message
    assert no_network == []
    assert files_under(tmp_path) == []
    with pytest.raises(DataNotFoundError):
        dm.setup("fit")


@pytest.mark.parametrize(("cls", "subdir", "files"), ALL)
def test_failed_download_leaves_nothing(tmp_path, monkeypatch, no_network, cls, subdir, files):
    dm = make_missing(cls, tmp_path, monkeypatch, download=True)
    with pytest.raises(DataNotFoundError, match="download failed") as info:
        dm.prepare_data()
    assert no_network  # a download was attempted (and failed)
    assert info.value.__cause__ is not None
    message = str(info.value)
    assert str(tmp_path / "data" / subdir) in message
    assert all(name in message for name in files)
    assert files_under(tmp_path) == []


def test_partially_present_files_are_named(tmp_path, monkeypatch):
    write_idx(tmp_path / "data" / "MNIST" / "raw", make_idx_arrays(seed=0))
    (tmp_path / "data" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    dm = make_missing(MNISTDataModule, tmp_path, monkeypatch, download=False)
    with pytest.raises(DataNotFoundError, match=r"missing: t10k-labels-idx1-ubyte\)"):
        dm.prepare_data()


# --------------------------------------------------------- Fashion-MNIST from the Debian folder


def test_fashion_mnist_debian_folder_missing(tmp_path, monkeypatch):
    dm = make_missing(FashionMNISTDataModule, tmp_path, monkeypatch, download=False)
    with pytest.raises(DataNotFoundError, match="dataset-fashion-mnist") as info:
        dm.prepare_data()
    assert str(tmp_path / "data" / "FashionMNIST" / "raw") in str(info.value)


def test_fashion_mnist_from_fake_debian_folder(tmp_path, monkeypatch, no_network):
    arrays = make_idx_arrays(seed=3)
    debian = tmp_path / "debian"
    debian.mkdir()
    for name, data in idx_bytes(arrays).items():
        (debian / f"{name}.gz").write_bytes(gzip.compress(data))
    monkeypatch.setattr(images, "DEBIAN_FASHION_MNIST_DIR", str(debian))
    monkeypatch.setenv("ZOO_DATA", str(tmp_path / "data"))
    dm = FashionMNISTDataModule(val_size=4, batch_size=10, num_workers=0, download=False)
    dm.prepare_data()
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(IDX_FILES)
    assert (raw / "train-images-idx3-ubyte").read_bytes() == idx_images(
        arrays["train-images-idx3-ubyte"]
    )
    dm.setup()
    _, ys = next(iter(dm.test_dataloader()))
    assert ys.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()


def test_fashion_mnist_corrupt_debian_file_leaves_no_partial_file(tmp_path, monkeypatch):
    debian = tmp_path / "debian"
    debian.mkdir()
    for name, data in idx_bytes(make_idx_arrays(seed=3)).items():
        (debian / f"{name}.gz").write_bytes(gzip.compress(data))
    truncated = (debian / "t10k-images-idx3-ubyte.gz").read_bytes()[:100]
    (debian / "t10k-images-idx3-ubyte.gz").write_bytes(truncated)
    monkeypatch.setattr(images, "DEBIAN_FASHION_MNIST_DIR", str(debian))
    dm = FashionMNISTDataModule(data_dir=str(tmp_path / "data"), download=False)
    with pytest.raises(DataNotFoundError, match="t10k-images-idx3-ubyte"):
        dm.prepare_data()
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    assert "t10k-images-idx3-ubyte" not in {p.name for p in raw.iterdir()}
    assert not [p for p in raw.iterdir() if p.name.startswith(".")]


@pytest.fixture(scope="module")
def debian_fmnist_dir(tmp_path_factory):
    """A data folder filled from the Debian package, with no data_dir configured."""
    data_dir = tmp_path_factory.mktemp("zoo-data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZOO_DATA", str(data_dir))
        dm = FashionMNISTDataModule(num_workers=0, download=False)
        assert dm.data_dir == data_dir
        dm.prepare_data()
    return data_dir


def fmnist(data_dir, **kwargs):
    kwargs = {"num_workers": 0, "download": False, "batch_size": 256, **kwargs}
    dm = FashionMNISTDataModule(data_dir=str(data_dir), **kwargs)
    dm.prepare_data()
    return dm


@needs_debian
def test_fashion_mnist_found_without_configuration(debian_fmnist_dir):
    raw = debian_fmnist_dir / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(IDX_FILES)  # no temporary leftovers
    assert (raw / "train-images-idx3-ubyte").stat().st_size == 16 + 60000 * 28 * 28
    dm = fmnist(debian_fmnist_dir)
    dm.setup("fit")
    dm.setup("test")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (55000, 5000, 10000)
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        xs, ys = next(iter(loader))
        assert xs.shape == (256, 1, 28, 28)
        assert xs.dtype == torch.float32
        assert ys.dtype == torch.int64
        assert ys.min() >= 0 and ys.max() <= 9
    xs = torch.cat([x for x, _ in (dm.test_set[i] for i in range(0, 10000, 5))])
    assert abs(xs.mean().item()) < 0.1
    assert 0.85 < xs.std().item() < 1.15


@needs_debian
def test_fashion_mnist_val_split_is_seeded(debian_fmnist_dir):
    a, b, c = (fmnist(debian_fmnist_dir, seed=s) for s in (0, 0, 1))
    for dm in (a, b, c):
        dm.setup("fit")
    assert a.val_set.indices == b.val_set.indices
    assert a.val_set.indices != c.val_set.indices
    assert set(a.val_set.indices).isdisjoint(a.train_set.indices)
    torch.testing.assert_close(a.val_set[0][0], b.val_set[0][0])


@needs_debian
def test_fashion_mnist_only_train_images_are_augmented(debian_fmnist_dir):
    dm = fmnist(debian_fmnist_dir, augment=True)
    dm.setup("fit")
    for k in range(5):
        assert torch.equal(dm.val_set[k][0], dm.val_set[k][0])
    torch.manual_seed(0)
    assert any(not torch.equal(dm.train_set[k][0], dm.train_set[k][0]) for k in range(10))
    # the validation image is exactly the evaluation transform of the stored image
    i = dm.val_set.indices[0]
    raw = dm.val_set.dataset.data[i].float().div(255)
    torch.testing.assert_close(unnormalize(dm.val_set[0][0], dm)[0], raw, atol=1e-5, rtol=0)

    plain = fmnist(debian_fmnist_dir, augment=False)
    plain.setup("fit")
    assert all(torch.equal(plain.train_set[k][0], plain.train_set[k][0]) for k in range(5))



@needs_debian
def test_fashion_mnist_footwear_classes(debian_fmnist_dir):
    dm = fmnist(debian_fmnist_dir, classes=[9, 5, 7], val_size=3000)
    assert dm.num_classes == 3
    dm.setup("fit")
    dm.setup("test")
    # Fashion-MNIST has 6000 train and 1000 test images of each class
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (15000, 3000, 3000)
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        for _, (xs, ys) in zip(range(3), loader, strict=False):
            assert xs.shape[1:] == (1, 28, 28)
            assert set(ys.tolist()) <= {0, 1, 2}

    # the official sets, read straight from the files, without the data module
    train = datasets.FashionMNIST(str(debian_fmnist_dir), train=True, download=False)
    test = datasets.FashionMNIST(str(debian_fmnist_dir), train=False, download=False)
    footwear = torch.isin(train.targets, torch.tensor([5, 7, 9])).nonzero().flatten()
    assert sorted(dm.train_set.indices + dm.val_set.indices) == footwear.tolist()
    i = dm.val_set.indices[0]
    assert dm.val_set[0][1] == {9: 0, 5: 1, 7: 2}[int(train.targets[i])]

    # every test image and label, in order: the originals of classes 9, 5, 7 relabelled 0, 1, 2
    xs, ys = (torch.cat(parts) for parts in zip(*dm.test_dataloader(), strict=True))
    mask = torch.isin(test.targets, torch.tensor([9, 5, 7]))
    expected_labels = test.targets[mask].clone().apply_(lambda y: {9: 0, 5: 1, 7: 2}[y])
    assert torch.equal(ys, expected_labels)
    assert torch.bincount(ys).tolist() == [1000, 1000, 1000]
    pixels = (unnormalize(xs, dm)[:, 0] * 255).round().to(torch.uint8)
    assert torch.equal(pixels, test.data[mask])
    # the first image labelled 0 is the first ankle boot (class 9) of the official test set
    first_boot = int((test.targets == 9).nonzero()[0])
    assert torch.equal(pixels[int((ys == 0).nonzero()[0])], test.data[first_boot])

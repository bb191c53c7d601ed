"""Tests of zoo.data.toys: generated toy classification data sets."""

import math

import numpy as np
import pytest
import torch
from lightning import LightningModule, Trainer
from torch import nn
from torch.utils.data import SequentialSampler

from zoo.data import (
    EllipsesDataModule,
    PeaksDataModule,
    SpheresDataModule,
    SwissRollDataModule,
    ToyDataModule,
)
from zoo.data.order import EpochSampler
from zoo.data.toys import peaks

ALL = (SpheresDataModule, SwissRollDataModule, PeaksDataModule, EllipsesDataModule)
TOL = 1e-5  # float32 rounding of coordinates


def splits(dm: ToyDataModule) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    dm.setup()
    return {name: getattr(dm, f"{name}_set").tensors for name in ("train", "val", "test")}


# ---------------------------------------------------------------- attributes and batches


@pytest.mark.parametrize("cls", ALL)
def test_attributes_available_right_after_construction(cls):
    dm = cls()
    assert isinstance(dm, ToyDataModule)
    assert isinstance(dm.input_shape, tuple) and len(dm.input_shape) == 1
    assert dm.num_classes >= 2 and len(dm.class_names) == dm.num_classes
    assert isinstance(dm.display_name, str) and dm.display_name
    assert dm.preprocessing == {"inputs": "raw coordinates, no normalization", "normalize": None}
    assert dm.train_set is None and dm.val_set is None and dm.test_set is None
    assert dm.batch_size == 64 and dm.seed == 0 and dm.num_workers == 0


def test_display_names():
    assert SpheresDataModule(dim=3).display_name == "Concentric spheres (d=3)"
    assert SpheresDataModule(dim=3).input_shape == (3,)
    assert "noise 0.1" in SwissRollDataModule(noise=0.1).display_name
    assert PeaksDataModule(num_classes=4).class_names == ("level 0", "level 1", "level 2", "level 3")
    assert EllipsesDataModule(num_classes=2).class_names == ("inner ellipse", "ring 1")


@pytest.mark.parametrize("cls", ALL)
def test_batches_have_shapes_and_dtypes(cls):
    dm = cls(batch_size=32)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, *dm.input_shape) and x.dtype == torch.float32
    assert y.shape == (32,) and y.dtype == torch.int64
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (32, *dm.input_shape) and y.dtype == torch.int64
    assert dm.test_set is None
    dm.setup("test")
    x, y = next(iter(dm.test_dataloader()))
    assert x.dtype == torch.float32 and y.dtype == torch.int64


@pytest.mark.parametrize("cls", ALL)
def test_only_train_loader_shuffles_and_its_order_is_seeded(cls):
    first = []
    for _ in range(2):
        dm = cls(seed=3)
        dm.setup()
        assert isinstance(dm.train_dataloader().sampler, EpochSampler)
        assert isinstance(dm.val_dataloader().sampler, SequentialSampler)
        assert isinstance(dm.test_dataloader().sampler, SequentialSampler)
        first.append(next(iter(dm.train_dataloader()))[0])
    torch.testing.assert_close(first[0], first[1])


def test_loaders_before_setup_raise():
    with pytest.raises(RuntimeError, match="setup"):
        SpheresDataModule().train_dataloader()


@pytest.mark.parametrize("cls", ALL)
def test_default_split_sizes_equal_train_size_and_labels_in_range(cls):
    dm = cls()
    data = splits(dm)
    n = len(data["train"][1])
    assert dm.split_sizes == {"train": n, "val": n, "test": n}
    for x, y in data.values():
        assert len(x) == len(y) == n
        assert set(y.tolist()) == set(range(dm.num_classes))


def test_num_val_and_num_test_set_the_split_sizes():
    dm = SwissRollDataModule(num_per_class=10, num_val=7, num_test=5)
    data = splits(dm)
    assert [len(data[s][1]) for s in ("train", "val", "test")] == [20, 7, 5]
    assert np.bincount(data["val"][1]).tolist() == [4, 3]


def test_num_val_zero_means_no_validation():
    dm = PeaksDataModule(num_train=50, num_val=0)
    dm.setup("fit")
    assert len(dm.val_set) == 0
    assert dm.val_dataloader() == []


@pytest.mark.parametrize("cls", ALL)
def test_hparams_rebuild_the_same_data(cls):
    dm = cls(seed=5, batch_size=16)
    rebuilt = cls(**dm.hparams)
    torch.testing.assert_close(rebuilt.make_split("val"), dm.make_split("val"))


# ---------------------------------------------------------------- determinism and splits


@pytest.mark.parametrize("cls", ALL)
def test_same_seed_same_data_other_seed_other_data(cls):
    a, b, c = splits(cls(seed=1)), splits(cls(seed=1)), splits(cls(seed=2))
    for name in ("train", "val", "test"):
        torch.testing.assert_close(a[name], b[name])
        assert not torch.equal(a[name][0], c[name][0])


@pytest.mark.parametrize("cls", ALL)
def test_splits_are_disjoint_draws(cls):
    data = splits(cls(seed=0))
    rows = {name: {tuple(p) for p in x.tolist()} for name, (x, _) in data.items()}
    assert not rows["train"] & rows["val"]
    assert not rows["train"] & rows["test"]
    assert not rows["val"] & rows["test"]
    # not the "seed, seed+1, seed+2" scheme: seed 1's train set is not seed 0's validation set
    assert not torch.equal(cls(seed=1).make_split("train")[0], data["val"][0])


def test_make_split_rejects_unknown_split():
    with pytest.raises(ValueError, match="split must be one of"):
        SpheresDataModule().make_split("training")


# ---------------------------------------------------------------- geometry


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_spheres_counts_and_geometry(dim):
    dm = SpheresDataModule(dim=dim)
    for x, y in splits(dm).values():
        assert x.shape == (2000, dim)
        assert torch.bincount(y).tolist() == [500, 1500]
        norms = x.double().norm(dim=1)
        assert norms[y == 0].max() <= 0.5 + TOL
        assert norms[y == 1].min() >= 1.0 - TOL
        assert norms[y == 1].max() <= 1.5 + TOL


def test_spheres_are_uniform_in_volume():
    x, y = SpheresDataModule(dim=3, num_inner=4000, num_outer=4000).make_split("train")
    norms = x.double().norm(dim=1)
    # uniform in the ball of radius 0.5: P(|x| <= 0.5 / 2^(1/3)) = 1/2
    assert abs((norms[y == 0] <= 0.5 / 2 ** (1 / 3)).double().mean() - 0.5) < 0.05
    # uniform in the shell [1, 1.5]: half of its volume lies inside ((1 + 1.5^3) / 2)^(1/3)
    median = ((1 + 1.5**3) / 2) ** (1 / 3)
    assert abs((norms[y == 1] <= median).double().mean() - 0.5) < 0.05
    # directions uniform: every octant of R^3 gets about 1/8 of the points
    octant = ((x > 0).long() * torch.tensor([1, 2, 4])).sum(dim=1)
    assert torch.bincount(octant, minlength=8).min() > 0.1 * len(x)


def test_spheres_dim1_are_intervals_on_both_sides():
    x, y = SpheresDataModule(dim=1).make_split("train")
    for label in (0, 1):
        assert (x[y == label] > 0).any() and (x[y == label] < 0).any()


def test_spheres_custom_radii_and_proportional_eval_sizes():
    dm = SpheresDataModule(
        inner_radius=1, gap_radius=2, outer_radius=3, num_inner=100, num_outer=300, num_val=40
    )
    x, y = dm.make_split("val")
    assert torch.bincount(y).tolist() == [10, 30]
    norms = x.double().norm(dim=1)
    assert norms[y == 0].max() <= 1 + TOL and norms[y == 1].min() >= 2 - TOL


def test_swiss_roll_points_lie_on_their_spirals():
    x, y = SwissRollDataModule().make_split("train")
    assert torch.bincount(y).tolist() == [513, 513]
    x = x.double()
    s = x.norm(dim=1) - 0.2 * y  # spiral parameter
    assert s.min() >= -TOL and s.max() <= 1 + TOL
    angle = 4 * math.pi * s
    torch.testing.assert_close(
        x,
        torch.stack([s + 0.2 * y] * 2, dim=1) * torch.stack([angle.cos(), angle.sin()], dim=1),
        atol=1e-4,
        rtol=0,
    )


def test_swiss_roll_noise():
    clean = SwissRollDataModule().make_split("train")[0].double()
    noisy = SwissRollDataModule(noise=0.1).make_split("train")[0].double()
    assert noisy.norm(dim=1).max() > clean.norm(dim=1).max() + 0.05


def test_peaks_function_matches_matlab():
    assert peaks(np.array(0.0), np.array(0.0)) == pytest.approx(3 * math.exp(-1) - math.exp(-1) / 3)
    assert peaks(np.array(1.0), np.array(-1.0)) == pytest.approx(
        -10 * (0.2 - 1 + 1) * math.exp(-2) - math.exp(-5) / 3
    )


@pytest.mark.parametrize("num_classes", [5, 3])
def test_peaks_classes_are_level_sets_and_roughly_balanced(num_classes):
    dm = PeaksDataModule(num_classes=num_classes)
    assert len(dm.thresholds) == num_classes - 1 and list(dm.thresholds) == sorted(dm.thresholds)
    for x, y in splits(dm).values():
        assert x.abs().max() <= 3
        counts = torch.bincount(y, minlength=num_classes)
        assert counts.min() >= 0.1 * len(y)
        assert counts.min() >= 0.7 * len(y) / num_classes
        values = peaks(x[:, 0].double().numpy(), x[:, 1].double().numpy())
        edges = [-np.inf, *dm.thresholds, np.inf]
        for k in range(num_classes):
            v = values[y.numpy() == k]
            assert v.min() >= edges[k] - TOL and v.max() <= edges[k + 1] + TOL


@pytest.mark.parametrize("axis_ratio", [0.4, 2.0])
def test_ellipses_points_lie_in_their_rings(axis_ratio):
    dm = EllipsesDataModule(axis_ratio=axis_ratio)
    for x, y in splits(dm).values():
        assert torch.bincount(y).tolist() == [500, 500, 500]
        rho = torch.as_tensor(dm.elliptic_radius(x.double().numpy()))
        assert (rho >= y - TOL).all() and (rho <= y + 1 + TOL).all()


# ---------------------------------------------------------------- grid


@pytest.mark.parametrize("cls", [SwissRollDataModule, PeaksDataModule, EllipsesDataModule, SpheresDataModule])
def test_grid_covers_the_data(cls):
    dm = cls()
    xx, yy, points = dm.grid(resolution=30)
    assert xx.shape == yy.shape == (30, 30) and points.shape == (900, 2) and points.dtype == torch.float32
    x, _ = dm.make_split("train")
    assert (points.min(dim=0).values <= x.min(dim=0).values).all()
    assert (points.max(dim=0).values >= x.max(dim=0).values).all()


def test_grid_needs_2d_data():
    with pytest.raises(ValueError, match="2-D"):
        SpheresDataModule(dim=3).grid()


# ---------------------------------------------------------------- invalid arguments


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (SpheresDataModule, {"dim": 0}, "dim must be >= 1"),
        (SpheresDataModule, {"dim": 1.5}, "dim must be an integer"),
        (SpheresDataModule, {"inner_radius": 1.2}, "0 < inner_radius < gap_radius < outer_radius"),
        (SpheresDataModule, {"gap_radius": 2.0}, "0 < inner_radius < gap_radius < outer_radius"),
        (SpheresDataModule, {"inner_radius": 0.0}, "inner_radius must be a finite number > 0"),
        (SpheresDataModule, {"outer_radius": math.inf}, "outer_radius must be a finite number > 0"),
        (SpheresDataModule, {"num_inner": 0}, "num_inner must be >= 1"),
        (SpheresDataModule, {"num_val": -1}, "num_val must be >= 0"),
        (SpheresDataModule, {"num_test": 0}, "num_test must be >= 1"),
        (SpheresDataModule, {"batch_size": 0}, "batch_size must be >= 1"),
        (SpheresDataModule, {"seed": -1}, "seed must be >= 0"),
        (SpheresDataModule, {"num_workers": -1}, "num_workers must be >= 0"),
        (SwissRollDataModule, {"noise": -0.1}, "noise must be a finite number >= 0"),
        (SwissRollDataModule, {"num_per_class": 0}, "num_per_class must be >= 1"),
        (PeaksDataModule, {"num_classes": 1}, "num_classes must be >= 2"),
        (PeaksDataModule, {"num_train": 0}, "num_train must be >= 1"),
        (EllipsesDataModule, {"axis_ratio": 0}, "axis_ratio must be a finite number > 0"),
        (EllipsesDataModule, {"num_classes": 1}, "num_classes must be >= 2"),
    ],
)
def test_invalid_arguments_raise(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


# ---------------------------------------------------------------- Lightning


class TinyClassifier(LightningModule):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(input_shape[0], 16), nn.Tanh(), nn.Linear(16, num_classes))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def test_trainer_fit_smoke():
    dm = EllipsesDataModule(num_per_class=40, batch_size=16)
    model = TinyClassifier(dm.input_shape, dm.num_classes)
    trainer = Trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 2
    assert "val_loss" in trainer.callback_metrics

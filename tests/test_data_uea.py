"""UEA/UCR series in the .ts format, made irregular: parsing, dropping, splits, the bundled sets."""

import importlib.util

import numpy as np
import pytest
import torch

from zoo.data import DataNotFoundError, UEADataModule, collate_series
from zoo.data.uea import read_ts

TS = """# a tiny set in the archive's format
@problemName Tiny
@timeStamps false
@missing true
@univariate false
@dimensions 2
@equalLength false
@classLabel true a b
@data
1,2,3,4:10,20,30,40:a
5,6,?:50,60,70:b
7,8,9,10,11,12:70,80,90,100,110,120:a
0,1:2,3:b
"""


def write_tiny(folder):
    (folder / "Tiny").mkdir(parents=True)
    for split in ("TRAIN", "TEST"):
        (folder / "Tiny" / f"Tiny_{split}.ts").write_text(TS)
    return folder


def test_read_ts_keeps_lengths_channels_missing_values_and_labels(tmp_path):
    series, labels, header = read_ts(write_tiny(tmp_path) / "Tiny" / "Tiny_TRAIN.ts")
    assert [s.shape for s in series] == [(4, 2), (3, 2), (6, 2), (2, 2)]
    assert np.isnan(series[1][2, 0]) and series[1][2, 1] == 70
    assert labels == ["a", "b", "a", "b"] and header["@dimensions"] == "2"


def test_values_are_dropped_per_channel_and_standardized(tmp_path):
    dm = UEADataModule("Tiny", drop=0.5, val_size=0.25, data_dir=str(write_tiny(tmp_path)), batch_size=4)
    assert (dm.input_shape, dm.num_classes, dm.class_names, dm.time_scale) == ((2,), 2, ("a", "b"), 6.0)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (3, 1, 4)
    item = dm.test_set[2]  # the 6-point series
    assert item.target_times.tolist() == [0, 1, 2, 3, 4, 5] and item.target_mask.all()
    assert 0 < item.mask.mean() < 1  # some values of the kept times are missing
    assert item.label == 0
    stacked = np.concatenate([s for s in read_ts(tmp_path / "Tiny" / "Tiny_TRAIN.ts")[0]])
    expected = (stacked[7:13] - np.nanmean(stacked, 0)) / (np.nanstd(stacked, 0) + 1e-6)
    torch.testing.assert_close(item.target_values, torch.tensor(expected, dtype=torch.float32))
    batch = collate_series(dm.test_set, dm.time_scale)
    assert batch.target_values.shape == (4, 6, 2) and batch.labels.tolist() == [0, 1, 0, 1]
    missing = dm.test_set[1]  # its third value of channel 0 is '?': never a target
    assert missing.target_mask[2].tolist() == [0.0, 1.0]


def test_extrapolation_sees_the_first_half_and_predicts_the_second(tmp_path):
    dm = UEADataModule(
        "Tiny", drop=0.0, task="extrapolation", val_size=0.0, data_dir=str(write_tiny(tmp_path))
    )
    dm.setup()
    item = dm.test_set[2]
    assert item.times.tolist() == [0, 1, 2] and item.target_times.tolist() == [3, 4, 5]


def test_a_missing_set_says_where_it_looked(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"Nope_TRAIN\.ts"):
        UEADataModule("Nope", data_dir=str(tmp_path))


@pytest.mark.skipif(
    importlib.util.find_spec("sktime") is None, reason="sktime (the [series] extra) is not installed"
)
@pytest.mark.parametrize(
    ("name", "sizes", "channels", "classes"),
    [
        ("JapaneseVowels", (270, 370), 12, 9),
        ("BasicMotions", (40, 40), 6, 4),
    ],
)
def test_the_sets_sktime_bundles(name, sizes, channels, classes):
    dm = UEADataModule(name, drop=0.3, val_size=0.2)
    dm.setup()
    assert (len(dm.train_set) + len(dm.val_set), len(dm.test_set)) == sizes
    assert dm.input_shape == (channels,) and dm.num_classes == classes
    kept = torch.cat([s.mask.flatten() for s in dm.train_set]).mean().item()
    observed_times = sum(len(s.times) for s in dm.train_set) / sum(len(s.target_times) for s in dm.train_set)
    assert 0.6 < kept * observed_times < 0.8  # 30% of the values dropped


def test_held_out_values_are_the_known_dropped_ones(tmp_path):
    dm = UEADataModule("Tiny", drop=0.5, val_size=0.0, data_dir=str(write_tiny(tmp_path)))
    dm.setup()
    for item in dm.test_set:
        observed = torch.zeros_like(item.target_mask)
        rows = torch.isin(item.target_times, item.times).nonzero().flatten()
        observed[rows] = item.mask
        assert torch.equal(item.target_heldout, item.target_mask * (1 - observed))


def test_series_without_labels_for_models_that_do_not_classify(tmp_path):
    dm = UEADataModule(name="Tiny", data_dir=str(write_tiny(tmp_path)), val_size=0.0, labels=False)
    dm.setup("fit")
    assert dm.num_classes == 0 and {item.label for item in dm.train_set} == {-1}
    assert UEADataModule(name="Tiny", data_dir=str(tmp_path), val_size=0.0).num_classes == 2

"""A run killed with SIGKILL and resumed from ``last.ckpt`` reaches the uninterrupted run's metrics.

The recipe is the real ``configs/anode-spheres2d.yaml`` (ANODE, dopri5 with the adjoint), run
for four epochs; its ``ResumeCheckpoint`` writes ``last.ckpt`` every 10 steps and every epoch.
The killed run is stopped in the middle of epoch 2, after a mid-epoch ``last.ckpt``, and
resumed with ``--ckpt_path``: every validation metric of every epoch after the kill must equal
the uninterrupted run's to the last digit.
"""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning import Trainer

from tests.conftest import CONFIGS
from zoo.data import FashionMNISTDataModule, SpheresDataModule
from zoo.data.order import EpochSampler
from zoo.resume import ResumeCheckpoint

RECIPE = CONFIGS / "anode-spheres2d.yaml"
EPOCHS = 4


def fit_command(save_dir, *extra):
    return [
        sys.executable,
        "-m",
        "zoo",
        "fit",
        "--config",
        str(RECIPE),
        "--trainer.max_epochs",
        str(EPOCHS),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.logger.init_args.save_dir",
        str(save_dir),
        *map(str, extra),
    ]


def validation_metrics(version_dir) -> dict[int, dict[str, str]]:
    """Every logged validation metric, by epoch, as the strings the CSV holds."""
    rows = list(csv.DictReader((version_dir / "metrics.csv").read_text().splitlines()))
    return {
        int(row["epoch"]): {key: value for key, value in row.items() if key.startswith("val_")}
        for row in rows
        if row.get("val_loss")
    }


def saved_position(path):
    """(epoch, batches done) of a ``last.ckpt``, or None while there is none."""
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    (key,) = [key for key in state["callbacks"] if key.startswith("ResumeCheckpoint")]
    return tuple(state["callbacks"][key]["position"])


def test_sigkilled_run_resumes_to_the_same_metrics(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    full = subprocess.run(
        fit_command(tmp_path / "full"), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert full.returncode == 0, full.stderr[-3000:]
    expected = validation_metrics(tmp_path / "full/anode-spheres2d/version_0")
    assert sorted(expected) == list(range(EPOCHS))

    run = subprocess.Popen(
        fit_command(tmp_path / "killed"),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = tmp_path / "killed/anode-spheres2d/version_0/checkpoints/last.ckpt"
    deadline = time.monotonic() + 300
    try:
        while (position := saved_position(last)) is None or position[0] < 2 or position[1] == 0:
            assert run.poll() is None, "the run ended before a mid-epoch last.ckpt of epoch 2"
            assert time.monotonic() < deadline, f"no mid-epoch last.ckpt in epoch 2; last position {position}"
            time.sleep(0.02)
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    assert position[0] == 2 and position[1] > 0  # killed mid-epoch
    killed = validation_metrics(tmp_path / "killed/anode-spheres2d/version_0")
    assert max(killed) < EPOCHS - 1

    resumed = subprocess.run(
        fit_command(tmp_path / "killed", "--ckpt_path", last),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = validation_metrics(tmp_path / "killed/anode-spheres2d/version_1")
    assert sorted(after) == list(range(2, EPOCHS))
    assert {epoch: expected[epoch] for epoch in after} == after
    assert {epoch: expected[epoch] for epoch in killed} == killed


def batches(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def assert_same_batches(first, second):
    assert len(first) == len(second)
    for (x1, y1), (x2, y2) in zip(first, second, strict=True):
        torch.testing.assert_close(x1, x2, rtol=0, atol=0)
        assert torch.equal(y1, y2)


@pytest.mark.parametrize("workers", [0, 2])
def test_augmented_batches_depend_on_seed_epoch_and_position_only(fmnist_data_dir, workers):
    """Random crops of Fashion-MNIST: the same batches with or without workers, and from any batch on."""

    def loader(num_workers, position):
        dm = FashionMNISTDataModule(
            data_dir=str(fmnist_data_dir),
            batch_size=16,
            val_size=59_936,
            num_workers=num_workers,
            augment=True,
        )
        dm.setup("fit")
        train = dm.train_dataloader()
        train.sampler.position = lambda: position
        return train

    reference = batches(loader(0, (3, 0)))
    assert len(reference) == 4
    assert_same_batches(batches(loader(workers, (3, 0))), reference)
    assert_same_batches(batches(loader(workers, (3, 2))), reference[2:])
    torch.manual_seed(12345)  # the global generator plays no part
    assert_same_batches(batches(loader(workers, (3, 1))), reference[1:])
    other_epoch = batches(loader(0, (4, 0)))
    assert not torch.equal(other_epoch[0][0], reference[0][0])


def test_every_epoch_has_its_own_order_outside_a_trainer():
    dm = SpheresDataModule(dim=2, batch_size=2000)
    dm.setup("fit")
    train = dm.train_dataloader()
    assert isinstance(train.sampler, EpochSampler)
    first, second = next(iter(train))[1], next(iter(train))[1]
    assert sorted(first.tolist()) == sorted(second.tolist()) and not torch.equal(first, second)


def test_last_checkpoint_knows_this_epochs_best(tmp_path):
    """``last.ckpt`` is written after ModelCheckpoint's update, whatever the callbacks' order."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from zoo.data import PeriodicDataModule
    from zoo.models import GRUDeltaT

    best = ModelCheckpoint(monitor="val_mse", filename="best-{epoch}")
    trainer = Trainer(max_epochs=3, default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=[ResumeCheckpoint(), best])
    data = PeriodicDataModule(num_train=32, num_val=16, num_test=8, batch_size=16, num_times=20)
    trainer.fit(GRUDeltaT(hidden_dim=8), datamodule=data)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    (state,) = [s for key, s in last["callbacks"].items() if key.startswith("ModelCheckpoint")]
    assert state["best_model_path"] == best.best_model_path and Path(best.best_model_path).exists()
    assert state["best_model_score"] == best.best_model_score

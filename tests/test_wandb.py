"""Runs logged to Weights & Biases (offline) and pictures sent to TensorBoard.

``zoo fit --config <recipe> --config configs/logger/wandb.yaml`` replaces the recipe's CSV logger
with a ``WandbLogger``. With ``WANDB_MODE=offline`` wandb sends nothing and writes the run into
``runs/wandb/offline-run-<time>-<id>/`` for a later ``wandb sync``. Offline, the metrics, the
summary and the config exist only in that folder's transaction log, ``run-<id>.wandb``: no
``wandb-summary.json`` or ``config.yaml`` is written until a sync. :func:`wandb_records` reads
that log (LevelDB's log format, as wandb writes it) into wandb's own protobuf ``Record`` messages.
"""

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import lightning
import matplotlib.image
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from tests.conftest import CONFIGS
from zoo.data import SpheresDataModule
from zoo.models import VectorODEClassifier
from zoo.pictures import FlowPictures

WANDB_FRAGMENT = CONFIGS / "logger" / "wandb.yaml"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The .wandb log: a 7-byte file header (":W&B", magic 0xBEE1, version 0), then 32 KiB blocks of
# chunks, each with a 7-byte header (CRC-32 of type and data, data length, type); a record is one
# FULL chunk or a FIRST, MIDDLES and a LAST; a block's tail too short for a header is padding.
BLOCK_SIZE = 32 * 1024
CHUNK_HEADER = struct.Struct("<IHB")
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_records(path: Path) -> list:
    """The protobuf records of a ``run-<id>.wandb`` file, in order; a damaged chunk fails its CRC."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B" and struct.unpack("<HB", data[4:7]) == (0xBEE1, 0), data[:7]
    records, pending, position = [], b"", 7
    while position + CHUNK_HEADER.size <= len(data):
        room = BLOCK_SIZE - position % BLOCK_SIZE
        if room < CHUNK_HEADER.size:
            position += room
            continue
        crc, length, kind = CHUNK_HEADER.unpack_from(data, position)
        chunk = data[position + CHUNK_HEADER.size:position + CHUNK_HEADER.size + length]
        position += CHUNK_HEADER.size + length
        if (crc, length, kind) == (0, 0, 0):  # zero padding at the end of a block
            continue
        assert zlib.crc32(bytes([kind]) + chunk) == crc, f"bad CRC at byte {position} of {path}"
        assert kind in (FULL, FIRST, MIDDLE, LAST), kind
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def items(update) -> dict:
    """A history row, summary or config update as ``{key: value}``; nested keys make nested dicts."""
    out = {}
    for item in update:
        *parents, last = [item.key] if item.key else item.nested_key
        folder = out
        for parent in parents:
            folder = folder.setdefault(parent, {})
        folder[last] = json.loads(item.value_json)
    return out


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory) -> dict:
    """One short ``zoo fit`` of the NODE spheres recipe with the wandb fragment, offline."""
    work = tmp_path_factory.mktemp("wandb-fit")
    wandb_home = work / "wandb-home"
    env = {
        **os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONWARNINGS": "ignore",
        # Nothing of wandb's outside the test's folder, and no credentials used.
        "WANDB_DIR": str(work), "WANDB_CONFIG_DIR": str(wandb_home / "config"),
        "WANDB_CACHE_DIR": str(wandb_home / "cache"), "WANDB_DATA_DIR": str(wandb_home / "data"),
        "WANDB_ARTIFACT_DIR": str(wandb_home / "artifacts"), "WANDB_API_KEY": "",
    }
    args = ["fit", "--config", CONFIGS / "node-spheres1d.yaml", "--config", WANDB_FRAGMENT,
            "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3",
            "--trainer.limit_val_batches", "2", "--trainer.log_every_n_steps", "1",
            "--trainer.enable_progress_bar", "false"]
    process = subprocess.run([sys.executable, "-m", "zoo", *map(str, args)], cwd=work, env=env,
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-4000:]
    (run_dir,) = (work / "runs" / "wandb").glob("offline-run-*")
    (log,) = run_dir.glob("run-*.wandb")
    records = wandb_records(log)
    kinds = {}
    for record in records:
        kinds.setdefault(record.WhichOneof("record_type"), []).append(record)
    return {"work": work, "run_dir": run_dir, "records": kinds}


def test_the_fragment_selects_wandb_and_keeps_the_recipe_name(offline_run):
    (run,) = offline_run["records"]["run"]
    assert run.run.project == "neural-ode-zoo"
    assert run.run.display_name == "node-spheres1d"  # the recipe's CSVLogger name carries over
    assert offline_run["run_dir"].name.endswith(f"-{run.run.run_id}")
    assert "exit" in offline_run["records"]  # the run was finished and flushed


def test_metrics_and_nfe_are_logged(offline_run):
    rows = [items(record.history.item) for record in offline_run["records"]["history"]]
    train = [row for row in rows if "train_loss_step" in row]
    assert [row["trainer/global_step"] for row in train] == [0, 1, 2]  # every step, as asked
    for row in train:
        assert row["train_nfe_forward_step"] > 0 and row["train_nfe_backward_step"] > 0
        assert 0 <= row["train_acc_step"] <= 1
    (val,) = [row for row in rows if "val_acc" in row]
    assert 0 <= val["val_acc"] <= 1 and val["val_loss"] > 0 and val["val_nfe_forward"] > 0
    summary = {}
    for record in offline_run["records"]["summary"]:
        summary.update(items(record.summary.update))
    assert summary["val_acc"] == val["val_acc"] and summary["val_nfe_forward"] == val["val_nfe_forward"]


def test_the_model_and_data_config_are_logged(offline_run):
    config = {}
    for record in offline_run["records"]["config"]:
        config.update(items(record.config.update))
    # The model's hyperparameters, from the recipe, with the data module's linked in ...
    assert config["augment_dim"] == 0 and config["input_shape"] == [1] and config["num_classes"] == 2
    assert config["dynamics"]["name"] == "concat_mlp" and config["dynamics"]["hidden_dims"] == [32, 32]
    assert config["solver"]["method"] == "dopri5" and config["solver"]["adjoint"] is True
    # ... and the data module's.
    assert config["dim"] == 1 and config["batch_size"] == 64
    # The whole resolved config, as LightningCLI saves it in config.yaml, command line included.
    full = config["config"]
    assert full["trainer"]["max_epochs"] == 1 and full["trainer"]["limit_train_batches"] == 3
    assert full["trainer"]["logger"]["class_path"] == "lightning.pytorch.loggers.WandbLogger"
    assert full["optimizer"]["class_path"] == "torch.optim.Adam"
    assert full["optimizer"]["init_args"]["lr"] == 1.0e-3 and full["seed_everything"] == 0
    assert full["model"]["init_args"]["solver"]["method"] == "dopri5"


def test_pictures_reach_wandb_and_the_run_folder(offline_run):
    rows = [items(record.history.item) for record in offline_run["records"]["history"]]
    run_id = offline_run["records"]["run"][0].run.run_id
    run_folder = offline_run["work"] / "runs" / "neural-ode-zoo" / run_id
    for key in ("pictures/flow", "pictures/decision_regions"):
        (logged,) = [row[key] for row in rows if key in row]
        assert logged["_type"] == "images/separated" and logged["count"] == 1
        (name,) = logged["filenames"]
        stored = offline_run["run_dir"] / "files" / name
        assert stored.read_bytes()[:8] == PNG_SIGNATURE
        # The same picture is kept beside the run's checkpoints, not in a folder every run shares.
        local = run_folder / "pictures" / f"{key.split('/')[1]}.png"
        assert stored.read_bytes() == local.read_bytes()
        assert [logged["width"], logged["height"]] == list(matplotlib.image.imread(local).shape[1::-1])
    assert (run_folder / "checkpoints" / "last.ckpt").is_file()
    assert not (offline_run["work"] / "runs" / "pictures").exists()


def test_importing_the_zoo_does_not_import_wandb():
    code = "import sys, zoo, zoo.cli, zoo.pictures; print('wandb' in sys.modules)"
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert process.stdout.strip() == "False", process.stderr[-2000:]


def test_pictures_reach_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    torch.manual_seed(0)
    model = VectorODEClassifier(input_shape=(2,), num_classes=2, solver={"method": "rk4", "step_size": 0.25},
                                dynamics={"name": "concat_mlp", "hidden_dims": [8]})
    datamodule = SpheresDataModule(dim=2, num_inner=20, num_outer=60, num_val=20, num_test=20, batch_size=40)
    logger = TensorBoardLogger(tmp_path)
    trainer = lightning.Trainer(
        max_steps=2, limit_val_batches=1, log_every_n_steps=1, logger=logger, enable_progress_bar=False,
        enable_checkpointing=False, enable_model_summary=False, accelerator="cpu", devices=1,
        callbacks=[FlowPictures(resolution=20)],
    )
    trainer.fit(model, datamodule=datamodule)
    pictures = Path(logger.log_dir) / "pictures"
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0})
    events.Reload()
    assert {"pictures/flow", "pictures/decision_regions"} <= set(events.Tags()["images"])
    for key in ("flow", "decision_regions"):
        (image,) = events.Images(f"pictures/{key}")
        assert image.step == trainer.global_step == 2
        height, width = matplotlib.image.imread(pictures / f"{key}.png").shape[:2]
        assert (image.width, image.height) == (width, height)
        assert image.encoded_image_string[:8] == PNG_SIGNATURE

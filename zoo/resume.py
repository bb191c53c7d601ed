"""Resumable training: a fresh ``last.ckpt`` every epoch and every N steps, written atomically.

:class:`ResumeCheckpoint` saves the whole training state (weights, optimizer, schedulers, loops,
callbacks, and torch's, NumPy's and Python's random generators) as ``last.ckpt`` at the end of
every training epoch and every ``every_n_train_steps`` steps, through a temporary file that is
flushed and renamed, so a run killed at any moment leaves the previous ``last.ckpt`` whole.
``zoo fit --config ... --ckpt_path <log dir>/checkpoints/last.ckpt`` then continues the run as
if it had not stopped: with the zoo's data modules (:mod:`zoo.data.order`) the remaining batches
of the epoch, in the same order and with the same augmentation.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import Checkpoint

from zoo.data.order import Position
from zoo.errors import SettingError
from zoo.hub.files import commit

LAST = "last.ckpt"


class ResumeCheckpoint(Checkpoint):
    """Keeps ``<dirpath>/last.ckpt`` fresh: at every epoch end and every ``every_n_train_steps`` steps.

    Args:
        every_n_train_steps: Also save after every this many optimizer steps; 0 saves at epoch
            ends only. Image recipes save every few minutes of training.
        dirpath: The folder; default ``<log dir>/checkpoints``, where ``ModelCheckpoint`` writes.
    """

    def __init__(self, every_n_train_steps: int = 0, dirpath: str | None = None) -> None:
        if isinstance(every_n_train_steps, bool) or not isinstance(every_n_train_steps, int) \
                or every_n_train_steps < 0:
            raise SettingError(f"every_n_train_steps must be an integer >= 0, got {every_n_train_steps!r}")
        self.every_n_train_steps = every_n_train_steps
        self.dirpath = dirpath
        #: Where the restored run's first pass over the data starts (set when resuming).
        self.pending_position: Position | None = None

    def path(self, trainer: Trainer) -> Path:
        """The ``last.ckpt`` file: in ``dirpath``, else where the run's ``ModelCheckpoint`` writes."""
        if self.dirpath:
            return Path(self.dirpath) / LAST
        writer = next((c for c in trainer.checkpoint_callbacks if getattr(c, "dirpath", None)), None)
        if writer is not None:
            return Path(writer.dirpath) / LAST
        if not trainer.loggers:
            return Path(trainer.default_root_dir) / "checkpoints" / LAST
        logger = trainer.loggers[0]  # as ModelCheckpoint: <save_dir>/<name>/<version>/checkpoints
        version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
        folder = Path(logger.save_dir or trainer.default_root_dir, str(logger.name), version)
        return folder / "checkpoints" / LAST

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Runs last among the callbacks, so what it saves at an epoch's end is after the others' update.

        ``ModelCheckpoint`` picks this epoch's best in its own ``on_train_epoch_end``, which
        Lightning calls after the other callbacks' (it monitors the epoch's metrics); saved
        before that, a resumed run would restore the best of the epoch before. So this is a
        ``Checkpoint`` too (called in that second round), and the last of them.
        """
        # a new list: the one Lightning is iterating over to call ``setup`` stays as it is
        trainer.callbacks = [callback for callback in trainer.callbacks if callback is not self] + [self]

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        steps = self.every_n_train_steps
        if steps and trainer.global_step % steps == 0 and batch_idx + 1 < trainer.num_training_batches:
            self._position = (trainer.current_epoch, batch_idx + 1)
            self._save(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._position = (trainer.current_epoch + 1, 0)
        self._save(trainer)

    def _save(self, trainer: Trainer) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        path = self.path(trainer)
        tmp = path.with_name(f".{LAST}.part")
        if trainer.is_global_zero:
            path.parent.mkdir(parents=True, exist_ok=True)
        # every rank takes part; the strategy writes on rank zero
        trainer.save_checkpoint(tmp, weights_only=False)
        if trainer.is_global_zero:
            commit(tmp, path)

    def state_dict(self) -> dict[str, Any]:
        return {"position": list(getattr(self, "_position", (0, 0))), "rng": _random_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.pending_position = tuple(state_dict["position"])
        _restore_random_states(state_dict["rng"])


def resume_position(trainer: Trainer) -> Position:
    """Where ``trainer``'s next pass over the training data starts: (epoch, batches to skip).

    The position a :class:`ResumeCheckpoint` restored, once; else the trainer's current epoch
    from its start.
    """
    for callback in trainer.callbacks:
        if isinstance(callback, ResumeCheckpoint) and callback.pending_position is not None:
            position, callback.pending_position = callback.pending_position, None
            return position
    return trainer.current_epoch, 0


def _random_states() -> dict[str, Any]:
    """torch's, NumPy's and Python's global generators, as data ``torch.load(weights_only=True)`` reads."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": _plain(random.getstate()),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_random_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(_tuples(states["python"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _plain(value: Any) -> Any:
    return [_plain(item) for item in value] if isinstance(value, tuple | list) else value


def _tuples(value: Any) -> Any:
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value

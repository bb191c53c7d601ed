"""A callback that logs how long the training steps take, for benchmarks and recipes alike."""

from __future__ import annotations

import time

from lightning import Callback, LightningModule, Trainer


class StepTimes(Callback):
    """Logs ``train_step_s`` (the mean wall time of a training step) and ``train_steps_s`` per epoch.

    A step is timed from ``on_train_batch_start`` to ``on_train_batch_end``: forward, backward
    and optimizer step, without data loading or validation.
    """

    def __init__(self) -> None:
        self._started = 0.0
        self._total = 0.0
        self._steps = 0

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._total, self._steps = 0.0, 0

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, index) -> None:
        self._total += time.perf_counter() - self._started
        self._steps += 1

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._steps:
            pl_module.log("train_step_s", self._total / self._steps, on_epoch=True, batch_size=1)
            pl_module.log("train_steps_s", self._total, on_epoch=True, batch_size=1)

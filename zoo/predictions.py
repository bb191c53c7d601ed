"""``zoo predict`` writers: series' predictive mean and spread, flows' likelihoods and samples.

:class:`SeriesPredictions` is a Lightning prediction writer. For every predict batch of series it
saves ``predictions/batch=NNNN.npz`` in the run's folder with:

- ``times``: the target times, in the data set's own unit (multiplied back by its ``time_scale``);
- ``mean``: the predictive mean;
- ``q05``, ``q50``, ``q95``: quantiles of the predictive samples, where the model gives samples;
- ``target`` and ``target_mask``: the known values there.

Shapes are (B, S, D) on the batch's union of target times.

:class:`FlowPredictions` saves, per predict batch, ``log_prob`` (B,) of the batch's points in
nats and ``samples`` (B, D), as many points drawn from the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from zoo.data.series import SeriesBatch
from zoo.pictures import run_folder


class _BatchWriter(BasePredictionWriter):
    """Writes per predict batch into ``predictions/`` of the run's folder (found on every process)."""

    def __init__(self) -> None:
        super().__init__(write_interval="batch")
        self.folder: Path | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "predict":
            self.folder = run_folder(trainer) / "predictions"


class SeriesPredictions(_BatchWriter):
    """Writes each predict batch's predictive mean and quantiles as ``predictions/batch=NNNN.npz``."""

    def write_on_batch_end(self, trainer: Trainer, pl_module: LightningModule, prediction: Any,
                           batch_indices: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if not (trainer.is_global_zero and self.folder is not None and isinstance(batch, SeriesBatch)):
            return
        scale = getattr(trainer.datamodule, "time_scale", 1.0)
        arrays = {
            "times": (batch.target_times * scale).cpu().numpy(),
            "mean": prediction["mean"].cpu().numpy(),
            "target": batch.target_values.cpu().numpy(),
            "target_mask": batch.target_mask.cpu().numpy(),
        }
        if "samples" in prediction:
            levels = torch.tensor([0.05, 0.5, 0.95], dtype=prediction["samples"].dtype,
                                  device=prediction["samples"].device)
            quantiles = torch.quantile(prediction["samples"], levels, dim=0).cpu().numpy()
            arrays.update(q05=quantiles[0], q50=quantiles[1], q95=quantiles[2])
        self.folder.mkdir(parents=True, exist_ok=True)
        np.savez(self.folder / f"batch={batch_idx:04d}.npz", **arrays)


class FlowPredictions(_BatchWriter):
    """Writes each predict batch's log-likelihoods and samples as ``predictions/batch=NNNN.npz``."""

    def write_on_batch_end(self, trainer: Trainer, pl_module: LightningModule, prediction: Any,
                           batch_indices: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if not (trainer.is_global_zero and self.folder is not None and isinstance(prediction, dict)
                and "samples" in prediction and "log_prob" in prediction):
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        arrays = {key: prediction[key].detach().cpu().numpy() for key in ("log_prob", "samples")}
        np.savez(self.folder / f"batch={batch_idx:04d}.npz", **arrays)

"""A callback recording what each process of a (DDP) training saw and computed.

``tests/test_ddp.py`` adds :class:`DDPProbe` to a Trainer, in Python or by class path on the
``zoo`` command line (``tests`` must then be importable: put the repository root on
``PYTHONPATH``). Every process writes ``rank<N>.pt`` into ``out_dir``
at the end of fitting, for the test to recompute the same steps in one process and compare.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


def _cpu(value: Any) -> Any:
    """``value`` with its tensors detached, cloned and moved to the CPU (in dicts, lists, tuples)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: _cpu(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_cpu(item) for item in value)
    return value


def _nfe(pl_module: LightningModule) -> tuple[int, int]:
    """Forward and backward evaluations of the module's ODE blocks, summed (0, 0 without any)."""
    blocks = pl_module.ode_blocks() if hasattr(pl_module, "ode_blocks") else []
    return sum(b.nfe_forward for b in blocks), sum(b.nfe_backward for b in blocks)


class DDPProbe(Callback):
    """Records one process's batches, gradients, NFE, logged metrics and checkpoint writes.

    The record, saved as ``<out_dir>/rank<global rank>.pt`` by :meth:`on_fit_end`, is a dict:

    - ``rank``, ``world_size``;
    - ``states``: the module's state dict before each training step;
    - ``train_batches``: the ``(inputs, labels)`` of every training step, as this process saw
      them (after the distributed sampler and any augmentation);
    - ``grads``: per step, each parameter's gradient right before the optimizer step, that is
      after DDP's all-reduce;
    - ``train_loss``: per step, this process's loss (the mean over its batch);
    - ``train_nfe``: per step, the ``(forward, backward)`` evaluations of the ODE blocks;
    - ``step_seconds``: per step, the wall time from the batch's start to the end of the
      optimizer step;
    - ``val_batches`` and ``val_nfe``: the validation batches and their forward evaluations
      (the sanity check excluded);
    - ``val_metrics`` and ``train_metrics``: ``trainer.callback_metrics`` as floats, at the end
      of the last validation and of training;
    - ``writes``: the checkpoint paths that this process itself handed to the checkpoint IO.

    Args:
        out_dir: Folder for the records; created if missing.
    """

    def __init__(self, out_dir: str) -> None:
        super().__init__()
        self.out_dir = Path(out_dir)
        self.record: dict[str, Any] = {
            "states": [], "train_batches": [], "grads": [], "train_loss": [], "train_nfe": [],
            "step_seconds": [], "val_batches": [], "val_nfe": [], "val_metrics": {},
            "train_metrics": {}, "writes": [],
        }
        self._step_start = 0.0

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Wraps the checkpoint IO's ``save_checkpoint`` to note each file this process writes."""
        io = trainer.strategy.checkpoint_io
        if getattr(io.save_checkpoint, "_probe_wrapped", False):
            return
        original, writes = io.save_checkpoint, self.record["writes"]

        def save_checkpoint(checkpoint, path, storage_options=None):
            writes.append(str(Path(path).resolve()))
            return original(checkpoint, path, storage_options=storage_options)

        save_checkpoint._probe_wrapped = True
        io.save_checkpoint = save_checkpoint

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self.record["states"].append(_cpu(dict(pl_module.state_dict())))
        self.record["train_batches"].append(_cpu(tuple(batch)))
        self._step_start = time.perf_counter()

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer) -> None:
        self.record["grads"].append(
            {name: None if p.grad is None else _cpu(p.grad) for name, p in pl_module.named_parameters()}
        )
        self.record["train_nfe"].append(_nfe(pl_module))

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.record["step_seconds"].append(time.perf_counter() - self._step_start)
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.record["train_loss"].append(float(loss))

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if not trainer.sanity_checking:
            self.record["val_batches"].append(_cpu(tuple(batch)))
            self.record["val_nfe"].append(_nfe(pl_module)[0])

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self.record["val_metrics"] = _floats(trainer.callback_metrics)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.record["train_metrics"] = _floats(trainer.callback_metrics)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Saves this process's record."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        record = {**self.record, "rank": trainer.global_rank, "world_size": trainer.world_size}
        torch.save(record, self.out_dir / f"rank{trainer.global_rank}.pt")


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {name: float(value) for name, value in metrics.items()}


def load_records(out_dir: str | Path) -> list[dict[str, Any]]:
    """The records of every process in ``out_dir``, by rank."""
    paths = sorted(Path(out_dir).glob("rank*.pt"), key=lambda path: int(path.stem[4:]))
    return [torch.load(path, weights_only=False) for path in paths]

"""The classification step that ODE-Net, its residual baseline, ANODE and the toy classifiers share."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812
from torchmetrics.classification import MulticlassAccuracy

from zoo.models.base import ZooModule

STAGES = ("train", "val", "test")


class Classifier(ZooModule):
    """Cross-entropy classification around ``self.net``, a plain ``nn.Module`` returning class logits.

    Logs ``{stage}_loss`` and ``{stage}_acc`` for train/val/test, and the NFE of the network's
    solves (:class:`~zoo.models.base.ZooModule`). Subclasses name in ``head`` the layer whose
    shape depends on ``num_classes``.

    Under data-parallel training (DDP) every logged value is reduced over the processes: the
    losses and NFE are averaged (``sync_dist``), also per training step, and the accuracies are
    torchmetrics metrics whose epoch values count the predictions of all processes. Only
    ``train_acc_step`` is a process's own batch accuracy (the logger, on process 0, writes
    process 0's).

    Args:
        num_classes: Number of classes (linked from the DataModule by the CLI).
    """

    net: nn.Module

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.accuracy = nn.ModuleDict(
            {f"{stage}_acc": MulticlassAccuracy(num_classes, average="micro") for stage in STAGES}
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of a batch of inputs."""
        return self.net(x)

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        inputs, labels = batch
        logits = self(inputs)
        loss = F.cross_entropy(logits, labels)
        accuracy = self.accuracy[f"{stage}_acc"]
        accuracy(logits, labels)
        on_step = stage == "train"
        self.log(f"{stage}_loss", loss, on_step=on_step, on_epoch=True, sync_dist=True)
        self.log(f"{stage}_acc", accuracy, on_step=on_step, on_epoch=True, prog_bar=True)
        return loss

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        """Class probabilities of a batch (of inputs, or of (inputs, labels) pairs)."""
        inputs = batch[0] if isinstance(batch, list | tuple) else batch
        return self(inputs).softmax(dim=-1)

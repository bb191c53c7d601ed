"""The classification step that ODE-Net, its residual baseline and ANODE share."""

from __future__ import annotations

import torch
from lightning import LightningModule
from torch import nn
from torch.nn import functional as F  # noqa: N812
from torchmetrics.classification import MulticlassAccuracy

from zoo.hub.weights import load_state, read_state_dict, resolve
from zoo.ode import ODEBlock

STAGES = ("train", "val", "test")


class Classifier(LightningModule):
    """A thin LightningModule around ``self.net``, a plain ``nn.Module`` returning class logits.

    Logs ``{stage}_loss`` and ``{stage}_acc`` for train/val/test, and for networks with ODE
    blocks ``{stage}_nfe_forward`` and ``train_nfe_backward``. Without an ``optimizer`` in the
    config, trains with Adam at 1e-3.

    Under data-parallel training (DDP) every logged value is reduced over the processes: the
    losses and NFE are averaged (``sync_dist``), also per training step, and the accuracies are
    torchmetrics metrics whose epoch values count the predictions of all processes. Only
    ``train_acc_step`` is a process's own batch accuracy (the logger, on process 0, writes
    process 0's). The ODE blocks' own NFE counters count their process's solves only.

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
        """Class logits of a batch of images."""
        return self.net(x)

    def load_weights(self, source: str | None) -> None:
        """Loads pretrained weights for fine-tuning; subclasses call it last in ``__init__``.

        Args:
            source: A zoo name, a safetensors path or a URL; ``None`` does nothing. A head for
                another number of classes is re-initialized with a warning; any other mismatch
                fails with the keys named.
        """
        if source is None:
            return
        path, _ = resolve(source)
        load_state(self, read_state_dict(path), repr(source), new_head=self.head_parameter_names())

    def head_parameter_names(self) -> list[str]:
        """State-dict keys of the last linear layer: the head that depends on ``num_classes``."""
        linear = [name for name, module in self.named_modules() if isinstance(module, nn.Linear)]
        return [f"{linear[-1]}.weight", f"{linear[-1]}.bias"] if linear else []

    def ode_blocks(self) -> list[ODEBlock]:
        """The network's ODE blocks, whose evaluation counts are logged."""
        return [module for module in self.net.modules() if isinstance(module, ODEBlock)]

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        accuracy = self.accuracy[f"{stage}_acc"]
        accuracy(logits, labels)
        on_step = stage == "train"
        self.log(f"{stage}_loss", loss, on_step=on_step, on_epoch=True, sync_dist=True)
        self.log(f"{stage}_acc", accuracy, on_step=on_step, on_epoch=True, prog_bar=True)
        blocks = self.ode_blocks()
        if blocks:
            nfe = float(sum(block.nfe_forward for block in blocks))
            self.log(f"{stage}_nfe_forward", nfe, on_step=on_step, on_epoch=True, prog_bar=True,
                     sync_dist=True)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        """Class probabilities of a batch (of images, or of (images, labels) pairs)."""
        images = batch[0] if isinstance(batch, list | tuple) else batch
        return self(images).softmax(dim=-1)

    def on_after_backward(self) -> None:
        """Logs the backward pass's evaluations of every ODE block."""
        blocks = self.ode_blocks()
        if blocks:
            nfe = float(sum(block.nfe_backward for block in blocks))
            self.log("train_nfe_backward", nfe, on_step=True, on_epoch=True, prog_bar=True, sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam at 1e-3; the configs replace it with their ``optimizer`` and ``lr_scheduler``."""
        return torch.optim.Adam(self.parameters(), lr=1e-3)

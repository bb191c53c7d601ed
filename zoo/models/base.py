"""``ZooModule``: what every family's LightningModule shares, whatever its loss and its head.

Pretrained weights for fine-tuning (``weights=``), hyperparameters saved as plain data from the
resolved constructor arguments, a named head that may be re-initialized for another number of
outputs, and the function evaluations of every solve of a step, forward and backward, logged.
A family subclasses it with its own ``step``; :class:`~zoo.models.classifier.Classifier` is the
cross-entropy one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from lightning import LightningModule

from zoo.hub.weights import load_state, read_state_dict, resolve
from zoo.models.hparams import save_plain_hyperparameters
from zoo.ode import ODEBlock, SolveLog, recording


class ZooModule(LightningModule):
    """A thin LightningModule around a plain network, with loading, logging and the NFE of its solves.

    Subclasses set ``head`` (the dotted name of the submodule whose shape depends on the number
    of outputs) and implement ``step(batch, stage) -> loss``; ``training_step``,
    ``validation_step`` and ``test_step`` call it with the solves it makes recorded, and log
    ``{stage}_nfe_forward`` (and ``train_nfe_backward`` after the backward pass): the sums over
    every solve of the step. Under data-parallel training the logged NFE are averaged over the
    processes (``sync_dist``). Without an ``optimizer`` in the config, trains with Adam at 1e-3.
    """

    head: ClassVar[str | None] = None

    def __init__(self) -> None:
        super().__init__()
        self._train_solves, self._train_batch_size = SolveLog(), None

    def save_arguments(self, values: Mapping[str, Any]) -> None:
        """Saves the resolved constructor arguments ``values`` as the hyperparameters (plain data)."""
        save_plain_hyperparameters(self, values)

    def load_weights(self, source: str | None) -> None:
        """Loads pretrained weights for fine-tuning; subclasses call it last in ``__init__``.

        Args:
            source: A zoo name, a safetensors path or a URL; ``None`` does nothing. A ``head``
                of another shape is re-initialized with a warning; any other mismatch fails with
                the keys named.
        """
        if source is None:
            return
        path, _ = resolve(source)
        load_state(self, read_state_dict(path), repr(source), new_head=self.head_parameter_names())

    def head_parameter_names(self) -> list[str]:
        """State-dict keys of ``head``, the part that may take another number of outputs."""
        if self.head is None:
            return []
        return [f"{self.head}.{key}" for key in self.get_submodule(self.head).state_dict()]

    def ode_blocks(self) -> list[ODEBlock]:
        """The network's ODE blocks."""
        return [module for module in self.modules() if isinstance(module, ODEBlock)]

    def step(self, batch: Any, stage: str) -> torch.Tensor:
        """The loss of ``batch`` in ``stage`` ("train", "val" or "test"), its metrics logged."""
        raise NotImplementedError

    def _recorded_step(self, batch: Any, stage: str) -> torch.Tensor:
        with recording() as solves:
            loss = self.step(batch, stage)
        if len(solves):
            on_step = stage == "train"
            self.log(f"{stage}_nfe_forward", float(solves.nfe_forward), on_step=on_step, on_epoch=True,
                     prog_bar=True, sync_dist=True, batch_size=_batch_size(batch))
        if stage == "train":
            self._train_solves, self._train_batch_size = solves, _batch_size(batch)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._recorded_step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._recorded_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._recorded_step(batch, "test")

    def on_after_backward(self) -> None:
        """Logs the backward evaluations of the training step's solves."""
        solves = self._train_solves
        if len(solves):
            self.log("train_nfe_backward", float(solves.nfe_backward), on_step=True, on_epoch=True,
                     prog_bar=True, sync_dist=True, batch_size=self._train_batch_size)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam at 1e-3; the configs replace it with their ``optimizer`` and ``lr_scheduler``."""
        return torch.optim.Adam(self.parameters(), lr=1e-3)


class SeededEvaluation:
    """Validation and test draw their random numbers from a fixed seed, then put the stream back.

    A mixin for LightningModules whose metrics use samples (posterior draws, predictive noise):
    their validation and test metrics become a function of the weights and the data alone, so a
    card's ``metrics_command`` reproduces the card and two checkpoints are compared on the same
    draws. Training's random stream is restored afterwards, so validating never changes what
    training draws next.
    """

    evaluation_seed = 0

    def _seed_evaluation(self) -> None:
        self._training_rng = (
            torch.random.get_rng_state(),
            torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        )
        torch.manual_seed(self.evaluation_seed)

    def _restore_training_rng(self) -> None:
        cpu, cuda = self.__dict__.pop("_training_rng", (None, None))
        if cpu is not None:
            torch.random.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)

    def on_validation_epoch_start(self) -> None:
        self._seed_evaluation()

    def on_validation_epoch_end(self) -> None:
        self._restore_training_rng()

    def on_test_epoch_start(self) -> None:
        self._seed_evaluation()

    def on_test_epoch_end(self) -> None:
        self._restore_training_rng()


def _batch_size(batch: Any) -> int | None:
    """Samples in a batch: (inputs, labels), or a batch object with a length; None: Lightning infers."""
    if isinstance(batch, list | tuple) and batch and isinstance(batch[0], torch.Tensor):
        return len(batch[0])
    return len(batch) if hasattr(batch, "__len__") and not isinstance(batch, list | tuple | dict) else None

"""The loaders that every zoo DataModule shares: a resumable seeded order, no empty validation loader."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Sampler

from zoo.data.order import EpochSampler, Position, SeededSamples


class SplitDataModule(LightningDataModule):
    """A DataModule with ``train_set``, ``val_set`` and ``test_set``, made in ``setup``.

    Subclasses set ``batch_size``, ``seed``, ``num_workers`` and the three sets, and say in
    :attr:`has_validation` whether there is a validation split.
    """

    batch_size: int
    seed: int
    num_workers: int
    train_set: Dataset | None
    val_set: Dataset | None
    test_set: Dataset | None

    #: Passes over the training set made outside a trainer (each gets the next epoch's order).
    _passes: int = 0
    #: How samples become a batch; None: torch's default.
    collate: Callable | None = None

    @property
    def has_validation(self) -> bool:
        """Whether the validation split is non-empty."""
        return True

    @property
    def random_train_transforms(self) -> bool:
        """Whether training samples are randomly augmented (each is then seeded on its own)."""
        return False

    def _loader(self, dataset: Dataset | None, sampler: Sampler | None = None) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() with the matching stage before asking for loaders")
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            collate_fn=self.collate,
            generator=torch.Generator().manual_seed(self.seed),  # worker seeds: not the global stream
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches: the order of each epoch and each augmentation fixed by ``seed``.

        A run resumed from a checkpoint, also one saved mid-epoch, sees the batches that the
        uninterrupted run would have seen (:mod:`zoo.data.order`).
        """
        if self.train_set is None:
            raise RuntimeError("call setup() with the matching stage before asking for loaders")
        sampler = EpochSampler(len(self.train_set), self.seed, self.batch_size, self._train_position)
        return self._loader(SeededSamples(self.train_set, self.seed, self.random_train_transforms), sampler)

    def _train_position(self) -> Position:
        from zoo.resume import resume_position  # Lightning's trainer, only when training

        trainer = self.trainer
        if trainer is not None:
            return resume_position(trainer)
        self._passes += 1
        return self._passes - 1, 0

    def val_dataloader(self) -> DataLoader | Sequence[DataLoader]:
        """Validation batches; an empty list when there is no validation split."""
        return self._loader(self.val_set) if self.has_validation else []

    def test_dataloader(self) -> DataLoader:
        """Batches of the test split."""
        return self._loader(self.test_set)

    def predict_dataloader(self) -> DataLoader:
        """Batches of the test split (inputs and labels)."""
        return self._loader(self.test_set)

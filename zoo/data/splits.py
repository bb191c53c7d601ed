"""The loaders that every zoo DataModule shares: seeded shuffling, no empty validation loader."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset


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

    @property
    def has_validation(self) -> bool:
        """Whether the validation split is non-empty."""
        return True

    def _loader(self, dataset: Dataset | None, shuffle: bool = False) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() with the matching stage before asking for loaders")
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches, in an order fixed by ``seed``."""
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader | Sequence[DataLoader]:
        """Validation batches; an empty list when there is no validation split."""
        return self._loader(self.val_set) if self.has_validation else []

    def test_dataloader(self) -> DataLoader:
        """Batches of the test split."""
        return self._loader(self.test_set)

    def predict_dataloader(self) -> DataLoader:
        """Batches of the test split (inputs and labels)."""
        return self._loader(self.test_set)

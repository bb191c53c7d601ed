"""Fashion-MNIST as integer pixels, for the image flows (FFJORD's multiscale MNIST setting).

Grathwohl et al. 2019 (FFJORD), section 4.1, model MNIST's 8-bit pixels with uniform
dequantization and report bits per dimension; this is the same on Fashion-MNIST (Xiao et al.
2017), whose files are here (the Debian package ``dataset-fashion-mnist``). Batches are ``(x,)``
float32 tensors (B, 1, 28, 28) of the pixel values 0-255, held in memory; no labels.
"""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from zoo.data.images import FashionMNISTDataModule
from zoo.data.splits import SplitDataModule
from zoo.errors import SettingError
from zoo.families import register_datamodule


@register_datamodule
class FashionMNISTPixelsDataModule(SplitDataModule):
    """Fashion-MNIST's 70,000 grey 28x28 images as integer pixels of 256 levels.

    Args:
        data_dir: Folder holding the datasets (as :class:`~zoo.data.FashionMNISTDataModule`).
        batch_size: Images per batch.
        val_size: Images of the official train set held out for validation (seeded).
        test_size: Images of the official 10,000-image test set evaluated (its first ones);
            None: all. Exact-solve evaluation of an image flow is slow on a CPU.
        seed: Seed of the split and of the training order.
        num_workers: Loader worker processes.
    """

    input_shape = (1, 28, 28)
    num_classes = 0
    levels = 256

    def __init__(self, data_dir: str | None = None, batch_size: int = 64, val_size: int = 5000,
                 test_size: int | None = None, seed: int = 0, num_workers: int = 0) -> None:
        super().__init__()
        for name, value in (("batch_size", batch_size), ("val_size", val_size), ("test_size", test_size)):
            if value is not None and (isinstance(value, bool) or value < 1):
                raise SettingError(f"{name} must be a positive integer, got {value!r}")
        self.files = FashionMNISTDataModule(data_dir=data_dir, val_size=0, num_workers=0)
        self.batch_size, self.val_size, self.test_size = batch_size, val_size, test_size
        self.seed, self.num_workers = seed, num_workers
        self.train_set = self.val_set = self.test_set = None
        self.save_hyperparameters()
        self.display_name = "Fashion-MNIST pixels"
        self.preprocessing = {"inputs": "integer pixels 0-255, (1, 28, 28)", "normalize": None}

    def prepare_data(self) -> None:
        """Makes sure the files exist (unpacked from the Debian package, or downloaded)."""
        self.files.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train = self.files._load(train=True).data[:, None].float()
        test = self.files._load(train=False).data[:, None].float()
        if self.val_size >= len(train):
            raise SettingError(f"val_size={self.val_size} leaves no training images of {len(train)}")
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.seed))
        self.val_set = TensorDataset(train[order[: self.val_size]])
        self.train_set = TensorDataset(train[order[self.val_size :]])
        self.test_set = TensorDataset(test[: self.test_size])

"""Data modules of the zoo."""

from zoo.data.images import (
    CIFAR10DataModule,
    DataNotFoundError,
    FashionMNISTDataModule,
    ImageDataModule,
    MNISTDataModule,
)

__all__ = [
    "CIFAR10DataModule",
    "DataNotFoundError",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "MNISTDataModule",
]

"""Data modules of the zoo."""

from zoo.data.images import (
    CIFAR10DataModule,
    DataNotFoundError,
    FashionMNISTDataModule,
    ImageDataModule,
    MNISTDataModule,
)
from zoo.data.toys import (
    EllipsesDataModule,
    PeaksDataModule,
    SpheresDataModule,
    SwissRollDataModule,
    ToyDataModule,
)

__all__ = [
    "CIFAR10DataModule",
    "DataNotFoundError",
    "EllipsesDataModule",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "MNISTDataModule",
    "PeaksDataModule",
    "SpheresDataModule",
    "SwissRollDataModule",
    "ToyDataModule",
]

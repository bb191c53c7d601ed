"""Data modules of the zoo."""

from zoo.data.densities import Density2dDataModule, DigitsDataModule
from zoo.data.image_densities import FashionMNISTPixelsDataModule
from zoo.data.images import (
    CIFAR10DataModule,
    DataNotFoundError,
    FashionMNISTDataModule,
    ImageDataModule,
    MNISTDataModule,
)
from zoo.data.series import Series, SeriesBatch, collate_series
from zoo.data.series_sets import PeriodicDataModule, SeriesDataModule, SpiralsDataModule
from zoo.data.toys import (
    EllipsesDataModule,
    PeaksDataModule,
    SpheresDataModule,
    SwissRollDataModule,
    ToyDataModule,
)
from zoo.data.uea import UEADataModule

__all__ = [
    "CIFAR10DataModule",
    "DataNotFoundError",
    "Density2dDataModule",
    "DigitsDataModule",
    "EllipsesDataModule",
    "FashionMNISTDataModule",
    "FashionMNISTPixelsDataModule",
    "ImageDataModule",
    "MNISTDataModule",
    "PeaksDataModule",
    "PeriodicDataModule",
    "Series",
    "SeriesBatch",
    "SeriesDataModule",
    "SpheresDataModule",
    "SpiralsDataModule",
    "SwissRollDataModule",
    "ToyDataModule",
    "UEADataModule",
    "collate_series",
]

"""A training order that a killed run can resume exactly: seeded per epoch, augmentation per sample.

Two things decide which inputs a training step sees: the order of the samples and the random
augmentation of each. Here both are functions of the data module's seed, the epoch and the
sample alone, never of a random stream that runs on from the start of training:

* :class:`EpochSampler` draws the order of epoch ``e`` from ``seed`` and ``e``, and starts it at
  any batch, so that a run resumed from a mid-epoch checkpoint sees the remaining batches of the
  same order;
* :class:`SeededSamples` draws each sample's augmentation from ``seed``, ``e`` and the sample's
  index, so that it does not depend on the worker that loads it or on what ran before.

Where to start is asked, at the start of each pass, from a ``position`` callable: the data
module answers from the trainer (see :func:`zoo.resume.resume_position`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import Dataset, Sampler

#: Where a pass over the training set starts: (epoch, batches of that epoch already trained on).
Position = tuple[int, int]


class EpochSampler(Sampler[tuple[int, int]]):
    """A shuffled order of ``size`` samples per epoch, as ``(epoch, index)`` pairs.

    Args:
        size: Number of samples.
        seed: The order of epoch ``e`` is ``randperm(size)`` on a generator seeded with
            ``(seed, e)``.
        batch_size: Samples per batch (to skip whole batches when resuming).
        position: Called at the start of each pass; returns the epoch and the number of its
            batches to skip.
    """

    def __init__(self, size: int, seed: int, batch_size: int, position: Callable[[], Position]) -> None:
        self.size = size
        self.seed = seed
        self.batch_size = batch_size
        self.position = position

    def order(self, epoch: int) -> torch.Tensor:
        """The sample indices of ``epoch``, in training order."""
        generator = torch.Generator().manual_seed(_mix(self.seed, epoch))
        return torch.randperm(self.size, generator=generator)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, done = self.position()
        for index in self.order(epoch)[done * self.batch_size:].tolist():
            yield epoch, index

    def __len__(self) -> int:
        return self.size


class SeededSamples(Dataset):
    """``dataset`` indexed by ``(epoch, index)``, each sample's random transforms seeded by both.

    Args:
        dataset: The training set (its transforms draw from torch's global generator).
        seed: The data module's seed.
        random: Whether the transforms are random; if not, samples are read as they are.
    """

    def __init__(self, dataset: Dataset, seed: int, random: bool) -> None:
        self.dataset = dataset
        self.seed = seed
        self.random = random

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        if not self.random:
            return self.dataset[index]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_mix(self.seed, epoch, index))
            return self.dataset[index]

    def __len__(self) -> int:
        return len(self.dataset)


def _mix(*numbers: int) -> int:
    """A 63-bit seed from a few integers (a splitmix64-style hash, the same on every platform)."""
    state = 0x9E3779B97F4A7C15
    for number in numbers:
        state = (state ^ (number & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        state = (state ^ (state >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return state >> 1

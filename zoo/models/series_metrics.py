"""Calibration of a predictive distribution given by samples: interval coverage and CRPS.

None of the reference implementations of Latent ODEs reports these; a model whose mean is right
but whose spread is wrong gets a good MSE and a bad coverage. Both are masked means over the
known target values, from samples of the predictive distribution (posterior samples decoded,
plus the observation noise).
"""

from __future__ import annotations

import torch


def interval_coverage(
    samples: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, level: float = 0.9
) -> torch.Tensor:
    """The fraction of known targets inside the central ``level`` interval of the samples.

    Args:
        samples: (K, B, S, D) predictive samples.
        target: (B, S, D) true values (anything where ``mask`` is 0).
        mask: (B, S, D), 1 where the target is known.
        level: The interval's probability; 0.9 is the 5%-95% interval.
    """
    tail = (1 - level) / 2
    low, high = torch.quantile(samples, torch.tensor([tail, 1 - tail], dtype=samples.dtype), dim=0)
    inside = (target >= low) & (target <= high)
    return _masked_mean(inside.to(samples.dtype), mask)


def crps(samples: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The continuous ranked probability score of the samples, a masked mean (lower is better).

    ``E|X - y| - E|X - X'| / 2`` with X, X' independent draws of the predictive distribution,
    estimated from the K samples (the pairs' term over all K^2 pairs, K > 1).
    """
    error = (samples - target).abs().mean(dim=0)
    spread = (samples.unsqueeze(0) - samples.unsqueeze(1)).abs().mean(dim=(0, 1))
    return _masked_mean(error - 0.5 * spread, mask)


def masked_mse(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean squared error over the entries where ``mask`` is 1 (others are never read)."""
    return _masked_mean((predicted - torch.where(mask > 0, target, 0.0)) ** 2, mask)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    known = mask > 0
    return torch.where(known, values, 0.0).sum() / known.sum().clamp(min=1)


def gaussian_samples(mean: torch.Tensor, std: torch.Tensor, num_samples: int) -> torch.Tensor:
    """(K, ...) draws of N(mean, std^2); ``std`` broadcasts over the last dimension."""
    return mean + std * torch.randn(num_samples, *mean.shape, dtype=mean.dtype, device=mean.device)

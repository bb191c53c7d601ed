"""An entry's evaluation preprocessing as a callable, as torchvision's ``weights.transforms()``.

``zoo.transforms("odenet-fmnist")`` turns what a user has (a PIL image, a NumPy array or a
tensor, one image or a batch) into what the model was trained on: a float tensor in [0, 1],
resized if the card says so, normalized with the card's mean and standard deviation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.transforms import functional as tvf

from zoo.hub.cards import CardError


class EvalTransform(nn.Module):
    """The evaluation preprocessing of a model card.

    Args:
        preprocessing: The card's ``preprocessing`` field: ``resize`` (``None`` or a size),
            ``to_tensor`` and ``normalize`` (``None`` or per-channel ``mean`` and ``std``) for
            images; ``normalize: None`` alone for raw coordinates.

    Call it on a PIL image, an (H, W), (C, H, W) or (N, C, H, W) tensor or array (uint8 in
    0..255 or float in [0, 1]), or, for vector inputs, a (d,) or (N, d) one. Images come back
    as float32 (C, H, W) or (N, C, H, W); add the batch dimension with ``unsqueeze(0)``.
    """

    def __init__(self, preprocessing: dict[str, Any]) -> None:
        super().__init__()
        normalize = preprocessing.get("normalize")
        self.images = bool(preprocessing.get("to_tensor"))
        self.resize = preprocessing.get("resize")
        has_moments = isinstance(normalize, dict) and {"mean", "std"} <= normalize.keys()
        if normalize is not None and not has_moments:
            raise CardError(f"preprocessing.normalize must have 'mean' and 'std', got {normalize!r}")
        self.mean = None if normalize is None else _floats(normalize["mean"])
        self.std = None if normalize is None else _floats(normalize["std"])

    def forward(self, inputs: Any) -> torch.Tensor:
        """The model input for ``inputs``."""
        tensor = self._as_float_tensor(inputs)
        if not self.images:
            return tensor
        if tensor.dim() == 2:
            tensor = tensor.unsqueeze(0)
        if self.resize is not None:
            tensor = tvf.resize(tensor, self.resize, antialias=True)
        if self.mean is not None:
            tensor = tvf.normalize(tensor, self.mean, self.std)
        return tensor

    def _as_float_tensor(self, inputs: Any) -> torch.Tensor:
        if tvf._is_pil_image(inputs):
            return tvf.to_tensor(inputs)
        if isinstance(inputs, np.ndarray):
            inputs = torch.from_numpy(np.array(inputs))  # a copy: the array may be read-only
        if not isinstance(inputs, torch.Tensor):
            raise TypeError(f"expected a PIL image, a NumPy array or a tensor, got {type(inputs).__name__}")
        if inputs.dtype == torch.uint8:
            return inputs.float().div(255)
        if not inputs.is_floating_point():
            raise TypeError(f"expected uint8 (0..255) or floating point (0..1) inputs, got {inputs.dtype}")
        return inputs.float()

    def extra_repr(self) -> str:
        steps = ["to float tensor in [0, 1]"] if self.images else ["to float tensor"]
        if self.resize is not None:
            steps.append(f"resize to {self.resize}")
        if self.mean is not None:
            steps.append(f"normalize(mean={self.mean}, std={self.std})")
        return ", ".join(steps)


def _floats(values: Sequence[float]) -> list[float]:
    return [float(value) for value in values]

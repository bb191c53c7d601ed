"""ODE-Net and its residual baseline.

Chen, Rubanova, Bettencourt, Duvenaud 2018, "Neural Ordinary Differential Equations", NeurIPS,
Section 3 and Table 1. The architecture is that of the authors' reference code
(torchdiffeq's ``examples/odenet_mnist.py``): a downsampling stem, then one ODE block on [0, 1]
(ODE-Net) or six residual blocks (the ResNet baseline), then GroupNorm-ReLU-pool-linear. With
64 channels on 28x28 inputs the ODE-Net has 208,266 parameters and the ResNet 576,778.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from zoo.families import register_model
from zoo.models.classifier import Classifier
from zoo.ode import DynamicsSpec, ODEBlock, SolverSettings
from zoo.ode.dynamics import group_norm


def downsampling_stem(in_channels: int, width: int) -> nn.Sequential:
    """Conv3x3 - GN - ReLU - Conv4x4/2 - GN - ReLU - Conv4x4/2: 28x28 -> 6x6, 32x32 -> 7x7."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, 1),
        group_norm(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 4, 2, 1),
        group_norm(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 4, 2, 1),
    )


def classification_head(width: int, num_classes: int) -> nn.Sequential:
    """GN - ReLU - global average pool - Linear."""
    return nn.Sequential(
        group_norm(width),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, num_classes),
    )


class ResBlock(nn.Module):
    """The reference code's pre-activation residual block: x + conv(relu(gn(conv(relu(gn(x)))))).

    Args:
        width: Channels in and out.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm1 = group_norm(width)
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.norm2 = group_norm(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu(self.norm1(x)))
        return x + self.conv2(self.relu(self.norm2(out)))


def stem_body_head(in_channels: int, width: int, body: nn.Module, num_classes: int) -> nn.Sequential:
    """The shared layout: ``net.stem``, ``net.body``, ``net.head``."""
    return nn.Sequential(
        OrderedDict(
            stem=downsampling_stem(in_channels, width),
            body=body,
            head=classification_head(width, num_classes),
        )
    )


#: The layer of :func:`classification_head` that depends on the number of classes, in ``net``.
HEAD_LINEAR = "net.head.4"


@register_model
class ODENet(Classifier):
    """ODE-Net image classifier: stem, one ODE block, head.

    Args:
        input_shape: (channels, height, width) of the images (linked from the DataModule).
        num_classes: Number of classes (linked from the DataModule).
        width: Channels of the stem, the ODE state and the head.
        dynamics: The ODE function; default the ODE-Net conv function at ``width`` channels.
        solver: Method, tolerances and adjoint of the ODE block.
        integration_time: End time of the ODE block, which starts at 0.
        weights: Pretrained weights to start from: a zoo name, a safetensors path or a URL.
    """

    head = HEAD_LINEAR

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        width: int = 64,
        dynamics: DynamicsSpec | None = None,
        solver: SolverSettings | None = None,
        integration_time: float = 1.0,
        weights: str | None = None,
    ) -> None:
        super().__init__(num_classes)
        dynamics, solver = DynamicsSpec.coerce(dynamics), SolverSettings.coerce(solver)
        self.save_arguments({"input_shape": input_shape, "num_classes": num_classes, "width": width,
                             "dynamics": dynamics, "solver": solver, "integration_time": integration_time})
        block = ODEBlock(dynamics.build(width), solver, t0=0.0, t1=integration_time)
        self.net = stem_body_head(input_shape[0], width, block, num_classes)
        self.load_weights(weights)


@register_model
class ResNet(Classifier):
    """The residual baseline of ODE-Net: the same stem and head around residual blocks.

    Args:
        input_shape: (channels, height, width) of the images (linked from the DataModule).
        num_classes: Number of classes (linked from the DataModule).
        width: Channels of the stem, the blocks and the head.
        num_blocks: Residual blocks in place of the ODE block (six in Chen et al.'s baseline).
        weights: Pretrained weights to start from: a zoo name, a safetensors path or a URL.
    """

    head = HEAD_LINEAR

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        width: int = 64,
        num_blocks: int = 6,
        weights: str | None = None,
    ) -> None:
        super().__init__(num_classes)
        self.save_arguments({"input_shape": input_shape, "num_classes": num_classes, "width": width,
                             "num_blocks": num_blocks})
        body = nn.Sequential(*(ResBlock(width) for _ in range(num_blocks)))
        self.net = stem_body_head(input_shape[0], width, body, num_classes)
        self.load_weights(weights)

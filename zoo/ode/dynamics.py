"""The dynamics registry: small ``nn.Module`` vector fields ``f(t, y)`` built by name.

A builder is registered with :data:`DYNAMICS` and called as ``builder(dim, hidden_dims,
**options)``, where ``dim`` is the state's channels (images) or features (vectors). Configs name a
builder through :class:`DynamicsSpec`, checked when the config is read.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from zoo.errors import SettingError
from zoo.ode.registry import Registry

DynamicsBuilder = Callable[..., nn.Module]
DYNAMICS: Registry[DynamicsBuilder] = Registry("dynamics")

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}


def make_activation(name: str) -> nn.Module:
    """A fresh activation module by name; unknown names fail with the valid ones."""
    if name not in ACTIVATIONS:
        raise SettingError(f"unknown activation {name!r}; valid: {', '.join(sorted(ACTIVATIONS))}")
    return ACTIVATIONS[name]()


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with at most ``groups`` groups, as in the ODE-Net reference code."""
    return nn.GroupNorm(min(groups, channels), channels)


class ConcatConv2d(nn.Module):
    """A convolution that sees time as one more input channel.

    Args:
        in_channels: Channels of the state.
        out_channels: Channels produced.
        kernel_size: Square kernel size; padding keeps the spatial size.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels + 1, out_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        time = t.reshape(-1, 1, 1, 1).to(x) * torch.ones_like(x[:, :1])  # one time, or one per sample
        return self.conv(torch.cat([time, x], dim=1))


@DYNAMICS.register("odenet_conv")
class ODENetConv(nn.Module):
    """The ODE-Net function of Chen et al. 2018: GN-ReLU-ConcatConv-GN-ReLU-ConcatConv-GN.

    Args:
        dim: Channels of the state.
        hidden_dims: One entry, the channels between the two convolutions; default ``[dim]``.
        groups: Most groups of each GroupNorm.
    """

    def __init__(self, dim: int, hidden_dims: Sequence[int] | None = None, groups: int = 32) -> None:
        super().__init__()
        (hidden,) = _hidden(hidden_dims, default=[dim], count=1, name="odenet_conv")
        self.norm1 = group_norm(dim, groups)
        self.conv1 = ConcatConv2d(dim, hidden)
        self.norm2 = group_norm(hidden, groups)
        self.conv2 = ConcatConv2d(hidden, dim)
        self.norm3 = group_norm(dim, groups)
        self.relu = nn.ReLU()

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(t, self.relu(self.norm1(x)))
        out = self.conv2(t, self.relu(self.norm2(out)))
        return self.norm3(out)


@DYNAMICS.register("anode_conv")
class ANODEConv(nn.Module):
    """The conv ODE function of Dupont et al. 2019: ConcatConv 1x1-ReLU-3x3-ReLU-1x1.

    Each convolution sees time as one more input channel. For ANODE, build it for the augmented
    channels (image channels + ``augment_dim``).

    Args:
        dim: Channels of the state.
        hidden_dims: One entry, the filters of the inner convolutions; default ``[64]``.
        activation: Name of the nonlinearity after the first two convolutions; default the
            paper's ReLU. ReLU's kinks make the adjoint's right-hand side discontinuous, which
            costs adaptive solvers many steps at tight tolerances; a smooth one (softplus) does not.
    """

    def __init__(self, dim: int, hidden_dims: Sequence[int] | None = None,
                 activation: str = "relu") -> None:
        super().__init__()
        (filters,) = _hidden(hidden_dims, default=[64], count=1, name="anode_conv")
        self.conv1 = ConcatConv2d(dim, filters, kernel_size=1)
        self.conv2 = ConcatConv2d(filters, filters, kernel_size=3)
        self.conv3 = ConcatConv2d(filters, dim, kernel_size=1)
        self.activation = make_activation(activation)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = self.activation(self.conv1(t, x))
        out = self.activation(self.conv2(t, out))
        return self.conv3(t, out)


@DYNAMICS.register("concat_mlp")
class ConcatMLP(nn.Module):
    """An MLP on ``[t, y]``: time enters as one more input feature (Dupont et al. 2019).

    Args:
        dim: Features of the state.
        hidden_dims: Widths of the hidden layers; default ``[32, 32]``.
        activation: Name of the nonlinearity after each hidden layer (see ``ACTIVATIONS``).
    """

    def __init__(self, dim: int, hidden_dims: Sequence[int] | None = None,
                 activation: str = "relu") -> None:
        super().__init__()
        widths = [dim + 1, *_hidden(hidden_dims, default=[32, 32], name="concat_mlp")]
        layers: list[nn.Module] = []
        for width_in, width_out in itertools.pairwise(widths):
            layers += [nn.Linear(width_in, width_out), make_activation(activation)]
        layers.append(nn.Linear(widths[-1], dim))
        self.net = nn.Sequential(*layers)

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        time = torch.ones_like(y[..., :1]) * t
        return self.net(torch.cat([time, y], dim=-1))


class ConcatSquashLinear(nn.Module):
    """``Linear(y) * sigmoid(gate(t)) + shift(t)``: FFJORD's time-conditioned layer."""

    def __init__(self, width_in: int, width_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width_in, width_out)
        self.gate = nn.Linear(1, width_out)
        self.shift = nn.Linear(1, width_out, bias=False)

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        time = t.reshape(-1, 1).to(y)  # one time for the batch, or one per sample
        return self.linear(y) * torch.sigmoid(self.gate(time)) + self.shift(time)


class _ConcatSquashStack(nn.Module):
    """Time-conditioned layers with an activation between them; optionally the last starts at zero."""

    def __init__(self, layers: list[nn.Module], activation: str, zero_last: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.activation = make_activation(activation)
        if zero_last:
            last = self.layers[-1]
            main = last.linear if hasattr(last, "linear") else last.conv
            for weight in (main.weight, main.bias, *([last.shift.weight] if hasattr(last, "shift") else [])):
                nn.init.zeros_(weight)

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            y = layer(t, y)
            if i < len(self.layers) - 1:
                y = self.activation(y)
        return y


@DYNAMICS.register("concat_squash")
class ConcatSquashMLP(_ConcatSquashStack):
    """An MLP of concat-squash layers (Grathwohl et al. 2019): time gates and shifts every layer.

    Args:
        dim: Features of the state.
        hidden_dims: Widths of the hidden layers; default ``[64, 64, 64]`` (FFJORD's 2-D flows).
        activation: Name of the nonlinearity after each hidden layer (see ``ACTIVATIONS``).
        zero_last: Start the last layer at zero, so the flow starts as the identity (RNODE).
    """

    def __init__(self, dim: int, hidden_dims: Sequence[int] | None = None, activation: str = "tanh",
                 zero_last: bool = False) -> None:
        super().__init__(_chain(ConcatSquashLinear, dim, hidden_dims, "concat_squash"), activation, zero_last)


class ConcatSquashConv2d(nn.Module):
    """``Conv2d(y) * sigmoid(gate(t)) + shift(t)``, per channel: the convolutional concat-squash layer."""

    def __init__(self, channels_in: int, channels_out: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels_in, channels_out, kernel_size, padding=kernel_size // 2)
        self.gate = nn.Linear(1, channels_out)
        self.shift = nn.Linear(1, channels_out, bias=False)

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        time = t.reshape(-1, 1).to(y)  # one time for the batch, or one per sample
        gate, shift = torch.sigmoid(self.gate(time)), self.shift(time)
        return self.conv(y) * gate[:, :, None, None] + shift[:, :, None, None]


@DYNAMICS.register("concat_squash_conv")
class ConcatSquashConvNet(_ConcatSquashStack):
    """3x3 concat-squash convolutions on (B, C, H, W) states: time gates and shifts every channel.

    Args:
        dim: Channels of the state.
        hidden_dims: Channels of the hidden layers; default ``[64, 64, 64]``.
        activation: Name of the nonlinearity after each hidden layer (see ``ACTIVATIONS``).
        zero_last: Start the last layer at zero, so the flow starts as the identity.
    """

    def __init__(self, dim: int, hidden_dims: Sequence[int] | None = None, activation: str = "softplus",
                 zero_last: bool = False) -> None:
        layers = _chain(ConcatSquashConv2d, dim, hidden_dims, "concat_squash_conv")
        super().__init__(layers, activation, zero_last)


@DYNAMICS.register("concat_conv")
class ConcatConvNet(_ConcatSquashStack):
    """3x3 convolutions that each see time as one more channel: FFJORD's image vector field.

    Grathwohl et al.'s multiscale MNIST flow uses this ``concat`` layer, hidden channels
    ``[64, 64, 64]`` and softplus.

    Args:
        dim: Channels of the state.
        hidden_dims: Channels of the hidden layers; default ``[64, 64, 64]``.
        activation: Name of the nonlinearity after each hidden layer (see ``ACTIVATIONS``).
        zero_last: Start the last layer at zero, so the flow starts as the identity.
    """

    def __init__(self, dim: int, hidden_dims: Sequence[int] | None = None, activation: str = "softplus",
                 zero_last: bool = False) -> None:
        super().__init__(_chain(ConcatConv2d, dim, hidden_dims, "concat_conv"), activation, zero_last)


def _chain(layer: type[nn.Module], dim: int, hidden_dims: Sequence[int] | None,
           name: str) -> list[nn.Module]:
    """Layers ``dim -> hidden... -> dim`` (hidden ``[64, 64, 64]`` unless given)."""
    widths = [dim, *_hidden(hidden_dims, default=[64, 64, 64], name=name), dim]
    return [layer(a, b) for a, b in itertools.pairwise(widths)]


def _hidden(hidden_dims: Sequence[int] | None, default: list[int], name: str,
            count: int | None = None) -> list[int]:
    widths = list(default if hidden_dims is None else hidden_dims)
    if count is not None and len(widths) != count:
        raise SettingError(f"{name} takes {count} hidden width(s), got hidden_dims={widths}")
    if any(int(w) != w or w < 1 for w in widths):
        raise SettingError(f"{name}: hidden_dims must be positive integers, got {widths}")
    return [int(w) for w in widths]


@dataclass(frozen=True)
class DynamicsSpec:
    """A registered dynamics by name, with its widths and options; checked when built.

    Attributes:
        name: A registered dynamics name (``zoo.ode.DYNAMICS.names()``).
        hidden_dims: Widths of the hidden layers; None: the dynamics' default.
        options: Further keyword arguments of that dynamics (``groups``, ``activation``...).
    """

    name: str = "odenet_conv"
    hidden_dims: list[int] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        builder = DYNAMICS.get(self.name)
        accepted = [p for p in inspect.signature(builder).parameters if p not in ("dim", "hidden_dims")]
        unknown = sorted(set(self.options) - set(accepted))
        if unknown:
            raise SettingError(
                f"dynamics {self.name!r} has no option(s) {unknown}; its options are {accepted}"
            )

    @classmethod
    def coerce(cls, value: DynamicsSpec | dict[str, Any] | str | None) -> DynamicsSpec:
        """Accepts a spec, a plain dict of its fields, a bare name, or None (the default)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls(name=value)
        return cls(**value)

    def as_dict(self) -> dict[str, Any]:
        """Plain-data form, for hyperparameters and model cards."""
        return dataclasses.asdict(self)

    def build(self, dim: int) -> nn.Module:
        """Builds the dynamics for a state of ``dim`` channels or features."""
        return DYNAMICS.get(self.name)(dim, self.hidden_dims, **self.options)

"""Haber & Ruthotto 2017, "Stable architectures for deep neural networks": stable dynamics.

Vector fields for vector states (B, D), registered in :data:`~zoo.ode.dynamics.DYNAMICS`:

- ``standard``: ``f(t, y) = act(K y + b)``, the unconstrained layer of a plain ResNet, the
  baseline the paper's stable networks are compared with.
- ``antisymmetric``: ``f(t, y) = act((K - K^T - gamma I) y + b)``. The linear part's eigenvalues
  have real part ``-gamma``: the forward flow neither explodes nor (for ``gamma`` = 0) vanishes.
- ``hamiltonian``: two halves ``(y, z)`` with ``dy/dt = act(K z + b1)``, ``dz/dt = -act(K^T y + b2)``.
  The field is separable, so the ``leapfrog`` solver (velocity Verlet) integrates it
  symplectically; ``y`` is its ``q`` half (first) and ``z`` its ``p`` half (second).

All are time-independent, as in the paper's layers with weights shared over depth. Their width
is the state's, so they take no ``hidden_dims``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from zoo.ode.dynamics import DYNAMICS, make_activation


@DYNAMICS.register("standard")
class Standard(nn.Module):
    """The unconstrained layer ``act(K y + b)`` of a plain ResNet, as the stable ones' baseline.

    Args:
        dim: Features of the state.
        hidden_dims: None or empty: the layer is ``dim`` wide.
        activation: Name of the nonlinearity (see ``ACTIVATIONS``).
    """

    def __init__(self, dim: int, hidden_dims: Sequence[int] | None = None, activation: str = "tanh") -> None:
        super().__init__()
        _no_hidden(hidden_dims, "standard")
        self.kernel = _uniform(dim, dim)
        self.bias = _uniform(dim, fan_in=dim)
        self.activation = make_activation(activation)

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.activation(F.linear(y, self.kernel, self.bias))


@DYNAMICS.register("antisymmetric")
class Antisymmetric(nn.Module):
    """Antisymmetric dynamics ``act((K - K^T - gamma I) y + b)``, Haber & Ruthotto 2017.

    With ``gamma`` = 0 (the default) the linear part's eigenvalues are purely imaginary: exact for
    adaptive and high-order solvers, but forward Euler amplifies them; take a small ``gamma`` (the
    paper's damping, for example 0.01) with euler.

    Args:
        dim: Features of the state.
        hidden_dims: None or empty: the layer is ``dim`` wide.
        gamma: Damping, >= 0: the real part of every eigenvalue of the linear part is ``-gamma``.
        activation: Name of the nonlinearity (see ``ACTIVATIONS``).
    """

    def __init__(self, dim: int, hidden_dims: Sequence[int] | None = None, gamma: float = 0.0,
                 activation: str = "tanh") -> None:
        super().__init__()
        _no_hidden(hidden_dims, "antisymmetric")
        if not (gamma >= 0 and math.isfinite(gamma)):
            raise ValueError(f"antisymmetric: gamma must be a finite number >= 0, got {gamma!r}")
        self.gamma = float(gamma)
        self.kernel = _uniform(dim, dim)
        self.bias = _uniform(dim, fan_in=dim)
        self.activation = make_activation(activation)

    def weight(self) -> torch.Tensor:
        """The linear part ``K - K^T - gamma I``."""
        eye = torch.eye(len(self.kernel), dtype=self.kernel.dtype, device=self.kernel.device)
        return self.kernel - self.kernel.T - self.gamma * eye

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.activation(F.linear(y, self.weight(), self.bias))


@DYNAMICS.register("hamiltonian")
class Hamiltonian(nn.Module):
    """Hamiltonian network of Haber & Ruthotto 2017, for the ``leapfrog`` solver.

    The state is two equal halves ``(y, z)`` along its last dimension (dim 1 of a batch (B, D)):
    ``dy/dt = act(K z + b1)``, ``dz/dt = -act(K^T y + b2)``. ``dy/dt`` depends on ``z`` only and
    ``dz/dt`` on ``y`` only, matching leapfrog's ``(q, p) = (y, z)``. The paper starts from
    ``z(0) = 0``: an ``ODEBlock`` with ``augment_dim`` equal to the input's features and this
    dynamics built for twice them does that.

    Args:
        dim: Features of the whole state, even: ``y`` and ``z`` each have ``dim // 2``.
        hidden_dims: None or empty: ``K`` is square, ``dim // 2`` wide.
        activation: Name of the nonlinearity (see ``ACTIVATIONS``).
    """

    def __init__(self, dim: int, hidden_dims: Sequence[int] | None = None,
                 activation: str = "tanh") -> None:
        super().__init__()
        _no_hidden(hidden_dims, "hamiltonian")
        if dim % 2:
            raise ValueError(
                f"hamiltonian splits the state into two equal halves (y, z), but dim={dim} is odd; "
                "give it an even width (with ODEBlock's augment_dim, an even dim + augment_dim)"
            )
        half = dim // 2
        self.kernel = _uniform(half, half)
        self.bias_y = _uniform(half, fan_in=half)
        self.bias_z = _uniform(half, fan_in=half)
        self.activation = make_activation(activation)

    def forward(self, t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        y, z = state.chunk(2, dim=-1)
        dy = self.activation(F.linear(z, self.kernel, self.bias_y))
        dz = -self.activation(F.linear(y, self.kernel.T, self.bias_z))
        return torch.cat([dy, dz], dim=-1)


def _no_hidden(hidden_dims: Sequence[int] | None, name: str) -> None:
    if hidden_dims:
        raise ValueError(
            f"{name} has no hidden layers (its width is the state's), got hidden_dims="
            f"{list(hidden_dims)}; leave hidden_dims unset"
        )


def _uniform(*shape: int, fan_in: int | None = None) -> nn.Parameter:
    """A parameter drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as ``nn.Linear`` draws its own."""
    bound = 1 / math.sqrt(fan_in or shape[-1])
    return nn.Parameter(torch.empty(shape).uniform_(-bound, bound))

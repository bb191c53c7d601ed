"""Haber & Ruthotto 2017, "Stable architectures for deep neural networks": stable dynamics.

Vector fields for vector states (B, D), registered in :data:`~zoo.ode.dynamics.DYNAMICS`:

- ``standard``: ``f(t, y) = act(K y + b)``, the unconstrained layer of a plain ResNet, the
  baseline the paper's stable networks are compared with.
- ``antisymmetric``: ``f(t, y) = act((K - K^T - gamma I) y + b)``. The linear part's eigenvalues
  have real part ``-gamma``: the forward flow neither explodes nor (for ``gamma`` = 0) vanishes.
- ``hamiltonian``: two halves ``(y, z)`` with ``dy/dt = act(K z + b1)``, ``dz/dt = -act(K^T y + b2)``.
  The field is separable, so the ``leapfrog`` solver (velocity Verlet) integrates it
  symplectically; ``y`` is its ``q`` half (first) and ``z`` its ``p`` half (second).

The paper gives every layer its own ``K`` and ``b``. Here they are functions of time: ``knots``
values evenly spaced over ``[0, span]``, linearly interpolated between and held constant beyond
(:class:`KernelPath`). With ``span`` the integration time and ``knots`` the number of solver
steps plus one, each step sees its own weights, as each of the paper's layers does; ``knots=1``
(the default) shares one ``K`` over all time. Their width is the state's, so they take no
``hidden_dims``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from zoo.errors import SettingError
from zoo.ode.dynamics import DYNAMICS, make_activation


class KernelPath(nn.Module):
    """Weights that vary with time: ``knots`` values evenly spaced over ``[0, span]``.

    ``at(t)`` interpolates linearly between neighbouring knots and holds the end values beyond the
    span, so the dynamics stay continuous in ``t`` for adaptive solvers. Each knot is drawn as
    ``nn.Linear`` draws its weights.

    Args:
        shape: Shape of one value, ``(out, in)`` for a kernel or ``(out,)`` for a bias.
        fan_in: Inputs the value multiplies, for the initial scale.
        knots: Number of values; 1 is constant in time.
        span: Time of the last knot.
    """

    def __init__(self, shape: Sequence[int], fan_in: int, knots: int = 1, span: float = 1.0) -> None:
        super().__init__()
        if isinstance(knots, bool) or int(knots) != knots or knots < 1:
            raise SettingError(f"knots must be a positive integer, got {knots!r}")
        if not (span > 0 and math.isfinite(span)):
            raise SettingError(f"span must be a finite time > 0, got {span!r}; "
                               "set it to the integration time")
        self.span = float(span)
        bound = 1 / math.sqrt(fan_in)
        self.values = nn.Parameter(torch.empty(int(knots), *shape).uniform_(-bound, bound))

    def at(self, t: torch.Tensor | float) -> torch.Tensor:
        """The value at time ``t``."""
        values = self.values
        if len(values) == 1:
            return values[0]
        t = torch.as_tensor(t, dtype=values.dtype, device=values.device)
        position = (t / self.span).clamp(0, 1) * (len(values) - 1)
        knots = torch.arange(len(values), dtype=values.dtype, device=values.device)
        hats = (1 - (position - knots).abs()).clamp(min=0)  # linear-interpolation weights
        return torch.tensordot(hats, values, dims=1)

    def extra_repr(self) -> str:
        return f"knots={len(self.values)}, span={self.span:g}"


@DYNAMICS.register("standard")
class Standard(nn.Module):
    """The unconstrained layer ``act(K y + b)`` of a plain ResNet, as the stable ones' baseline.

    Args:
        dim: Features of the state.
        hidden_dims: None or empty: the layer is ``dim`` wide.
        activation: Name of the nonlinearity (see ``ACTIVATIONS``).
        knots: Values of ``K`` and ``b`` over time (:class:`KernelPath`); 1: constant.
        span: Time of the last knot, usually the integration time.
    """

    def __init__(self, dim: int, hidden_dims: Sequence[int] | None = None, activation: str = "tanh",
                 knots: int = 1, span: float = 1.0) -> None:
        super().__init__()
        _no_hidden(hidden_dims, "standard")
        self.kernel = KernelPath((dim, dim), dim, knots, span)
        self.bias = KernelPath((dim,), dim, knots, span)
        self.activation = make_activation(activation)

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.activation(F.linear(y, self.kernel.at(t), self.bias.at(t)))


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
        knots: Values of ``K`` and ``b`` over time (:class:`KernelPath`); 1: constant.
        span: Time of the last knot, usually the integration time.
    """

    def __init__(self, dim: int, hidden_dims: Sequence[int] | None = None, gamma: float = 0.0,
                 activation: str = "tanh", knots: int = 1, span: float = 1.0) -> None:
        super().__init__()
        _no_hidden(hidden_dims, "antisymmetric")
        if not (gamma >= 0 and math.isfinite(gamma)):
            raise SettingError(f"antisymmetric: gamma must be a finite number >= 0, got {gamma!r}")
        self.gamma = float(gamma)
        self.kernel = KernelPath((dim, dim), dim, knots, span)
        self.bias = KernelPath((dim,), dim, knots, span)
        self.activation = make_activation(activation)

    def weight(self, t: torch.Tensor | float = 0.0) -> torch.Tensor:
        """The linear part ``K(t) - K(t)^T - gamma I`` at time ``t``."""
        kernel = self.kernel.at(t)
        eye = torch.eye(len(kernel), dtype=kernel.dtype, device=kernel.device)
        return kernel - kernel.T - self.gamma * eye

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.activation(F.linear(y, self.weight(t), self.bias.at(t)))


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
        knots: Values of ``K`` and the biases over time (:class:`KernelPath`); 1: constant.
        span: Time of the last knot, usually the integration time.
    """

    def __init__(self, dim: int, hidden_dims: Sequence[int] | None = None,
                 activation: str = "tanh", knots: int = 1, span: float = 1.0) -> None:
        super().__init__()
        _no_hidden(hidden_dims, "hamiltonian")
        if dim % 2:
            raise SettingError(
                f"hamiltonian splits the state into two equal halves (y, z), but dim={dim} is odd; "
                "give it an even width (with ODEBlock's augment_dim, an even dim + augment_dim)"
            )
        half = dim // 2
        self.kernel = KernelPath((half, half), half, knots, span)
        self.bias_y = KernelPath((half,), half, knots, span)
        self.bias_z = KernelPath((half,), half, knots, span)
        self.activation = make_activation(activation)

    def forward(self, t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.half_rate(t, state, "q"), self.half_rate(t, state, "p")], dim=-1)

    def half_rate(self, t: torch.Tensor, state: torch.Tensor, part: str) -> torch.Tensor:
        """One half of the field: ``dy/dt`` (``part`` "q", from ``z``) or ``dz/dt`` ("p", from ``y``).

        The ``leapfrog`` solver calls it so that each of its kicks and drifts computes the half it
        needs only.
        """
        y, z = state.chunk(2, dim=-1)
        kernel = self.kernel.at(t)
        if part == "q":
            return self.activation(F.linear(z, kernel, self.bias_y.at(t)))
        return -self.activation(F.linear(y, kernel.T, self.bias_z.at(t)))


def _no_hidden(hidden_dims: Sequence[int] | None, name: str) -> None:
    if hidden_dims:
        raise SettingError(
            f"{name} has no hidden layers (its width is the state's), got hidden_dims="
            f"{list(hidden_dims)}; leave hidden_dims unset"
        )


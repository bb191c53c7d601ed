"""Symplectic leapfrog (velocity Verlet) for separable second-order dynamics.

Haber & Ruthotto 2017, "Stable architectures for deep neural networks": Hamiltonian networks keep
their energy when integrated with the Verlet scheme. The state holds two equal halves ``(q, p)``;
the dynamics return ``(dq/dt, dp/dt)`` where ``dq/dt`` depends on ``p`` only and ``dp/dt`` on ``q``
only. One step is kick-drift-kick::

    p_half = p + dt/2 * dp/dt(t0, q)
    q1     = q + dt   * dq/dt(t0 + dt/2, p_half)
    p1     = p_half + dt/2 * dp/dt(t1, q1)

The last kick's ``dp/dt(t1, q1)`` is reused as the next step's first kick, so a step costs two
function evaluations after the first. Given ``half_rate(t, y, part)`` (``part`` "q" or "p"), the
solver evaluates only the half of the field each kick or drift needs; :func:`zoo.ode.solve`
passes it, and dynamics that define ``half_rate`` themselves (``hamiltonian``) then compute one
half per evaluation instead of the whole field.
"""

from __future__ import annotations

import torch
from torchdiffeq._impl.solvers import FixedGridODESolver

from zoo.errors import SettingError


class Leapfrog(FixedGridODESolver):
    """Velocity-Verlet fixed-grid solver, in torchdiffeq's solver interface.

    Args:
        func: The dynamics ``f(t, y)``.
        y0: Initial state; its halves along ``split_dim`` are ``q`` and ``p``.
        split_dim: Dimension split into ``(q, p)``; default 1 for batched states (channels or
            features), 0 for an unbatched vector.
        half_rate: ``half_rate(t, y, part)``, the ``part`` ("q" or "p") half of the field at the
            full state ``y``; default: the whole field, halved.
        **kwargs: ``step_size`` and the other options of torchdiffeq's fixed-grid solvers.
    """

    order = 2

    def __init__(self, func, y0: torch.Tensor, split_dim: int | None = None, half_rate=None,
                 **kwargs) -> None:
        if kwargs.get("interp", "linear") != "linear":
            raise SettingError("leapfrog reads the trajectory out with interp='linear' only")
        super().__init__(func, y0, **kwargs)
        self.split_dim = (1 if y0.dim() >= 2 else 0) if split_dim is None else split_dim
        if y0.shape[self.split_dim] % 2:
            raise SettingError(
                f"leapfrog splits the state into two equal halves (q, p) along dim {self.split_dim}, "
                f"but that dimension has odd size {y0.shape[self.split_dim]}"
            )
        self._kick: tuple[torch.Tensor, torch.Tensor] | None = None
        self._half_rate = half_rate

    def _rate(self, func, t: torch.Tensor, y: torch.Tensor, part: str) -> torch.Tensor:
        if self._half_rate is not None:
            return self._half_rate(t, y, part)
        return func(t, y).chunk(2, dim=self.split_dim)["qp".index(part)]

    def _step_func(self, func, t0, dt, t1, y0):
        dim = self.split_dim
        q, p = y0.chunk(2, dim=dim)
        if self._kick is not None and torch.equal(self._kick[0], t0):
            dp0 = self._kick[1]
        else:
            dp0 = self._rate(func, t0, y0, "p")
        p_half = p + 0.5 * dt * dp0
        dq = self._rate(func, t0 + 0.5 * dt, torch.cat([q, p_half], dim=dim), "q")
        q1 = q + dt * dq
        dp1 = self._rate(func, t1, torch.cat([q1, p_half], dim=dim), "p")
        p1 = p_half + 0.5 * dt * dp1
        self._kick = (t1, dp1)
        return torch.cat([q1 - q, p1 - p], dim=dim), None

"""``ODEBlock``: integrate a dynamics module, count its evaluations, fail with a clear error.

The block can also augment its state with zeros first: Dupont et al. 2019, "Augmented Neural ODEs".
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from zoo.errors import SettingError
from zoo.ode.integrate import Context, ODESolveError, State, solve
from zoo.ode.solvers import SolverSettings
from zoo.ode.stats import SolveStats

__all__ = ["ODEBlock", "ODESolveError"]


class ODEBlock(nn.Module):
    """The ``nn.Module`` face of :func:`zoo.ode.solve`: integrates ``dynamics`` from ``t0`` to ``t1``.

    Args:
        dynamics: The vector field, an ``nn.Module`` called as ``dynamics(t, y)`` (or
            ``dynamics(t, y, context)`` when :meth:`forward` gets a context).
        solver: Method, step control and adjoint; unset fields: dopri5 at 1e-3, no adjoint.
        t0: Start time: the input is the state at ``t0``.
        t1: End time of :meth:`forward` without a grid; may be below ``t0``.
        augment_dim: Zero channels (images) or features (vectors) appended along dim 1 of the
            input (of its first component, for a tuple state) before solving: ANODE (Dupont et
            al. 2019) when positive. The dynamics must then be built for the state's
            ``dim + augment_dim``, and the block returns augmented states.
        learn_t1: Make the end time a parameter, ``end_time``, trained with the rest (Chen et
            al.'s fractional depth, FFJORD's ``train_T``); its gradient is exact, direct and
            adjoint.
    """

    def __init__(self, dynamics: nn.Module, solver: SolverSettings | None = None,
                 t0: float = 0.0, t1: float = 1.0, *, augment_dim: int = 0, learn_t1: bool = False) -> None:
        super().__init__()
        if t0 == t1:
            raise SettingError(f"ODEBlock needs t1 != t0, got t0 = t1 = {t0}")
        if isinstance(augment_dim, bool) or int(augment_dim) != augment_dim or augment_dim < 0:
            raise SettingError(f"augment_dim must be a non-negative integer, got {augment_dim!r}")
        self.augment_dim = int(augment_dim)
        self.dynamics = dynamics
        self.solver = SolverSettings.coerce(solver)
        self.t0, self.t1 = float(t0), float(t1)
        self.end_time = nn.Parameter(torch.tensor(float(t1))) if learn_t1 else None
        self.last_stats = SolveStats()

    @property
    def nfe_forward(self) -> int:
        """Function evaluations of the latest forward call (a LightningModule sums a whole step's)."""
        return self.last_stats.nfe_forward

    @property
    def nfe_backward(self) -> int:
        """Function evaluations of the backward pass of the latest forward call."""
        return self.last_stats.nfe_backward

    def forward(self, x: State, times: Sequence[float] | torch.Tensor | None = None, *,
                context: Context = None, step_to_outputs: bool | None = None) -> State:
        """Solves from the state ``x`` at ``t0``, augmented first if ``augment_dim`` > 0.

        Args:
            x: The state at ``t0``, a tensor or a tuple of them; batched, (B, D) or (B, C, H, W),
                where ``augment_dim`` > 0.
            times: None for the state at ``t1``; else the times to read the state at, strictly
                increasing (all >= t0) or strictly decreasing (all <= t0), ``t0`` optional.
            context: Extra inputs of the dynamics for this call (see :func:`zoo.ode.solve`).
            step_to_outputs: Whether steps end on ``times`` (see :func:`zoo.ode.solve`).

        Returns:
            The state at ``t1``, shaped as ``x`` but for ``augment_dim`` more entries along dim
            1; or, with ``times``, the states at those times stacked along a new first dimension.

        Raises:
            ODESolveError: The solve failed; the message names the time reached and the NFE.
        """
        x = self.augment(x)
        skip_first = False
        if times is None and self.end_time is None:
            grid = [self.t0, self.t1]
        elif times is None:
            grid = torch.stack([self.end_time.new_tensor(self.t0), self.end_time])
        else:
            grid, skip_first = self._grid(times)
        try:
            solution = solve(self.dynamics, x, grid, self.solver, context=context,
                             step_to_outputs=step_to_outputs)
        except ODESolveError as error:
            self.last_stats = error.stats or SolveStats()
            raise
        self.last_stats = solution.stats
        if times is None:
            return solution.end
        if skip_first:
            return tuple(y[1:] for y in solution.ys) if isinstance(x, tuple) else solution.ys[1:]
        return solution.ys

    def augment(self, x: State) -> State:
        """The state the solve starts from: ``x`` with ``augment_dim`` zeros appended along dim 1."""
        if not self.augment_dim:
            return x
        if isinstance(x, tuple | list):
            return (self.augment(x[0]), *x[1:])
        if x.dim() < 2:
            raise SettingError(
                f"augment_dim appends along dim 1 of a batched state, (B, D) or (B, C, H, W); got "
                f"shape {tuple(x.shape)}"
            )
        zeros = x.new_zeros(x.shape[0], self.augment_dim, *x.shape[2:])
        return torch.cat([x, zeros], dim=1)

    def extra_repr(self) -> str:
        span = f"t0={self.t0:g}, t1={self.t1:g}" + (" (learned)" if self.end_time is not None else "")
        return f"{span}, augment_dim={self.augment_dim}" if self.augment_dim else span

    def _grid(self, times: Sequence[float] | torch.Tensor) -> tuple[torch.Tensor, bool]:
        grid = torch.as_tensor(times, dtype=torch.float64).detach().flatten().cpu()
        if grid.numel() == 0:
            raise SettingError("times is empty; give at least one time to read the state at")
        skip_first = bool(grid[0] != self.t0)
        if skip_first:
            grid = torch.cat([torch.tensor([self.t0], dtype=grid.dtype), grid])
        steps = grid[1:] - grid[:-1]
        if not ((steps > 0).all() or (steps < 0).all()):
            raise SettingError(
                f"times must be strictly increasing (all >= t0={self.t0}) or strictly decreasing "
                f"(all <= t0), got {grid[int(skip_first):].tolist()}"
            )
        return grid, skip_first

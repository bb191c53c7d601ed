"""``ODEBlock``: integrate a dynamics module, count its evaluations, fail with a clear error.

The block can also augment its state with zeros first: Dupont et al. 2019, "Augmented Neural ODEs".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint

from zoo.ode.solvers import SolverSettings

_FAILURES = (
    ("underflow in dt", "the step size underflowed (the dynamics are stiff or diverging)"),
    ("non-finite values", "the state became NaN or infinite"),
    ("max_num_steps exceeded", "the solver took its maximum number of steps (solver.max_steps)"),
)


class ODESolveError(RuntimeError):
    """A solve that could not reach its end time: stiff, diverging or out of steps."""


@dataclass
class EvaluationCount:
    """Function evaluations of one forward call and of the backward pass that follows it.

    Attributes:
        forward: Evaluations during the forward solve.
        backward: Evaluations during backpropagation: adjoint-solve evaluations, or
            vector-Jacobian products through recorded evaluations without the adjoint.
        t_reached: The last time the forward solve evaluated the dynamics at.
    """

    forward: int = 0
    backward: int = 0
    t_reached: torch.Tensor | None = None
    solving: bool = False

    def count_backward(self, grad: torch.Tensor) -> None:
        """Gradient hook on an evaluation's output: one more backward evaluation."""
        self.backward += 1


class _CountedDynamics(nn.Module):
    """Wraps the dynamics for one solve, counting evaluations into ``count``."""

    def __init__(self, dynamics: nn.Module, count: EvaluationCount, hook_backward: bool) -> None:
        super().__init__()
        self.dynamics = dynamics
        self.count = count
        self.hook_backward = hook_backward

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        count = self.count
        if not count.solving:
            count.backward += 1
            return self.dynamics(t, y)
        count.forward += 1
        count.t_reached = t.detach()
        out = self.dynamics(t, y)
        if self.hook_backward and out.requires_grad:
            out.register_hook(count.count_backward)
        return out


class ODEBlock(nn.Module):
    """Integrates ``dy/dt = dynamics(t, y)`` from ``t0`` to ``t1``, or along a time grid.

    Args:
        dynamics: The vector field, an ``nn.Module`` called as ``dynamics(t, y)``.
        solver: Method, tolerances and adjoint; default dopri5 at 1e-3, no adjoint.
        t0: Start time: the input is the state at ``t0``.
        t1: End time of :meth:`forward` without a grid; may be below ``t0``.
        augment_dim: Zero channels (images) or features (vectors) appended along dim 1 of the
            input before solving: ANODE (Dupont et al. 2019) when positive. The dynamics must
            then be built for the state's ``dim + augment_dim``, and the block returns augmented
            states, the appended part included.
    """

    def __init__(self, dynamics: nn.Module, solver: SolverSettings | None = None,
                 t0: float = 0.0, t1: float = 1.0, *, augment_dim: int = 0) -> None:
        super().__init__()
        if t0 == t1:
            raise ValueError(f"ODEBlock needs t1 != t0, got t0 = t1 = {t0}")
        if isinstance(augment_dim, bool) or int(augment_dim) != augment_dim or augment_dim < 0:
            raise ValueError(f"augment_dim must be a non-negative integer, got {augment_dim!r}")
        self.augment_dim = int(augment_dim)
        self.dynamics = dynamics
        self.solver = SolverSettings.coerce(solver)
        self.t0, self.t1 = float(t0), float(t1)
        self.nfe = EvaluationCount()

    @property
    def nfe_forward(self) -> int:
        """Function evaluations of the latest forward call."""
        return self.nfe.forward

    @property
    def nfe_backward(self) -> int:
        """Function evaluations of the backward pass of the latest forward call."""
        return self.nfe.backward

    def forward(self, x: torch.Tensor, times: Sequence[float] | torch.Tensor | None = None
                ) -> torch.Tensor:
        """Solves from the state ``x`` at ``t0``, augmented first if ``augment_dim`` > 0.

        Args:
            x: The state at ``t0``; batched, (B, D) or (B, C, H, W), where ``augment_dim`` > 0.
            times: None for the state at ``t1``; else the times to read the state at, strictly
                increasing (all >= t0) or strictly decreasing (all <= t0), ``t0`` optional.

        Returns:
            The state at ``t1``, shaped as ``x`` but for ``augment_dim`` more entries along dim
            1; or, with ``times``, the states at those times stacked along a new first dimension.

        Raises:
            ODESolveError: The solve failed; the message names the time reached and the NFE.
        """
        x = self.augment(x)
        if times is None:
            return self._solve(x, torch.tensor([self.t0, self.t1]), end_state=True)[-1]
        grid, skip_first = self._grid(times)
        if len(grid) == 1:
            self.nfe = EvaluationCount()
            return x.unsqueeze(0)
        states = self._solve(x, grid)
        return states[1:] if skip_first else states

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """The state the solve starts from: ``x`` with ``augment_dim`` zeros appended along dim 1."""
        if not self.augment_dim:
            return x
        if x.dim() < 2:
            raise ValueError(
                f"augment_dim appends along dim 1 of a batched state, (B, D) or (B, C, H, W); got "
                f"shape {tuple(x.shape)}"
            )
        zeros = x.new_zeros(x.shape[0], self.augment_dim, *x.shape[2:])
        return torch.cat([x, zeros], dim=1)

    def extra_repr(self) -> str:
        span = f"t0={self.t0:g}, t1={self.t1:g}"
        return f"{span}, augment_dim={self.augment_dim}" if self.augment_dim else span

    def _grid(self, times: Sequence[float] | torch.Tensor) -> tuple[torch.Tensor, bool]:
        grid = torch.as_tensor(times, dtype=torch.float64).detach().flatten().cpu()
        if grid.numel() == 0:
            raise ValueError("times is empty; give at least one time to read the state at")
        skip_first = bool(grid[0] != self.t0)
        if skip_first:
            grid = torch.cat([torch.tensor([self.t0], dtype=grid.dtype), grid])
        steps = grid[1:] - grid[:-1]
        if not ((steps > 0).all() or (steps < 0).all()):
            raise ValueError(
                f"times must be strictly increasing (all >= t0={self.t0}) or strictly decreasing "
                f"(all <= t0), got {grid[int(skip_first):].tolist()}"
            )
        return grid, skip_first

    def _solve(self, x: torch.Tensor, grid: torch.Tensor, end_state: bool = False) -> torch.Tensor:
        settings = self.solver
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or _has_grad_params(self.dynamics))
        if needs_grad and not settings.info.differentiable:
            raise ValueError(
                f"{settings.method!r} does not propagate gradients: use it for evaluation "
                "(under torch.no_grad()) or pick another solver.method"
            )
        self.nfe = count = EvaluationCount(solving=True)
        func = _CountedDynamics(self.dynamics, count, hook_backward=not settings.adjoint)
        grid = grid.to(device=x.device, dtype=x.dtype if x.is_floating_point() else torch.float32)
        kwargs = settings.odeint_kwargs()
        if end_state and settings.info.exact_end:
            kwargs["options"]["step_t"] = grid[-1:]
        try:
            if settings.adjoint:
                states = odeint_adjoint(func, x, grid, adjoint_params=tuple(self.dynamics.parameters()),
                                        **kwargs, **settings.adjoint_kwargs())
            else:
                states = odeint(func, x, grid, **kwargs)
        except AssertionError as err:
            raise self._failure(str(err), grid) from err
        finally:
            count.solving = False
        if not torch.isfinite(states[-1]).all():
            raise self._failure("non-finite values in the solution", grid)
        return states

    def _failure(self, message: str, grid: torch.Tensor) -> ODESolveError:
        reason = next((text for key, text in _FAILURES if key in message), message)
        count, settings = self.nfe, self.solver
        reached = "t0" if count.t_reached is None else f"t={float(count.t_reached):.6g}"
        return ODESolveError(
            f"ODE solve failed: {reason}. Reached {reached} of [{float(grid[0]):g}, "
            f"{float(grid[-1]):g}] after {count.forward} function evaluations "
            f"(method={settings.method}, rtol={settings.rtol:g}, atol={settings.atol:g}). "
            "Try a looser tolerance or a larger solver.max_steps, a fixed-step method, a smaller "
            "learning rate, or regularizing the dynamics."
        )


def _has_grad_params(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())

"""``solve``: integrate a dynamics module over given times and return the states and the stats.

One call is one solve: its times (start and end included) come with the call, so one dynamics
module integrates any interval, forward or backward in time; its statistics come back with the
states (:class:`~zoo.ode.stats.SolveStats`), and the backward pass adds its own to them.
States are tensors or tuples of tensors. Extra inputs of the dynamics (a conditioning vector, a
noise probe drawn once per solve) are the explicit ``context``: the dynamics are called as
``dynamics(t, y, context)``, and the adjoint computes the gradients of the context's tensors
too. Times that require a gradient (a learnable end time) are differentiated exactly, directly
and by the adjoint, from ``dy(t_k)/dt_k = f(t_k, y(t_k))`` and ``dy(t_k)/dt_0 = -(dy(t_k)/dy_0)
f(t_0, y_0)``: the solve itself runs on the detached times, and each read-out state (and the
start state) gets a term that is zero in value and carries that derivative, at the cost of one
evaluation per time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint
from torchdiffeq._impl.odeint import SOLVERS as _TORCHDIFFEQ_SOLVERS

from zoo.errors import SettingError
from zoo.ode.solvers import AdjointSettings, SolverInfo, SolverSettings, StepControl
from zoo.ode.stats import SolveStats, log_solve

State = torch.Tensor | tuple[torch.Tensor, ...]
Context = torch.Tensor | Sequence[torch.Tensor] | dict[str, torch.Tensor] | None

_FAILURES = (
    ("underflow in dt", "the step size underflowed (the dynamics are stiff or diverging)"),
    ("non-finite values", "the state became NaN or infinite"),
    ("max_num_steps exceeded", "the solver took its maximum number of steps (solver.max_steps)"),
)
_ADVICE = ("Try a looser tolerance or a larger solver.max_steps, a fixed-step method, a smaller "
           "learning rate, or regularizing the dynamics.")


class ODESolveError(RuntimeError):
    """A solve, forward or adjoint, that could not reach its end time: stiff, diverging or out of steps.

    Args:
        message: What failed, where, and what to try.
        stats: The failed solve's statistics, up to the failure.
    """

    def __init__(self, message: str, stats: SolveStats | None = None) -> None:
        super().__init__(message)
        self.stats = stats


@dataclass
class Solution:
    """The result of :func:`solve`.

    Attributes:
        ys: The states at ``times``, stacked along a new first dimension (a tuple of such stacks
            for a tuple state).
        times: The times the states are at.
        stats: The statistics of the solve; the ``*_backward`` fields fill in when the gradient runs.
    """

    ys: State
    times: torch.Tensor
    stats: SolveStats

    @property
    def end(self) -> State:
        """The state at the last time."""
        return _map(lambda y: y[-1], self.ys)


def solve(dynamics: nn.Module | Callable, y0: State, times: Sequence[float] | torch.Tensor,
          settings: SolverSettings | dict[str, Any] | None = None, *, context: Context = None,
          step_to_outputs: bool | None = None) -> Solution:
    """Integrates ``dy/dt = dynamics(t, y[, context])`` from ``y0`` at ``times[0]`` through ``times``.

    Args:
        dynamics: The vector field, called as ``dynamics(t, y)``, or ``dynamics(t, y, context)``
            when a context is given; returns a tensor (or tuple) shaped like ``y``.
        y0: The state at ``times[0]``: a floating tensor, or a tuple of them (one dtype and device).
        times: The times to return the state at, the start first; strictly increasing or
            strictly decreasing. Times that require a gradient get one.
        settings: Method, step control and adjoint; unset fields take :data:`~zoo.ode.solvers.DEFAULTS`.
        context: Tensors the dynamics read besides ``(t, y)``, fixed over the solve (a tensor, or
            a sequence or dict of them); under the adjoint their gradients are computed too.
        step_to_outputs: Make every requested time the end of a step, so that the state meets
            the tolerance there (True), or interpolate between steps (False). None: steps end on
            ``times`` for a start-to-end solve where the method can, and on a longer grid where
            the method's ``steps_on_outputs`` says so. Stepping on outputs costs evaluations
            where outputs fall between the steps the solver would take.

    Returns:
        The states at ``times`` and the solve's statistics.

    Raises:
        ODESolveError: The solve (or, later, its adjoint solve) failed; the message names the
            time reached and the evaluations made.
        ValueError: Bad times, states or settings, or a non-differentiable method under autograd.
    """
    settings = SolverSettings.coerce(settings)
    y0 = _check_state(y0)
    first = y0[0] if isinstance(y0, tuple) else y0
    times = _check_times(times, first)
    stats = SolveStats(method=settings.info.name, _times=times)
    log_solve(stats)
    if len(times) == 1:
        return Solution(_map(lambda y: y.unsqueeze(0), y0), times, stats)
    if settings.info.symplectic and isinstance(y0, tuple):
        raise SettingError(f"{settings.info.name!r} splits one tensor state into (q, p); give it a tensor, "
                         "not a tuple")
    context_tensors = _tensors(context)
    learn_times = times.requires_grad
    # walking the dynamics' parameters costs tens of microseconds: only where they are read
    wants_params = settings.adjoint_solve is not None or not settings.info.differentiable
    params = [p for p in getattr(dynamics, "parameters", list)() if p.requires_grad] if wants_params else []
    needs_grad = torch.is_grad_enabled() and (
        any(y.requires_grad for y in _flat(y0)) or params or learn_times
        or any(c.requires_grad for c in context_tensors))
    if needs_grad and not settings.info.differentiable:
        raise SettingError(
            f"{settings.method!r} does not propagate gradients: use it for evaluation "
            "(under torch.no_grad()) or pick another solver.method"
        )
    adjoint_params = (*params, *(c for c in context_tensors if c.requires_grad))
    field = _Field(dynamics, stats, context, settings)
    learn_times = learn_times and torch.is_grad_enabled()
    if learn_times:
        start_rate = field.rate(times[0], y0)
        y0 = _map2(lambda y, rate: y - (times[0] - times[0].detach()) * rate, y0, start_rate)
    ys = _integrate(field, y0, times.detach(), settings, step_to_outputs, adjoint_params)
    if learn_times:
        ys = _with_time_derivatives(field, ys, times, start_rate)
    if not all(torch.isfinite(y[-1]).all() for y in _flat(ys)):
        raise ODESolveError(failure_message("non-finite values in the solution", stats, settings), stats)
    return Solution(ys, times, stats)


def _with_time_derivatives(field: _Field, ys: State, times: torch.Tensor, start_rate: State) -> State:
    """``ys`` unchanged in value, with the derivative ``f(t_k, y_k)`` in each read-out time ``t_k``.

    At ``t_0`` the term cancels the start state's (whose value is the given ``y_0``).
    """
    shift = times - times.detach()
    ends = [field.rate(times[k], _map(lambda y, k=k: y[k], ys)) for k in range(1, len(times))]
    rates = [torch.stack(parts) for parts in zip(_flat(start_rate), *map(_flat, ends), strict=True)]
    shifted = tuple(y + shift.reshape(-1, *[1] * (y.dim() - 1)) * rate
                    for y, rate in zip(_flat(ys), rates, strict=True))
    return shifted if isinstance(ys, tuple) else shifted[0]


def _integrate(field: _Field, y0: State, grid: torch.Tensor, settings: SolverSettings,
               step_to_outputs: bool | None, adjoint_params: tuple[torch.Tensor, ...]) -> State:
    """One torchdiffeq solve of ``field`` along ``grid``, its failures as :class:`ODESolveError`."""
    kwargs = _odeint_kwargs(settings, grid, step_to_outputs, field)
    stats = field.stats
    field.solving = True
    try:
        if settings.adjoint_solve is not None:
            return odeint_adjoint(field, y0, grid, adjoint_params=adjoint_params, **kwargs,
                                  **_adjoint_kwargs(settings.adjoint_solve, settings, stats))
        return odeint(field, y0, grid, **kwargs)
    except AssertionError as err:
        raise ODESolveError(failure_message(str(err), stats, settings), stats) from err
    finally:
        field.solving = False


def failure_message(error: str, stats: SolveStats, settings: SolverSettings, backward: bool = False) -> str:
    """The one-line message of a failed solve: the reason, the time reached, the NFE, the settings."""
    reason = next((text for key, text in _FAILURES if key in error), error)
    start, end = stats.span
    if backward:
        adjoint = settings.adjoint_solve
        reached, nfe = stats.t_reached_backward, stats.nfe_backward
        where = (f"of the backward pass from {end:g} to {start:g} after {nfe} backward function "
                 f"evaluations (adjoint method={adjoint.method.name}, rtol={_tol(adjoint.rtol)}, "
                 f"atol={_tol(adjoint.atol)})")
        head = "ODE adjoint solve failed"
    else:
        step = settings.step
        reached, nfe = stats.t_reached, stats.nfe_forward
        where = (f"of [{start:g}, {end:g}] after {nfe} function evaluations (method={settings.info.name}, "
                 f"rtol={_tol(step.rtol)}, atol={_tol(step.atol)})")
        head = "ODE solve failed"
    at = "the start" if reached is None else f"t={reached:.6g}"
    return f"{head}: {reason}. Reached {at} {where}. {_ADVICE}"


class _Field:
    """The dynamics as the solver sees them, for one solve: counts, context, time map, callbacks.

    A plain callable, not an ``nn.Module``: it is called at every evaluation, and the adjoint is
    given its parameters explicitly.
    """

    def __init__(self, dynamics, stats: SolveStats, context: Context, settings: SolverSettings) -> None:
        self.dynamics = dynamics
        self.stats = stats
        self.context = context
        self.evaluation = settings.evaluation
        adjoint = settings.adjoint_solve
        self.hook_backward = adjoint is None
        self.solving = False
        if settings.info.name != "scipy_solver":
            self._set_step_callbacks(settings.info.adaptive, "", ("steps_accepted", "steps_rejected"))
        if adjoint is not None:
            self._set_step_callbacks(adjoint.method.adaptive, "_adjoint",
                                     ("steps_accepted_backward", "steps_rejected_backward"))

    def _call(self, t: torch.Tensor, y: State, evaluate: Callable) -> State:
        stats = self.stats
        if self.solving:
            stats.nfe_forward += 1
            stats._t_forward = t
        else:
            stats.nfe_backward += 1
            stats._t_backward = t
        out = evaluate(t, y) if self.evaluation.plain else self._evaluate_as_set(evaluate, t, y)
        if self.solving and self.hook_backward:
            grad_out = out if isinstance(out, torch.Tensor) else next(
                (o for o in out if o.requires_grad), out[0])
            if grad_out.requires_grad:
                grad_out.register_hook(self._count_backward)
        return out

    def __call__(self, t: torch.Tensor, y: State) -> State:
        return self._call(t, y, self._evaluate)

    def rate(self, t: torch.Tensor, y: State) -> State:
        """``f(t, y)``, detached: one more forward evaluation, outside the solver's steps."""
        solving, self.solving = self.solving, True
        try:
            with torch.no_grad():
                return self._call(t.detach(), _map(torch.Tensor.detach, y), self._evaluate)
        finally:
            self.solving = solving

    def _evaluate_as_set(self, evaluate: Callable, t: torch.Tensor, y: State) -> State:
        """``evaluate(t, y)`` in the settings' precision and memory format, returned in ``y``'s dtype."""
        if self.evaluation.channels_last:
            y = _map(_channels_last, y)
        first = _flat(y)[0]
        bf16 = self.evaluation.precision == "bf16"
        with torch.autocast(first.device.type, dtype=torch.bfloat16, enabled=bf16):
            out = evaluate(t, y)
        return _map(lambda o: o.to(first.dtype), out) if bf16 else out

    def half_rate(self, t: torch.Tensor, y: torch.Tensor, part: str) -> torch.Tensor:
        """One half of the field, for ``leapfrog``: the dynamics' own ``half_rate`` where it has one."""
        return self._call(t, y, lambda time, state: self._half(time, state, part))

    def _evaluate(self, t: torch.Tensor, y: State) -> State:
        if self.context is None:
            return self.dynamics(t, y)
        return self.dynamics(t, y, self.context)

    def _half(self, t: torch.Tensor, y: torch.Tensor, part: str) -> torch.Tensor:
        own = getattr(self.dynamics, "half_rate", None)
        if own is not None and self.context is None:
            return own(t, y, part)
        if own is not None:
            return own(t, y, part, self.context)
        return self._evaluate(t, y).chunk(2, dim=1 if y.dim() >= 2 else 0)["qp".index(part)]

    def _count_backward(self, grad: torch.Tensor) -> None:
        self.stats.nfe_backward += 1

    def _counter(self, name: str) -> Callable:
        """A torchdiffeq step callback that adds one to the stats' counter ``name``."""

        def count(t0, y0, dt) -> None:
            setattr(self.stats, name, getattr(self.stats, name) + 1)

        return count

    def _set_step_callbacks(self, adaptive: bool, suffix: str, counters: tuple[str, str]) -> None:
        """Sets torchdiffeq's step callbacks, only those the method supports (so it does not warn).

        Adaptive methods report accepted and rejected steps, fixed-grid ones each step.
        """
        accepted, rejected = counters
        if adaptive:
            setattr(self, f"callback_accept_step{suffix}", self._counter(accepted))
            setattr(self, f"callback_reject_step{suffix}", self._counter(rejected))
        else:
            setattr(self, f"callback_step{suffix}", self._counter(accepted))


def _odeint_kwargs(settings: SolverSettings, grid: torch.Tensor, step_to_outputs: bool | None,
                   field: _Field) -> dict[str, Any]:
    info, step = settings.info, settings.step
    options = info.options(step, settings.method_options)
    if step_to_outputs is None:
        step_to_outputs = (len(grid) == 2 and info.exact_end) or info.steps_on_outputs
    if step_to_outputs and info.exact_end:
        options["step_t"] = grid[1:]
    elif step_to_outputs and not info.adaptive and "step_size" in options:
        options["grid_constructor"] = _grid_through_outputs(options.pop("step_size"))
    if info.symplectic:
        options["half_rate"] = _reversible_half_rate(field, grid)
    return {"method": info.name, "rtol": _as_tol(step.rtol), "atol": _as_tol(step.atol), "options": options}


def _grid_through_outputs(step_size: float) -> Callable:
    """A fixed-grid constructor: steps of ``step_size``, plus every output time."""

    def grid(func, y0, t: torch.Tensor) -> torch.Tensor:
        count = int(torch.ceil((t[-1] - t[0]) / step_size).item())
        steps = t[0] + torch.arange(count, dtype=t.dtype, device=t.device) * step_size
        return torch.unique(torch.cat([steps, t]))  # sorted: torchdiffeq's time always increases

    return grid


def _reversible_half_rate(field: _Field, grid: torch.Tensor) -> Callable:
    """Leapfrog's half rates in torchdiffeq's time, which is negated for decreasing times."""
    if len(grid) > 1 and grid[0] > grid[1]:
        return lambda t, y, part: -field.half_rate(-t, y, part)
    return field.half_rate


def _adjoint_kwargs(adjoint: AdjointSettings, settings: SolverSettings, stats: SolveStats) -> dict[str, Any]:
    options = adjoint.method.options(settings.step, settings.method_options)
    if not adjoint.method.symplectic:
        options.pop("split_dim", None)
    if adjoint.seminorm:
        options["norm"] = "seminorm"
    options.update(zoo_stats=stats, zoo_settings=settings)
    return {
        "adjoint_method": _guarded(adjoint.method),
        "adjoint_rtol": _as_tol(adjoint.rtol),
        "adjoint_atol": _as_tol(adjoint.atol),
        "adjoint_options": options,
    }


def _guarded(info: SolverInfo) -> str:
    """The name of ``info``'s torchdiffeq solver wrapped to fail with :class:`ODESolveError`.

    The adjoint solve runs inside autograd's backward pass, where a failure would surface as
    torchdiffeq's bare ``AssertionError``; the wrapper names the time reached and the NFE.
    """
    name = f"zoo-adjoint:{info.name}"
    if name not in _TORCHDIFFEQ_SOLVERS:
        base = _TORCHDIFFEQ_SOLVERS[info.name]

        class Guarded(base):
            def __init__(self, *args, zoo_stats: SolveStats, zoo_settings: SolverSettings, **kwargs):
                super().__init__(*args, **kwargs)
                self.zoo_stats, self.zoo_settings = zoo_stats, zoo_settings

            def integrate(self, t):
                try:
                    return super().integrate(t)
                except AssertionError as err:
                    message = failure_message(str(err), self.zoo_stats, self.zoo_settings, backward=True)
                    raise ODESolveError(message, self.zoo_stats) from err

        Guarded.__name__ = f"Guarded{base.__name__}"
        _TORCHDIFFEQ_SOLVERS[name] = Guarded
    return name


def _check_state(y0: State) -> State:
    if isinstance(y0, list):
        y0 = tuple(y0)
    parts = _flat(y0)
    if not parts or not all(isinstance(y, torch.Tensor) for y in parts):
        raise ValueError(f"the state must be a tensor or a tuple of tensors, got {type(y0).__name__}")
    if not all(y.is_floating_point() for y in parts):
        raise ValueError(f"the state must be floating point, got {[str(y.dtype) for y in parts]}")
    if len({(y.dtype, y.device) for y in parts}) > 1:
        raise ValueError(
            "the components of a tuple state must share one dtype and device, got "
            f"{[(str(y.dtype), str(y.device)) for y in parts]}; convert them with .to()"
        )
    return y0


def _check_times(times: Sequence[float] | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if isinstance(times, torch.Tensor):
        times = times.to(device=like.device, dtype=like.dtype)
    else:
        times = torch.as_tensor(times, dtype=like.dtype, device=like.device)
    if times.dim() != 1 or times.numel() == 0:
        raise ValueError(f"times must be a non-empty 1-D sequence, got shape {tuple(times.shape)}")
    if len(times) == 2:  # the common case, checked on two numbers
        start, end = times.tolist()
        if start < end or start > end:
            return times
    steps = times.detach()[1:] - times.detach()[:-1]
    if len(steps) and not ((steps > 0).all() or (steps < 0).all()):
        raise ValueError(f"times must be strictly increasing or strictly decreasing, got {times.tolist()}")
    return times


def _flat(state: Any) -> tuple[torch.Tensor, ...]:
    return tuple(state) if isinstance(state, tuple) else (state,)


def _channels_last(y: torch.Tensor) -> torch.Tensor:
    return y.contiguous(memory_format=torch.channels_last) if y.dim() == 4 else y


def _map(fn: Callable, state: State) -> State:
    return tuple(fn(y) for y in state) if isinstance(state, tuple) else fn(state)


def _map2(fn: Callable, state: State, other: State) -> State:
    if isinstance(state, tuple):
        return tuple(fn(y, z) for y, z in zip(state, other, strict=True))
    return fn(state, other)


def _tensors(context: Context) -> tuple[torch.Tensor, ...]:
    if context is None:
        return ()
    if isinstance(context, torch.Tensor):
        return (context,)
    values = context.values() if isinstance(context, dict) else context
    return tuple(v for v in values if isinstance(v, torch.Tensor))


def _as_tol(value: float | Sequence[float]) -> float | tuple[float, ...]:
    return tuple(value) if isinstance(value, list | tuple) else value


def _tol(value: float | Sequence[float]) -> str:
    return ",".join(f"{v:g}" for v in value) if isinstance(value, list | tuple) else f"{value:g}"


__all__ = ["ODESolveError", "Solution", "StepControl", "solve"]

"""The solver registry and the one settings object that configures a solve.

Solvers are data: a :class:`SolverInfo` row per method (order, adaptive step control, whether
gradients flow through it). Every method of torchdiffeq 0.2.5 is registered, plus ``leapfrog``
(:mod:`zoo.ode.leapfrog`), which is added to torchdiffeq's own table so that ``odeint`` and
``odeint_adjoint`` both accept it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from torchdiffeq._impl.odeint import SOLVERS as _TORCHDIFFEQ_SOLVERS

from zoo.ode.leapfrog import Leapfrog
from zoo.ode.registry import Registry


@dataclass(frozen=True)
class SolverInfo:
    """What a method is.

    Attributes:
        name: The method's name in torchdiffeq (and in configs).
        order: Order of accuracy of the solution; None where it varies (scipy's LSODA).
        adaptive: Whether the step size is chosen from an error estimate (rtol/atol).
        differentiable: Whether gradients flow through the solve (scipy's solvers detach).
        symplectic: Whether the method preserves the symplectic form of separable dynamics.
        exact_end: Whether an end-state solve can end a step exactly at the end time (torchdiffeq's
            ``step_t``) instead of stepping past it and interpolating. torchdiffeq's dense output
            of dopri8 and bosh3 misses the tolerance by up to 10x-1000x; stepping onto the end
            time meets it.
    """

    name: str
    order: int | None
    adaptive: bool
    differentiable: bool = True
    symplectic: bool = False
    exact_end: bool = False


SOLVERS: Registry[SolverInfo] = Registry("solver")

_TABLE = (
    SolverInfo("dopri5", 5, adaptive=True, exact_end=True),
    SolverInfo("dopri8", 8, adaptive=True, exact_end=True),
    SolverInfo("bosh3", 3, adaptive=True, exact_end=True),
    SolverInfo("fehlberg2", 2, adaptive=True, exact_end=True),
    SolverInfo("adaptive_heun", 2, adaptive=True, exact_end=True),
    SolverInfo("euler", 1, adaptive=False),
    SolverInfo("midpoint", 2, adaptive=False),
    SolverInfo("heun2", 2, adaptive=False),
    SolverInfo("heun3", 3, adaptive=False),
    SolverInfo("rk4", 4, adaptive=False),
    SolverInfo("explicit_adams", 4, adaptive=False),
    SolverInfo("implicit_adams", 4, adaptive=False),
    SolverInfo("fixed_adams", 4, adaptive=False),
    SolverInfo("scipy_solver", None, adaptive=True, differentiable=False),
    SolverInfo("leapfrog", 2, adaptive=False, symplectic=True),
)
for _info in _TABLE:
    SOLVERS.register(_info.name)(_info)
_TORCHDIFFEQ_SOLVERS.setdefault("leapfrog", Leapfrog)


def _check_positive(name: str, value: float | None) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise ValueError(f"solver.{name} must be a positive finite number, got {value!r}")


@dataclass(frozen=True)
class SolverSettings:
    """How to integrate: method, step control and the adjoint, all checked when built.

    Attributes:
        method: A registered solver name (``zoo.ode.SOLVERS.names()``).
        rtol: Relative tolerance of adaptive methods.
        atol: Absolute tolerance of adaptive methods.
        step_size: Step of fixed-grid methods; the first step tried by adaptive ones. None:
            fixed-grid methods step from one output time to the next.
        max_steps: Most steps an adaptive method may take before the solve fails.
        adjoint: Backpropagate by solving the adjoint ODE (O(1) memory) instead of through
            the solver's operations.
        seminorm: Measure the adjoint's error on the state and adjoint only, not the parameter
            gradients (Kidger et al. 2021): fewer backward evaluations, same gradients.
        adjoint_method: Method of the adjoint solve; None: the same as ``method``.
        adjoint_rtol: Relative tolerance of the adjoint solve; None: ``rtol``.
        adjoint_atol: Absolute tolerance of the adjoint solve; None: ``atol``.
        options: Further options passed to the torchdiffeq solver as they are (for example
            ``{"solver": "RK45"}`` for ``scipy_solver``, ``{"max_order": 6}`` for the Adams
            methods, ``{"split_dim": 1}`` for ``leapfrog``).
    """

    method: str = "dopri5"
    rtol: float = 1e-3
    atol: float = 1e-3
    step_size: float | None = None
    max_steps: int | None = None
    adjoint: bool = False
    seminorm: bool = False
    adjoint_method: str | None = None
    adjoint_rtol: float | None = None
    adjoint_atol: float | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        info = SOLVERS.get(self.method)
        for name in ("rtol", "atol", "step_size", "adjoint_rtol", "adjoint_atol"):
            _check_positive(name, getattr(self, name))
        if self.max_steps is not None and (int(self.max_steps) != self.max_steps or self.max_steps < 1):
            raise ValueError(f"solver.max_steps must be a positive integer, got {self.max_steps!r}")
        if self.max_steps is not None and not info.adaptive:
            raise ValueError(
                f"solver.max_steps bounds adaptive methods; {self.method!r} takes fixed steps of "
                "solver.step_size. Drop max_steps or pick an adaptive method "
                f"({', '.join(n for n in SOLVERS.names() if SOLVERS.get(n).adaptive)})."
            )
        if info.name == "scipy_solver" and (self.step_size or self.max_steps):
            raise ValueError(
                "scipy_solver controls its own steps: drop solver.step_size and solver.max_steps "
                "(scipy's min_step/max_step go in solver.options)"
            )
        if self.adjoint:
            self._check_adjoint(info)
        elif self.seminorm or self.adjoint_method or self.adjoint_rtol or self.adjoint_atol:
            raise ValueError("solver.seminorm and solver.adjoint_* settings need solver.adjoint: true")

    def _check_adjoint(self, info: SolverInfo) -> None:
        if not info.differentiable:
            raise ValueError(f"{self.method!r} does not propagate gradients; it cannot run the adjoint")
        backward = SOLVERS.get(self.adjoint_method or self.method)
        if backward.symplectic:
            raise ValueError(
                f"the adjoint of {backward.name!r} dynamics is not separable into (q, p): set "
                "solver.adjoint_method to a general method (for example rk4 with step_size, or "
                "dopri5), or solver.adjoint: false to backpropagate through the leapfrog steps"
            )
        if not backward.differentiable:
            raise ValueError(f"solver.adjoint_method {backward.name!r} cannot solve the adjoint")
        if self.seminorm and not backward.adaptive:
            raise ValueError(
                f"solver.seminorm changes adaptive step control; the adjoint method "
                f"{backward.name!r} takes fixed steps"
            )

    @classmethod
    def coerce(cls, value: SolverSettings | dict[str, Any] | None) -> SolverSettings:
        """Accepts settings, a plain dict of them (as saved in checkpoints and cards), or None."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        unknown = set(value) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(
                f"unknown solver settings {sorted(unknown)}; valid: "
                f"{[f.name for f in dataclasses.fields(cls)]}"
            )
        return cls(**value)

    def as_dict(self) -> dict[str, Any]:
        """Plain-data form, for hyperparameters and model cards."""
        return dataclasses.asdict(self)

    @property
    def info(self) -> SolverInfo:
        """The registry row of ``method``."""
        return SOLVERS.get(self.method)

    def odeint_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``torchdiffeq.odeint`` (and of ``odeint_adjoint``'s forward solve)."""
        return {
            "method": self.method,
            "rtol": self.rtol,
            "atol": self.atol,
            "options": _method_options(SOLVERS.get(self.method), self.step_size, self.max_steps,
                                       self.options),
        }

    def adjoint_kwargs(self) -> dict[str, Any]:
        """The ``adjoint_*`` keyword arguments of ``torchdiffeq.odeint_adjoint``."""
        backward = SOLVERS.get(self.adjoint_method or self.method)
        options = _method_options(backward, self.step_size, self.max_steps, self.options)
        if not backward.symplectic:
            options.pop("split_dim", None)
        if self.seminorm:
            options["norm"] = "seminorm"
        return {
            "adjoint_method": backward.name,
            "adjoint_rtol": self.adjoint_rtol or self.rtol,
            "adjoint_atol": self.adjoint_atol or self.atol,
            "adjoint_options": options,
        }


def _method_options(info: SolverInfo, step_size: float | None, max_steps: int | None,
                    extra: dict[str, Any]) -> dict[str, Any]:
    options = dict(extra)
    if step_size is not None:
        options["first_step" if info.adaptive else "step_size"] = step_size
    if max_steps is not None:
        options["max_num_steps"] = int(max_steps)
    return options

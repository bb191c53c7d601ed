"""The solver registry, and the settings of a solve: method, step control and adjoint.

Solvers are data: a :class:`SolverInfo` row per method (order, adaptive step control, whether
gradients flow through it). Every method of torchdiffeq 0.2.5 is registered, plus ``leapfrog``
(:mod:`zoo.ode.leapfrog`), which is added to torchdiffeq's own table so that ``odeint`` and
``odeint_adjoint`` both accept it. A method's special cases (scipy steps on its own, leapfrog
splits its state and cannot solve an adjoint) live in its row's class, not in the settings.

A solve is configured by three small objects, combined in :class:`SolverSettings`:

- the method, a :class:`SolverInfo` from :data:`SOLVERS`, with its ``options``;
- :class:`StepControl`: tolerances, step size and the most steps;
- :class:`AdjointSettings`: whether and how the gradient is found by the adjoint solve;
- :class:`FieldEvaluation`: how each evaluation of the vector field is computed (precision,
  memory format), which changes its speed, not the solver's arithmetic.

``SolverSettings`` is also their plain-data face, the flat ``solver:`` block of configs, model
cards and checkpoints. Its fields default to None, "not set": a model fills them from its
family's defaults (:meth:`SolverSettings.resolve`), so a config that sets only ``rtol`` keeps
the family's adjoint.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from torchdiffeq._impl.odeint import SOLVERS as _TORCHDIFFEQ_SOLVERS

from zoo.errors import SettingError
from zoo.ode.leapfrog import Leapfrog
from zoo.ode.registry import Registry

Tolerance = float | Sequence[float]


@dataclass(frozen=True)
class StepControl:
    """How steps are chosen.

    Attributes:
        rtol: Relative tolerance of adaptive methods; for a tuple state, one per component.
        atol: Absolute tolerance of adaptive methods; for a tuple state, one per component.
        step_size: Step of fixed-grid methods; the first step tried by adaptive ones. None:
            fixed-grid methods step from one output time to the next.
        max_steps: Most steps an adaptive method may take before the solve fails.
    """

    rtol: Tolerance = 1e-3
    atol: Tolerance = 1e-3
    step_size: float | None = None
    max_steps: int | None = None


@dataclass(frozen=True)
class AdjointSettings:
    """The adjoint solve that finds the gradient (Chen et al. 2018): O(1) memory in the steps.

    Attributes:
        method: Method of the adjoint solve.
        rtol: Relative tolerance of the adjoint solve.
        atol: Absolute tolerance of the adjoint solve.
        seminorm: Measure the adjoint's error on the state and adjoint only, not the parameter
            gradients (Kidger et al. 2021): fewer backward evaluations, same gradients.
    """

    method: SolverInfo
    rtol: Tolerance
    atol: Tolerance
    seminorm: bool = False


#: The names of ``solver.precision``: the vector field's compute precision.
PRECISIONS = ("state", "bf16")


@dataclass(frozen=True)
class FieldEvaluation:
    """How the solver evaluates the vector field: its compute precision and memory format.

    Neither changes the solver's own arithmetic: the state, the stages, the error estimate and
    the step control stay in the state's dtype and layout.

    Attributes:
        precision: ``"state"``: the field runs in the state's dtype. ``"bf16"``: under bfloat16
            autocast (convolutions and matrix products in bfloat16, on CPUs with AVX-512 BF16
            or AMX and on GPUs), its output cast back to the state's dtype.
        channels_last: Hand image states (4-D tensors) to the field in channels-last memory
            format, the layout oneDNN and cuDNN convolutions run fastest in.
    """

    precision: str = "state"
    channels_last: bool = False

    @property
    def plain(self) -> bool:
        """Whether evaluations are the field's own call, unchanged."""
        return self.precision == "state" and not self.channels_last


@dataclass(frozen=True)
class SolverInfo:
    """What a method is, and what it accepts.

    Attributes:
        name: The method's name in torchdiffeq (and in configs).
        order: Order of accuracy of the solution; None where it varies (scipy's LSODA).
        adaptive: Whether the step size is chosen from an error estimate (rtol/atol).
        differentiable: Whether gradients flow through the solve (scipy's solvers detach).
        symplectic: Whether the method preserves the symplectic form of separable dynamics.
        exact_end: Whether the method can end steps exactly on given times (torchdiffeq's
            ``step_t``) instead of stepping past them and interpolating.
        steps_on_outputs: The default read-out of a trajectory: step onto every requested time
            (True) or interpolate between steps (False). True where torchdiffeq's dense output
            misses the tolerance (``python benchmarks/readout_nfe.py`` measures both ways).
    """

    name: str
    order: int | None
    adaptive: bool
    differentiable: bool = True
    symplectic: bool = False
    exact_end: bool = False
    steps_on_outputs: bool = False

    def check(self, step: StepControl, adjoint: AdjointSettings | None) -> None:
        """Fails with what to change where the settings do not fit this method."""
        if step.max_steps is not None and not self.adaptive:
            raise SettingError(
                f"solver.max_steps bounds adaptive methods; {self.name!r} takes fixed steps of "
                "solver.step_size. Drop max_steps or pick an adaptive method "
                f"({', '.join(n for n in SOLVERS.names() if SOLVERS.get(n).adaptive)})."
            )
        if adjoint is None:
            return
        if not self.differentiable:
            raise SettingError(f"{self.name!r} does not propagate gradients; it cannot run the adjoint")
        adjoint.method.check_as_adjoint(adjoint)

    def check_as_adjoint(self, adjoint: AdjointSettings) -> None:
        """Fails where this method cannot solve the adjoint as ``adjoint`` asks."""
        if not self.differentiable:
            raise SettingError(f"solver.adjoint_method {self.name!r} cannot solve the adjoint")
        if adjoint.seminorm and not self.adaptive:
            raise SettingError(
                f"solver.seminorm changes adaptive step control; the adjoint method "
                f"{self.name!r} takes fixed steps"
            )

    def options(self, step: StepControl, extra: Mapping[str, Any]) -> dict[str, Any]:
        """The torchdiffeq ``options`` of a solve by this method."""
        options = dict(extra)
        if step.step_size is not None:
            options["first_step" if self.adaptive else "step_size"] = step.step_size
        if step.max_steps is not None:
            options["max_num_steps"] = int(step.max_steps)
        return options


@dataclass(frozen=True)
class _Scipy(SolverInfo):
    """scipy's ``solve_ivp``: it chooses its own steps and detaches gradients."""

    def check(self, step: StepControl, adjoint: AdjointSettings | None) -> None:
        if step.step_size or step.max_steps:
            raise SettingError(
                "scipy_solver controls its own steps: drop solver.step_size and solver.max_steps "
                "(scipy's min_step/max_step go in solver.options)"
            )
        super().check(step, adjoint)


@dataclass(frozen=True)
class _Leapfrog(SolverInfo):
    """Velocity Verlet: splits its state into (q, p), so it cannot integrate an adjoint."""

    def check_as_adjoint(self, adjoint: AdjointSettings) -> None:
        raise SettingError(
            f"the adjoint of {self.name!r} dynamics is not separable into (q, p): set "
            "solver.adjoint_method to a general method (for example rk4 with step_size, or "
            "dopri5), or solver.adjoint: false to backpropagate through the leapfrog steps"
        )


SOLVERS: Registry[SolverInfo] = Registry("solver")

_TABLE = (
    SolverInfo("dopri5", 5, adaptive=True, exact_end=True),
    SolverInfo("dopri8", 8, adaptive=True, exact_end=True, steps_on_outputs=True),
    SolverInfo("bosh3", 3, adaptive=True, exact_end=True, steps_on_outputs=True),
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
    _Scipy("scipy_solver", None, adaptive=True, differentiable=False),
    _Leapfrog("leapfrog", 2, adaptive=False, symplectic=True),
)
for _info in _TABLE:
    SOLVERS.register(_info.name)(_info)
_TORCHDIFFEQ_SOLVERS.setdefault("leapfrog", Leapfrog)


def _check_tolerance(name: str, value: Any) -> None:
    values = value if isinstance(value, list | tuple) else [value]
    if not values or not all(isinstance(v, int | float) and v > 0 and math.isfinite(v) for v in values):
        raise SettingError(f"solver.{name} must be a positive finite number (or one per state "
                         f"component), got {value!r}")


def _strictest(value: float | Sequence[float]) -> float:
    """One tolerance for the adjoint's state (which is not the forward's tuple): the smallest."""
    return min(value) if isinstance(value, list | tuple) else value


#: What an unset field of :class:`SolverSettings` means when no family sets it.
DEFAULTS: dict[str, Any] = {
    "method": "dopri5", "rtol": 1e-3, "atol": 1e-3, "step_size": None, "max_steps": None,
    "adjoint": False, "seminorm": False, "adjoint_method": None, "adjoint_rtol": None,
    "adjoint_atol": None, "options": {}, "precision": "state", "channels_last": False,
}


@dataclass(frozen=True)
class SolverSettings:
    """The flat, plain-data settings of a solve: method, step control and adjoint in one block.

    Every field defaults to None, "not set": :meth:`resolve` fills it from a model family's
    defaults, then from :data:`DEFAULTS` (dopri5 at 1e-3, no adjoint). The checks run when the
    settings are built, with unset fields read as :data:`DEFAULTS`.

    Attributes:
        method: A registered solver name (``zoo.ode.SOLVERS.names()``).
        rtol: Relative tolerance of adaptive methods (see :class:`StepControl`).
        atol: Absolute tolerance of adaptive methods.
        step_size: Step of fixed-grid methods; the first step tried by adaptive ones.
        max_steps: Most steps an adaptive method may take before the solve fails.
        adjoint: Backpropagate by solving the adjoint ODE (O(1) memory) instead of through
            the solver's operations.
        seminorm: The adjoint's error measured without the parameter gradients (Kidger et al. 2021).
        adjoint_method: Method of the adjoint solve; None: the same as ``method``.
        adjoint_rtol: Relative tolerance of the adjoint solve (one number); None: ``rtol``, the
            smallest one if ``rtol`` is per component.
        adjoint_atol: Absolute tolerance of the adjoint solve (one number); None: ``atol``, likewise.
        options: Further options passed to the torchdiffeq solver as they are (for example
            ``{"solver": "RK45"}`` for ``scipy_solver``, ``{"max_order": 6}`` for the Adams
            methods, ``{"split_dim": 1}`` for ``leapfrog``).
        precision: The vector field's compute precision, ``"state"`` or ``"bf16"`` (see
            :class:`FieldEvaluation`).
        channels_last: Evaluate the field on image states in channels-last memory format.
    """

    method: str | None = None
    rtol: float | list[float] | None = None
    atol: float | list[float] | None = None
    step_size: float | None = None
    max_steps: int | None = None
    adjoint: bool | None = None
    seminorm: bool | None = None
    adjoint_method: str | None = None
    adjoint_rtol: float | None = None
    adjoint_atol: float | None = None
    options: dict[str, Any] | None = None
    precision: str | None = None
    channels_last: bool | None = None

    def __post_init__(self) -> None:
        for name in ("method", "adjoint_method"):
            if getattr(self, name) is not None:
                SOLVERS.get(getattr(self, name))
        for name in ("rtol", "atol", "adjoint_rtol", "adjoint_atol"):
            if getattr(self, name) is not None:
                _check_tolerance(name, getattr(self, name))
        for name in ("adjoint_rtol", "adjoint_atol"):
            if isinstance(getattr(self, name), list | tuple):
                raise SettingError(f"solver.{name} must be one number: the adjoint's state is not the "
                                   f"forward's tuple; got {getattr(self, name)!r}")
        if self.step_size is not None and not (self.step_size > 0 and math.isfinite(self.step_size)):
            raise SettingError(f"solver.step_size must be a positive finite number, got {self.step_size!r}")
        if self.max_steps is not None and (int(self.max_steps) != self.max_steps or self.max_steps < 1):
            raise SettingError(f"solver.max_steps must be a positive integer, got {self.max_steps!r}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise SettingError(f"solver.precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if self.channels_last is not None and not isinstance(self.channels_last, bool):
            raise SettingError(f"solver.channels_last must be true or false, got {self.channels_last!r}")
        full = self._filled({})
        if not full["adjoint"] and (full["seminorm"] or full["adjoint_method"] or full["adjoint_rtol"]
                                    or full["adjoint_atol"]):
            raise SettingError("solver.seminorm and solver.adjoint_* settings need solver.adjoint: true")
        SOLVERS.get(full["method"]).check(self._step(full), self._adjoint(full))

    def _filled(self, defaults: Mapping[str, Any]) -> dict[str, Any]:
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {name: own[name] if own[name] is not None else defaults.get(name, DEFAULTS[name])
                for name in own}

    @staticmethod
    def _step(full: Mapping[str, Any]) -> StepControl:
        return StepControl(full["rtol"], full["atol"], full["step_size"], full["max_steps"])

    @staticmethod
    def _adjoint(full: Mapping[str, Any]) -> AdjointSettings | None:
        if not full["adjoint"]:
            return None
        return AdjointSettings(
            method=SOLVERS.get(full["adjoint_method"] or full["method"]),
            rtol=full["adjoint_rtol"] or _strictest(full["rtol"]),
            atol=full["adjoint_atol"] or _strictest(full["atol"]),
            seminorm=bool(full["seminorm"]),
        )

    def resolve(self, defaults: Mapping[str, Any] | None = None) -> SolverSettings:
        """Every field set: this object's own, else ``defaults``' (a family's), else :data:`DEFAULTS`.

        Settings already resolved are returned as they are (a solve resolves its settings on
        every call).
        """
        if self._resolved:
            return self
        return SolverSettings(**self._filled(defaults or {}))

    @cached_property
    def _resolved(self) -> bool:
        return all(getattr(self, name) is not None for name, value in DEFAULTS.items() if value is not None)

    @classmethod
    def coerce(cls, value: SolverSettings | Mapping[str, Any] | None,
               defaults: Mapping[str, Any] | None = None) -> SolverSettings:
        """Accepts settings, a plain dict of them (as saved in checkpoints and cards), or None.

        Returns:
            Resolved settings: what ``value`` leaves unset comes from ``defaults``, then
            :data:`DEFAULTS`.
        """
        if value is None:
            value = cls()
        elif not isinstance(value, cls):
            unknown = set(value) - set(DEFAULTS)
            if unknown:
                raise SettingError(f"unknown solver settings {sorted(unknown)}; valid: {list(DEFAULTS)}")
            value = cls(**value)
        return value.resolve(defaults)

    def as_dict(self) -> dict[str, Any]:
        """Plain-data form, for hyperparameters and model cards."""
        return dataclasses.asdict(self)

    @cached_property
    def info(self) -> SolverInfo:
        """The registry row of the (resolved) method."""
        return SOLVERS.get(self._filled({})["method"])

    @cached_property
    def step(self) -> StepControl:
        """The step control, unset fields read as :data:`DEFAULTS`."""
        return self._step(self._filled({}))

    @cached_property
    def evaluation(self) -> FieldEvaluation:
        """How the vector field is evaluated, unset fields read as :data:`DEFAULTS`."""
        full = self._filled({})
        return FieldEvaluation(full["precision"], full["channels_last"])

    @cached_property
    def adjoint_solve(self) -> AdjointSettings | None:
        """The adjoint's settings; None without the adjoint."""
        return self._adjoint(self._filled({}))

    @cached_property
    def method_options(self) -> dict[str, Any]:
        """The extra torchdiffeq options (``options``), never None."""
        return dict(self.options or {})

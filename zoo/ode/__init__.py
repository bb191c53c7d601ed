"""The shared ODE core, in pure PyTorch on torchdiffeq: ``solve``, solvers, dynamics, ``ODEBlock``.

Nothing here imports Lightning. The public names::

    from zoo.ode import solve, Solution, SolveStats, recording, SolverSettings
    from zoo.ode import ODEBlock, DynamicsSpec, SOLVERS, DYNAMICS
    from zoo.ode import union_of_times, gather, scatter

Importing the package registers every dynamics, those of :mod:`zoo.ode.stable` included.
"""

from zoo.ode import stable  # noqa: F401  (registers the antisymmetric and hamiltonian dynamics)
from zoo.ode.block import ODEBlock
from zoo.ode.dynamics import ACTIVATIONS, DYNAMICS, DynamicsSpec
from zoo.ode.integrate import ODESolveError, Solution, solve
from zoo.ode.registry import Registry, UnknownNameError
from zoo.ode.solvers import SOLVERS, AdjointSettings, FieldEvaluation, SolverInfo, SolverSettings, StepControl
from zoo.ode.stats import SolveLog, SolveStats, recording
from zoo.ode.times import TimeUnion, gather, pad_times, scatter, union_of_times

__all__ = [
    "ACTIVATIONS",
    "DYNAMICS",
    "SOLVERS",
    "AdjointSettings",
    "DynamicsSpec",
    "FieldEvaluation",
    "ODEBlock",
    "ODESolveError",
    "Registry",
    "Solution",
    "SolveLog",
    "SolveStats",
    "SolverInfo",
    "SolverSettings",
    "StepControl",
    "TimeUnion",
    "UnknownNameError",
    "gather",
    "pad_times",
    "recording",
    "scatter",
    "solve",
    "union_of_times",
]

"""The shared ODE core: solvers, dynamics and ``ODEBlock``, in pure PyTorch on torchdiffeq.

Nothing here imports Lightning. The public names::

    from zoo.ode import ODEBlock, SolverSettings, DynamicsSpec, SOLVERS, DYNAMICS

Importing the package registers every dynamics, those of :mod:`zoo.ode.stable` included.
"""

from zoo.ode import stable  # noqa: F401  (registers the antisymmetric and hamiltonian dynamics)
from zoo.ode.block import EvaluationCount, ODEBlock, ODESolveError
from zoo.ode.dynamics import ACTIVATIONS, DYNAMICS, DynamicsSpec
from zoo.ode.registry import Registry, UnknownNameError
from zoo.ode.solvers import SOLVERS, SolverInfo, SolverSettings

__all__ = [
    "ACTIVATIONS",
    "DYNAMICS",
    "SOLVERS",
    "DynamicsSpec",
    "EvaluationCount",
    "ODEBlock",
    "ODESolveError",
    "Registry",
    "SolverInfo",
    "SolverSettings",
    "UnknownNameError",
]

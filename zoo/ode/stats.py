"""What one solve cost, and a log that sums the solves made while it is open.

Every :func:`zoo.ode.solve` returns its own :class:`SolveStats`; nothing is kept on a module for a
later solve to overwrite. The backward pass fills in the ``*_backward`` fields of the stats of the
solve it differentiates, when it runs. A :class:`SolveLog` opened with :func:`recording` collects
the stats of every solve made inside it (also solves deep inside a model), so a training step that
solves ten intervals, or an encoder and a decoder, counts all of them::

    with recording() as log:
        loss = model(batch)
    loss.backward()
    log.nfe_forward, log.nfe_backward  # sums over every solve of the step
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch


@dataclass
class SolveStats:
    """The statistics of one solve, forward and (once the gradient has run) backward.

    Attributes:
        nfe_forward: Evaluations of the dynamics during the forward solve.
        nfe_backward: Evaluations during backpropagation: of the adjoint solve with the adjoint,
            else vector-Jacobian products through the recorded evaluations.
        steps_accepted: Steps the forward solve kept (every step of a fixed-grid method).
        steps_rejected: Steps the forward solve's error control refused.
        steps_accepted_backward: Steps the adjoint solve kept.
        steps_rejected_backward: Steps the adjoint solve refused.
        method: The method that solved forward.
    """

    nfe_forward: int = 0
    nfe_backward: int = 0
    steps_accepted: int = 0
    steps_rejected: int = 0
    steps_accepted_backward: int = 0
    steps_rejected_backward: int = 0
    method: str = ""
    _times: torch.Tensor | None = field(default=None, repr=False)
    _t_forward: torch.Tensor | None = field(default=None, repr=False)
    _t_backward: torch.Tensor | None = field(default=None, repr=False)

    @property
    def span(self) -> tuple[float, float]:
        """(start, end) of the forward solve; read only when asked, so a solve never syncs for it."""
        if self._times is None:
            return (0.0, 0.0)
        return float(self._times[0].detach()), float(self._times[-1].detach())

    @property
    def t_reached(self) -> float | None:
        """The last time the forward solve evaluated the dynamics at; None before the first."""
        return None if self._t_forward is None else float(self._t_forward.detach())

    @property
    def t_reached_backward(self) -> float | None:
        """The last time the adjoint solve (or backpropagation) evaluated the dynamics at."""
        return None if self._t_backward is None else float(self._t_backward.detach())


_FIELDS = ("nfe_forward", "nfe_backward", "steps_accepted", "steps_rejected",
           "steps_accepted_backward", "steps_rejected_backward")


@dataclass
class SolveLog:
    """The stats of every solve made while the log was open (see :func:`recording`).

    The sums read the stats when asked, so they include backward counts filled in after the
    log was closed.
    """

    solves: list[SolveStats] = field(default_factory=list)

    def total(self, name: str) -> int:
        """The sum of one counter (a :class:`SolveStats` field) over the logged solves."""
        if name not in _FIELDS:
            raise ValueError(f"unknown counter {name!r}; valid: {', '.join(_FIELDS)}")
        return sum(getattr(stats, name) for stats in self.solves)

    @property
    def nfe_forward(self) -> int:
        """Forward evaluations of all the logged solves."""
        return self.total("nfe_forward")

    @property
    def nfe_backward(self) -> int:
        """Backward evaluations of all the logged solves."""
        return self.total("nfe_backward")

    def __len__(self) -> int:
        return len(self.solves)


_OPEN_LOGS: contextvars.ContextVar[tuple[SolveLog, ...]] = contextvars.ContextVar("zoo_solve_logs",
                                                                                  default=())


@contextlib.contextmanager
def recording() -> Iterator[SolveLog]:
    """Opens a :class:`SolveLog` that collects the stats of every solve made inside the block.

    Logs nest: a solve is counted by every log open around it.
    """
    log = SolveLog()
    token = _OPEN_LOGS.set((*_OPEN_LOGS.get(), log))
    try:
        yield log
    finally:
        _OPEN_LOGS.reset(token)


def log_solve(stats: SolveStats) -> None:
    """Adds ``stats`` to every open log; called by :func:`zoo.ode.solve` for each solve."""
    for log in _OPEN_LOGS.get():
        log.solves.append(stats)

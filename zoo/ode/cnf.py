"""Continuous normalizing flows in the core: a vector field with its divergence and regularizers.

Grathwohl et al. 2019 (FFJORD): ``d log p(z(t)) / dt = -tr(df/dz)``, so solving the augmented
state ``(z, Δlog p)`` from data to the base distribution gives an exact log-density. Finlay et
al. 2020 (RNODE) add two integrals to the state, the kinetic energy ``||f||^2`` and the
Jacobian's squared Frobenius norm, whose weighted sum regularizes training.

:class:`CNFField` is a plain ``nn.Module`` for :func:`zoo.ode.solve`, called as
``field(t, (z, Δlog p, kinetic, frobenius), probe)``. The divergence is

* ``exact``: the trace of the Jacobian from one evaluation and D vector-Jacobian products
  batched into one vectorized backward call (``is_grads_batched``, ``torch.func``'s vmap), no
  loop over dimensions, for low dimensions;
* ``hutchinson``: ``e^T (df/dz) e`` from one vector-Jacobian product, with the probe ``e``
  drawn once per solve (:func:`draw_probe`) and passed as the solve's ``context``, so every
  evaluation of a solve, and the adjoint's, sees the same estimator (a fresh probe per
  evaluation makes the dynamics noisy and the NFE explode).

The regularizers come from the same product: ``||e^T J||^2`` estimates ``||J||_F^2``.
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.errors import SettingError
from zoo.ode.solvers import SolverSettings

DIVERGENCES = ("exact", "hutchinson")
PROBES = ("rademacher", "gaussian")


def draw_probe(z: torch.Tensor, kind: str = "rademacher") -> torch.Tensor:
    """A Hutchinson probe shaped like ``z``: entries ±1 (``rademacher``) or standard normal."""
    if kind == "rademacher":
        return torch.randint(0, 2, z.shape, device=z.device).to(z.dtype) * 2 - 1
    if kind == "gaussian":
        return torch.randn_like(z)
    raise SettingError(f"unknown probe {kind!r}; valid: {', '.join(PROBES)}")


def exact_jacobian(field: nn.Module, t: torch.Tensor, z: torch.Tensor,
                   create_graph: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``f(t, z)`` (shaped like z) and its per-sample Jacobian (B, D, D), D = the features of a sample.

    One evaluation of the field on the batch, then its D vector-Jacobian products with the
    basis vectors in one batched backward call. Row i of every sample's Jacobian comes from the
    product with e_i summed over the batch, so the field must treat the samples independently
    (every field of the zoo does: no batch statistics). Any sample shape: the Jacobian is of the
    flattened sample (D backward passes, so for images Hutchinson's estimator is the practical
    choice).

    Args:
        field: The vector field.
        t: The time.
        z: The states; must require grad (a leaf of the caller's, or part of its graph).
        create_graph: Keep the graph of the Jacobian, to differentiate it (training).
    """
    out = field(t, z)
    flat = out.flatten(1)
    features = flat.shape[1]
    basis = torch.eye(features, dtype=out.dtype, device=out.device)
    cotangents = basis[:, None, :].expand(features, *flat.shape).reshape(features, *out.shape)
    (rows,) = torch.autograd.grad(out, z, cotangents, create_graph=create_graph, is_grads_batched=True)
    return out, rows.flatten(2).transpose(0, 1)


class CNFField(nn.Module):
    """The augmented dynamics ``(dz, -div f, ||f||^2, ||J||_F^2)`` of a vector field.

    Args:
        field: The vector field ``f(t, z)`` on (B, D) or (B, C, H, W) tensors.
        divergence: ``exact`` or ``hutchinson`` (then the solve's context is the probe).
    """

    def __init__(self, field: nn.Module, divergence: str = "exact") -> None:
        super().__init__()
        if divergence not in DIVERGENCES:
            raise SettingError(f"unknown divergence {divergence!r}; valid: {', '.join(DIVERGENCES)}")
        self.field = field
        self.divergence = divergence

    def forward(
        self, t: torch.Tensor, state: tuple[torch.Tensor, ...], probe: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        z = state[0]
        grad_wanted = torch.is_grad_enabled()  # off in evaluation and in the adjoint's forward solve
        attached = grad_wanted and z.requires_grad  # else a leaf of our own, for df/dz
        with torch.enable_grad():
            z = z if attached else z.detach().requires_grad_(True)
            if self.divergence == "exact":
                dz, jacobian = exact_jacobian(self.field, t, z, create_graph=grad_wanted)
                divergence = jacobian.diagonal(dim1=-2, dim2=-1).sum(-1)
                frobenius = jacobian.pow(2).sum((-2, -1))
            else:
                if probe is None:
                    raise SettingError("the hutchinson divergence needs a probe: solve with context=probe")
                dz = self.field(t, z)
                (vjp,) = torch.autograd.grad(dz, z, probe, create_graph=grad_wanted)
                divergence = (vjp * probe).flatten(1).sum(-1)
                frobenius = vjp.pow(2).flatten(1).sum(-1)
        kinetic = dz.pow(2).flatten(1).sum(-1)
        derivatives = (dz, -divergence, kinetic, frobenius)
        return derivatives if grad_wanted else tuple(d.detach() for d in derivatives)


#: A tolerance so loose that a component never limits the step: the regularizers' integrals.
UNCONTROLLED = 1e12


def without_regularizer_control(settings: SolverSettings) -> SolverSettings:
    """``settings`` with per-component tolerances: (z, Δlog p) controlled, the regularizers not.

    The kinetic and Frobenius integrals only weight the loss; letting them limit the step size
    would spend evaluations on accuracy nobody reads (Finlay et al. 2020 exclude them too).
    """
    def per_component(value):
        if value is None or isinstance(value, list | tuple):
            return value
        return [value, value, UNCONTROLLED, UNCONTROLLED]

    fields = settings.as_dict()
    if fields["adjoint"]:  # the adjoint's own state is not this tuple: it keeps one tolerance
        fields["adjoint_rtol"] = fields["adjoint_rtol"] or fields["rtol"]
        fields["adjoint_atol"] = fields["adjoint_atol"] or fields["atol"]
    for name in ("rtol", "atol"):
        fields[name] = per_component(fields[name])
    return SolverSettings(**fields)


def initial_state(z: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(z, 0, 0, 0)``: the flow's state at the data, with no log-density change or cost yet."""
    zeros = z.new_zeros(z.shape[0])
    return (z, zeros, zeros.clone(), zeros.clone())


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """The log-density of N(0, I) at each sample (summed over every dimension but the first)."""
    flat = z.flatten(1)
    return -0.5 * (flat.pow(2).sum(-1) + flat.shape[1] * torch.log(torch.tensor(2 * torch.pi)))

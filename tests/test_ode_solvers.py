"""Every registered solver against dy/dt = y, y(0) = 2, whose solution is 2 e^t."""

import itertools
import math

import pytest
import torch
from torch import nn

from zoo.ode import SOLVERS, ODEBlock, SolverSettings, UnknownNameError

FIXED = [name for name in SOLVERS.names() if not SOLVERS.get(name).adaptive and name != "leapfrog"]
ADAPTIVE = [name for name in SOLVERS.names() if SOLVERS.get(name).adaptive]
# torchdiffeq's Adams methods raise their order up to max_order (12 by default); the explicit
# high-order Adams-Bashforth steps are unstable even on dy/dt = y, so the convergence test pins
# the order it checks: Adams-Bashforth with max_order 5 and the predictor-corrector with
# max_order 4 are both fourth order.
FIXED_OPTIONS = {
    "explicit_adams": {"max_order": 5},
    "implicit_adams": {"max_order": 4},
    "fixed_adams": {"max_order": 4},
}
# Global relative error allowed, as a multiple of tol * T. fehlberg2 controls the error of its
# embedded first-order solution, so its second-order result misses the tolerance by ~100x.
TOLERANCE_FACTOR = {"fehlberg2": 150.0}


class Exponential(nn.Module):
    def forward(self, t, y):
        return y


def solve(t1=1.0, **settings):
    block = ODEBlock(Exponential(), SolverSettings(**settings), t1=t1)
    y = block(torch.tensor([2.0], dtype=torch.float64))
    return float(y), block.nfe_forward


def test_registry_holds_every_torchdiffeq_method_and_leapfrog():
    from torchdiffeq._impl.odeint import SOLVERS as TORCHDIFFEQ

    expected = {
        "dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun", "euler", "midpoint", "heun2",
        "heun3", "rk4", "explicit_adams", "implicit_adams", "fixed_adams", "scipy_solver",
    }
    assert expected <= set(TORCHDIFFEQ)
    assert set(SOLVERS.names()) == expected | {"leapfrog"}


@pytest.mark.parametrize("method", FIXED)
def test_fixed_step_error_shrinks_with_the_order(method):
    order = SOLVERS.get(method).order
    steps = [1 / 8, 1 / 16, 1 / 32]
    errors = [
        abs(solve(method=method, step_size=h, options=FIXED_OPTIONS.get(method, {}))[0] - 2 * math.e)
        for h in steps
    ]
    observed = [math.log2(a / b) for a, b in itertools.pairwise(errors)]
    assert observed[-1] == pytest.approx(order, abs=0.35), (errors, observed)


@pytest.mark.parametrize("method", FIXED)
def test_fixed_step_to_t10(method):
    exact = 2 * math.exp(10)
    coarse, nfe_coarse = solve(10.0, method=method, step_size=0.1, options=FIXED_OPTIONS.get(method, {}))
    fine, nfe_fine = solve(10.0, method=method, step_size=0.05, options=FIXED_OPTIONS.get(method, {}))
    assert abs(fine - exact) < abs(coarse - exact)
    assert nfe_fine > nfe_coarse


@pytest.mark.parametrize("t1", [1.0, 10.0])
@pytest.mark.parametrize("method", ADAPTIVE)
def test_adaptive_meets_its_tolerance(method, t1):
    exact = 2 * math.exp(t1)
    errors, nfes = [], []
    for tol in (1e-3, 1e-6):
        y, nfe = solve(t1, method=method, rtol=tol, atol=tol)
        errors.append(abs(y - exact) / exact)
        nfes.append(nfe)
        assert errors[-1] <= TOLERANCE_FACTOR.get(method, 3.0) * tol * t1, (tol, errors[-1])
    assert nfes[1] >= nfes[0]


def test_leapfrog_is_second_order_on_a_harmonic_oscillator():
    class Oscillator(nn.Module):
        def forward(self, t, y):
            q, p = y.chunk(2)
            return torch.cat([p, -q])

    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    errors = []
    for h in (1 / 8, 1 / 16, 1 / 32):
        block = ODEBlock(Oscillator(), SolverSettings(method="leapfrog", step_size=h), t1=2.0)
        errors.append(abs(float(block(y0)[0]) - math.cos(2.0)))
    assert math.log2(errors[1] / errors[2]) == pytest.approx(2.0, abs=0.2)


def test_unknown_method_lists_the_valid_ones():
    expected = r"dopri6.*Did you mean 'dopri(5|8)'.*Valid names: adaptive_heun"
    with pytest.raises(UnknownNameError, match=expected):
        SolverSettings(method="dopri6")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"rtol": -1.0}, "rtol must be a positive"),
        ({"atol": float("nan")}, "atol must be a positive"),
        ({"method": "rk4", "step_size": 0.0}, "step_size must be a positive"),
        ({"method": "rk4", "max_steps": 10}, "max_steps bounds adaptive methods"),
        ({"max_steps": 2.5}, "max_steps must be a positive integer"),
        ({"seminorm": True}, "need solver.adjoint: true"),
        ({"method": "scipy_solver", "adjoint": True}, "does not propagate gradients"),
        ({"method": "leapfrog", "adjoint": True}, "set solver.adjoint_method"),
        ({"method": "dopri5", "adjoint": True, "adjoint_method": "rk4", "seminorm": True},
         "takes fixed steps"),
        ({"method": "scipy_solver", "max_steps": 5}, "scipy_solver controls its own steps"),
        ({"adjoint": True, "adjoint_method": "dopri9"}, "unknown solver 'dopri9'"),
    ],
)
def test_bad_settings_fail_when_built(settings, message):
    with pytest.raises(ValueError, match=message):
        SolverSettings(**settings)


def test_settings_round_trip_through_plain_data():
    settings = SolverSettings(method="rk4", step_size=0.25, options={"perturb": False})
    assert SolverSettings.coerce(settings.as_dict()) == settings.resolve()
    assert SolverSettings.coerce(settings.resolve().as_dict()) == settings.resolve()
    with pytest.raises(ValueError, match="unknown solver settings \\['tol'\\]"):
        SolverSettings.coerce({"tol": 1e-3})

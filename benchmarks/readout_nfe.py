"""Reading a trajectory out: interpolate between steps, or step onto every requested time.

For each adaptive method, a damped oscillator (exact solution known) is read out at 41 times on
[0, 10] at rtol = atol = 1e-6, once with ``step_to_outputs=False`` (torchdiffeq's dense output
between the steps the solver chooses) and once with ``True`` (every requested time ends a step).
Printed: the largest error at the requested times as a multiple of the tolerance, and the
forward NFE of each; the ``steps_on_outputs`` default of ``zoo.ode.SOLVERS`` rows follows it.

    python benchmarks/readout_nfe.py
"""

from __future__ import annotations

import argparse
import math

import torch

from zoo.ode import SOLVERS, solve

TOL = 1e-6


def oscillator(t, y):
    x, v = y[..., 0], y[..., 1]
    return torch.stack([v, -x - 0.1 * v], dim=-1)


def exact(times: torch.Tensor) -> torch.Tensor:
    omega = math.sqrt(1 - 0.05**2)
    decay = torch.exp(-0.05 * times)
    x = decay * (torch.cos(omega * times) + 0.05 / omega * torch.sin(omega * times))
    return x


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=41)
    args = parser.parse_args(argv)
    times = torch.linspace(0, 10, args.points, dtype=torch.float64)
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    print(f"{'method':15}{'interp err/tol':>16}{'NFE':>7}{'step-on err/tol':>17}{'NFE':>7}  default")
    for name in SOLVERS.names():
        info = SOLVERS.get(name)
        if not info.exact_end:
            continue
        cells = []
        for on_outputs in (False, True):
            solution = solve(oscillator, y0, times, {"method": name, "rtol": TOL, "atol": TOL},
                             step_to_outputs=on_outputs)
            error = float((solution.ys[:, 0] - exact(times)).abs().max()) / TOL
            cells += [f"{error:16.2f}", f"{solution.stats.nfe_forward:7d}"]
        cells[2] = cells[2][-17:].rjust(17)
        default = "step on outputs" if info.steps_on_outputs else "interpolate"
        print(f"{name:15}{''.join(cells)}  {default}")


if __name__ == "__main__":
    main()

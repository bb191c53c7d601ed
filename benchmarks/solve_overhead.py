"""Per-solve overhead of ``zoo.ode.solve`` against raw ``torchdiffeq.odeint``, in one process.

A tiny MLP field (2 -> 16 -> 2, batch 8), where the solver loop and not the field dominates, is
solved from 0 to 1 both ways with the same settings, interleaved call by call so machine load
hits both alike: forward only (under ``torch.no_grad()``) and forward + backward. ``solve`` does
the work of the zoo on each call: the settings' options, time and state checks, the counting
wrapper with its step callbacks and gradient hooks, and the stats. Printed: median microseconds
per solve and the ratio zoo / raw.

    python benchmarks/solve_overhead.py --json benchmarks/results-solve-overhead-cpu.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from torchdiffeq import odeint

from zoo.ode import SolverSettings, solve

CASES = {
    "dopri5 1e-3": {"method": "dopri5", "rtol": 1e-3, "atol": 1e-3},
    "dopri5 1e-6": {"method": "dopri5", "rtol": 1e-6, "atol": 1e-6},
    "rk4 10 steps": {"method": "rk4", "step_size": 0.1},
}


class TinyField(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))

    def forward(self, t, y):
        return self.net(y)


def raw_kwargs(settings: SolverSettings, times: torch.Tensor) -> dict:
    step = settings.step
    options = {"step_size": step.step_size} if step.step_size else {}
    if settings.info.exact_end:
        options["step_t"] = times[-1:]  # what solve passes for a start-to-end solve
    return {"method": settings.method, "rtol": step.rtol, "atol": step.atol, "options": options}


def time_pair(field, y0, times, settings, backward: bool, repeats: int) -> tuple[list[float], list[float]]:
    kwargs = raw_kwargs(settings, times)
    zoo_s, raw_s = [], []
    for _ in range(repeats):
        for run, out in ((lambda: solve(field, y0, times, settings).end, zoo_s),
                         (lambda: odeint(field, y0, times, **kwargs)[-1], raw_s)):
            start = time.perf_counter()
            if backward:
                run().sum().backward()
            else:
                with torch.no_grad():
                    run()
            out.append(time.perf_counter() - start)
    return zoo_s, raw_s


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    field, y0 = TinyField(), torch.randn(8, 2)
    times = torch.tensor([0.0, 1.0])
    rows = []
    print(f"{'case':24}{'pass':>10}{'zoo us':>10}{'raw us':>10}{'zoo/raw':>9}")
    for name, values in CASES.items():
        settings = SolverSettings(**values).resolve()
        for backward in (False, True):
            time_pair(field, y0, times, settings, backward, 10)  # warm-up
            zoo_s, raw_s = time_pair(field, y0, times, settings, backward, args.repeats)
            zoo_us, raw_us = statistics.median(zoo_s) * 1e6, statistics.median(raw_s) * 1e6
            nfe = solve(field, y0, times, settings).stats.nfe_forward
            row = {"case": name, "pass": "fwd+bwd" if backward else "fwd", "zoo_us": zoo_us,
                   "raw_us": raw_us, "ratio": zoo_us / raw_us, "nfe_forward": nfe}
            rows.append(row)
            print(f"{name:24}{row['pass']:>10}{zoo_us:10.0f}{raw_us:10.0f}{row['ratio']:9.3f}")
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "repeats": args.repeats,
                                         "torch": torch.__version__, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""FFJORD, RNODE and flow matching on FFJORD's 2-D toys, digits and Fashion-MNIST: one model, one metric.

Each run is a recipe of ``configs/`` (``ffjord-<set>``, ``rnode-<set>``, ``cfm-<set>``,
``cfm-ot-<set>``) trained and tested through the real CLI (``recipe_runs.py``). Printed per run:
the test score, on the 2-D toys the NLL in nats on the fixed 100,000-point test set (exact
divergence, dopri5 at 1e-5) and its gap to the data's entropy where that is known (8gaussians
2.830, checkerboard log 32 = 3.466); on digits (the 360 held-out images, exact divergence) and
Fashion-MNIST (the recipe's test images, Hutchinson's estimate) bits per dimension. Then the
training seconds, the NFE per training step, the test NFE (a straighter flow needs fewer), and
the training seconds until the validation NLL first came within 0.05 nats of the run's best.

    python benchmarks/flow_results.py --out runs/flow-results [--group 8gaussians] [--json F]
    python benchmarks/flow_results.py --out runs/flow-results --label cfm-ot-fmnist --max-steps 2000
    python benchmarks/flow_results.py --out runs/flow-results --saved   # the saved results only

With ``--saved`` nothing is trained: the table is made of the results saved under
``<out>/results``, whatever their length (the ``steps`` column says it), and runs without one
are left out and named on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from recipe_runs import REPO, Run, run_table, selected

TOYS = ("8gaussians", "checkerboard", "pinwheel", "2spirals", "moons", "circles", "rings", "swissroll")
TRAINERS = ("ffjord", "rnode", "cfm", "cfm-ot")
#: The entropy of the data, in nats, where it is known: the lowest test NLL any model can reach.
ENTROPY = {"8gaussians": 2.830, "checkerboard": 3.466}


def runs() -> list[Run]:
    sets = (*TOYS, "digits", "fmnist")
    return [Run(name, f"{trainer}-{name}", f"{trainer}-{name}") for name in sets for trainer in TRAINERS]


def saved_results(runs: list[Run], out: Path, only_groups: list[str] | None,
                  only_labels: list[str] | None) -> list[dict]:
    """The results saved under ``<out>/results``, in the table's order, at whatever length."""
    results = []
    for run in selected(runs, only_groups, only_labels):
        saved = out / "results" / f"{run.label}.json"
        if saved.exists():
            results.append(json.loads(saved.read_text()))
        else:
            print(f"{run.label}: no saved result", file=sys.stderr)
    return results


def seconds_to_near_best(result: dict, within: float = 0.05) -> float | None:
    points = [p for p in result.get("history", []) if "val_nll" in p]
    if not points:
        return None
    best = min(p["val_nll"] for p in points)
    return next(p["train_s"] for p in points if p["val_nll"] <= best + within)


def table(results: list[dict]) -> str:
    lines = ["| run | steps | test NLL (nats; images: bits/dim) | gap to entropy | train s | s/step "
             "| NFE fwd/bwd per step | test NFE | s to within 0.05 of best |", "|" + "---|" * 9]
    for result in results:
        test, toy = result["test"], result["label"].rsplit("-", 1)[-1]
        gap = f"{test['test_nll'] - ENTROPY[toy]:+.3f}" if toy in ENTROPY else "-"
        solves = result["nfe_forward_per_step"] is not None  # flow matching trains without a solve
        nfe = f"{result['nfe_forward_per_step']:.0f}/{result['nfe_backward_per_step']:.0f}" if solves else "-"
        near = seconds_to_near_best(result)
        score = test.get("test_bpd", test["test_nll"])
        lines.append(
            f"| {result['label']} | {result['steps']} | {score:.4f} | {gap} | {result['train_s']:.0f} "
            f"| {result['train_s_per_step']:.4f} | {nfe} | {test.get('test_nfe_forward', 0):.0f} "
            f"| {f'{near:.0f}' if near is not None else '-'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "flow-results")
    parser.add_argument("--group", action="append", help="toys to run (default all)")
    parser.add_argument("--label", action="append", help="only these runs, e.g. rnode-moons")
    parser.add_argument("--max-steps", type=int, help="shorter runs, for a smoke test")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--saved", action="store_true", help="train nothing: the saved results only")
    args = parser.parse_args()
    budget = ("steps", args.max_steps) if args.max_steps else None
    if args.saved:
        results = saved_results(runs(), args.out, args.group, args.label)
    else:
        results = run_table(runs(), args.out, args.group, args.label, budget)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps({"results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()

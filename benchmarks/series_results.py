"""The Latent ODE family's comparison tables: every model trained and tested by the real CLI.

Each run is ``zoo fit`` of a recipe from ``configs/`` (with the overrides the table names, such
as the fraction of observed points), then ``zoo test`` of its best checkpoint (by the recipe's
monitor) on the test split. Printed: test MSE (RMSE for the spirals), held-out MSE, ELBO, 90%
coverage, CRPS and accuracy where the model has them; the training time per epoch and per step
(:class:`zoo.timing.StepTimes`: forward, backward and optimizer steps only, no data loading or
validation) and the mean forward/backward NFE per training step of the last epoch.

    python benchmarks/series_results.py --out runs/series-results [--group spirals] [--json F]

Runs already done at the recipe's number of epochs are read back from ``--out``; shorter ones
are resumed (see ``recipe_runs.py``).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from recipe_runs import REPO, Run, run_table


def runs() -> list[Run]:
    table = []
    for observed in ("0.3", "0.5", "1.0"):
        for model in ("latent-ode", "gru-dt"):
            table.append(
                Run("spirals", f"{model}-spirals-{observed}", f"{model}-spirals",
                    ("--data.init_args.observed", observed))
            )
    for task in ("interpolation", "extrapolation"):
        for model in ("latent-ode", "ode-rnn", "rnn-vae"):
            table.append(
                Run("periodic", f"{model}-periodic-{task}", f"{model}-periodic",
                    ("--data.init_args.task", task))
            )
    for task in ("interpolation", "extrapolation"):
        for model in ("latent-ode", "rnn-vae", "ode-rnn", "gru-dt"):
            table.append(
                Run("japanesevowels", f"{model}-japanesevowels-{task}", f"{model}-japanesevowels",
                    ("--data.init_args.task", task))
            )
    for model in ("latent-ode", "rnn-vae", "ode-rnn", "gru-dt"):  # the other set sktime bundles
        table.append(
            Run("basicmotions", f"{model}-basicmotions-interpolation", f"{model}-japanesevowels",
                ("--data.init_args.name", "BasicMotions"))
        )
    return table


def table(results: list[dict]) -> str:
    columns = ("test_mse", "test_mse_heldout", "test_elbo", "test_coverage90", "test_crps", "test_acc")
    header = "| run | RMSE | " + " | ".join(c.removeprefix("test_") for c in columns)
    lines = [header + " | s/epoch | NFE fwd/bwd per step |", "|" + "---|" * (len(columns) + 4)]
    for result in results:
        test = result["test"]
        cells = [f"{test[c]:.4g}" if c in test else "-" for c in columns]
        rmse = f"{math.sqrt(test['test_mse']):.4f}"
        solves = result["nfe_forward_per_step"] is not None  # the GRU models solve no ODE
        nfe = f"{result['nfe_forward_per_step']:.0f}/{result['nfe_backward_per_step']:.0f}" if solves else "-"
        lines.append(f"| {result['label']} | {rmse} | " + " | ".join(cells)
                     + f" | {result['train_s_per_epoch']} | {nfe} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "series-results")
    parser.add_argument("--group", action="append",
                        help="spirals, periodic, japanesevowels, basicmotions (default all)")
    parser.add_argument("--label", action="append", help="only these runs (default all of the groups)")
    parser.add_argument("--max-epochs", type=int, help="shorter runs, for a smoke test")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    budget = ("epochs", args.max_epochs) if args.max_epochs else None
    results = run_table(runs(), args.out, args.group, args.label, budget)
    groups = {run.label: run.group for run in runs()}
    for group in dict.fromkeys(groups[result["label"]] for result in results):
        print(f"\n{group}\n")
        print(table([result for result in results if groups[result["label"]] == group]))
    if args.json:
        args.json.write_text(json.dumps({"results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""The Latent ODE family's comparison tables: every model trained and tested by the real CLI.

Each run is ``zoo fit`` of a recipe from ``configs/`` (with the overrides the table names, such
as the fraction of observed points), then ``zoo test`` of its best checkpoint (by the recipe's
monitor) on the test split. Printed: test MSE (RMSE for the spirals), held-out MSE, ELBO, 90%
coverage, CRPS and accuracy where the model has them; the training time per epoch and per step
(:class:`zoo.timing.StepTimes`: forward, backward and optimizer steps only, no data loading or
validation) and the mean forward/backward NFE per training step of the last epoch.

    python benchmarks/series_results.py --out runs/series-results [--group spirals] [--json F]

Runs that already have a test result in ``--out`` are read back, not repeated, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Run:
    """One trained-and-tested model of a table."""

    group: str
    label: str
    recipe: str
    overrides: tuple[str, ...] = ()


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
    return table


def zoo(*args: str) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    subprocess.run([sys.executable, "-m", "zoo", *args], check=True, env=env, cwd=REPO,
                   stdout=subprocess.DEVNULL)


def logged(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as file:
        return list(csv.DictReader(file))


def train_and_test(run: Run, out: Path, max_epochs: int | None = None) -> dict:
    recipe = str(REPO / "configs" / f"{run.recipe}.yaml")
    shorter = ("--trainer.max_epochs", str(max_epochs)) if max_epochs else ()
    common = ("--config", recipe, *run.overrides, *shorter, "--trainer.enable_progress_bar", "false")
    fit_dir = out / "fit" / run.label / "version_0"
    started = time.perf_counter()
    zoo("fit", *common, "--trainer.logger.init_args.save_dir", str(out / "fit"),
        "--trainer.logger.init_args.name", run.label, "--trainer.logger.init_args.version", "0",
        "--trainer.callbacks+=zoo.timing.StepTimes")
    wall = time.perf_counter() - started
    (best,) = fit_dir.glob("checkpoints/best-*.ckpt")
    zoo("test", *common, "--ckpt_path", str(best), "--trainer.logger.init_args.save_dir", str(out / "test"),
        "--trainer.logger.init_args.name", run.label, "--trainer.logger.init_args.version", "0")
    (test_row,) = [row for row in logged(out / "test" / run.label / "version_0") if row.get("test_loss")]
    last = torch.load(fit_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    rows = logged(fit_dir)
    epochs = int(last["epoch"]) + 1
    final = [row for row in rows if row.get("train_loss_epoch")][-1]
    step_times = [float(row["train_steps_s"]) for row in rows if row.get("train_steps_s")]
    return {
        "label": run.label,
        "recipe": f"configs/{run.recipe}.yaml",
        "overrides": list(run.overrides),
        "best_checkpoint": best.name,
        "epochs": epochs,
        "steps": int(last["global_step"]),
        "fit_wall_s": round(wall, 1),
        "train_s_per_epoch": round(sum(step_times) / len(step_times), 2),
        "train_s_per_step": round(sum(step_times) / int(last["global_step"]), 4),
        "nfe_forward_per_step": _number(final.get("train_nfe_forward_epoch")),
        "nfe_backward_per_step": _number(final.get("train_nfe_backward_epoch")),
        "test": {key: float(value) for key, value in test_row.items() if key.startswith("test_") and value},
    }


def _number(text: str | None) -> float | None:
    return round(float(text), 1) if text else None


def table(results: list[dict]) -> str:
    columns = ("test_mse", "test_mse_heldout", "test_elbo", "test_coverage90", "test_crps", "test_acc")
    header = "| run | RMSE | " + " | ".join(c.removeprefix("test_") for c in columns)
    lines = [header + " | s/epoch | NFE fwd/bwd per step |", "|" + "---|" * (len(columns) + 4)]
    for result in results:
        test = result["test"]
        cells = [f"{test[c]:.4g}" if c in test else "-" for c in columns]
        rmse = f"{math.sqrt(test['test_mse']):.4f}"
        nfe = f"{result['nfe_forward_per_step'] or 0:.0f}/{result['nfe_backward_per_step'] or 0:.0f}"
        lines.append(f"| {result['label']} | {rmse} | " + " | ".join(cells)
                     + f" | {result['train_s_per_epoch']} | {nfe} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "series-results")
    parser.add_argument("--group", action="append", help="spirals, periodic, japanesevowels (default all)")
    parser.add_argument("--label", action="append", help="only these runs (default all of the groups)")
    parser.add_argument("--max-epochs", type=int, help="shorter runs, for a smoke test")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = []
    for run in runs():
        if (args.group and run.group not in args.group) or (args.label and run.label not in args.label):
            continue
        saved = args.out / "results" / f"{run.label}.json"
        if not saved.exists():
            saved.parent.mkdir(parents=True, exist_ok=True)
            saved.write_text(json.dumps(train_and_test(run, args.out, args.max_epochs), indent=2))
        results.append(json.loads(saved.read_text()))
        print(f"{run.label}: {results[-1]['test']}", file=sys.stderr, flush=True)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps({"results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()

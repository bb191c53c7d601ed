"""The Latent ODE family's comparison tables: every model trained and tested by the real CLI.

Each run is ``zoo fit`` of a recipe from ``configs/`` (with the overrides the table names, such
as the fraction of observed points), then ``zoo test`` of its best checkpoint (by the recipe's
monitor) on the test split. Printed: test MSE (RMSE for the spirals), held-out MSE, ELBO, 90%
coverage, CRPS and accuracy where the model has them; the training time per epoch and per step
(:class:`zoo.timing.StepTimes`: forward, backward and optimizer steps only, no data loading or
validation) and the mean forward/backward NFE per training step of the last epoch.

    python benchmarks/series_results.py --out runs/series-results [--group spirals] [--json F]

Runs that already have a test result in ``--out`` for the recipe's number of epochs are read
back, not repeated; a run with fewer epochs there is resumed from its ``last.ckpt`` (exactly the
run a single longer fit makes), so raising a recipe's ``max_epochs`` costs only the new epochs.
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
import yaml

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


def recipe_epochs(run: Run) -> int:
    recipe = yaml.safe_load((REPO / "configs" / f"{run.recipe}.yaml").read_text())
    return int(recipe["trainer"]["max_epochs"])


def train_and_test(run: Run, out: Path, epochs: int, previous: dict | None = None) -> dict:
    """Fits (resuming the run's last checkpoint if it has one), then tests the best checkpoint.

    A run resumed from its ``last.ckpt`` to more epochs is the same run as one made at once
    (the resume is exact: :mod:`zoo.resume`); each resumption logs into the next ``version_N``.
    """
    recipe = str(REPO / "configs" / f"{run.recipe}.yaml")
    common = ("--config", recipe, *run.overrides, "--trainer.max_epochs", str(epochs),
              "--trainer.enable_progress_bar", "false")
    run_dir = out / "fit" / run.label
    versions = sorted(run_dir.glob("version_*"), key=lambda path: int(path.name.split("_")[1]))
    resume = [path / "checkpoints" / "last.ckpt" for path in versions[-1:]]
    resume_args = ("--ckpt_path", str(resume[0])) if resume and resume[0].exists() else ()
    version = str(len(versions))
    started = time.perf_counter()
    zoo("fit", *common, *resume_args, "--trainer.logger.init_args.save_dir", str(out / "fit"),
        "--trainer.logger.init_args.name", run.label, "--trainer.logger.init_args.version", version,
        "--trainer.callbacks+=zoo.timing.StepTimes")
    wall = time.perf_counter() - started + (previous or {}).get("fit_wall_s", 0.0)
    last = torch.load(run_dir / f"version_{version}" / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=True)
    best = best_checkpoint(run_dir, recipe)
    zoo("test", *common, "--ckpt_path", str(best), "--trainer.logger.init_args.save_dir", str(out / "test"),
        "--trainer.logger.init_args.name", run.label, "--trainer.logger.init_args.version", version)
    tested = logged(out / "test" / run.label / f"version_{version}")
    (test_row,) = [row for row in tested if row.get("test_loss")]
    rows = [row for path in sorted(run_dir.glob("version_*")) for row in logged(path)]
    final = [row for row in rows if row.get("train_loss_epoch")][-1]
    step_times = [float(row["train_steps_s"]) for row in rows if row.get("train_steps_s")]
    return {
        "label": run.label,
        "recipe": f"configs/{run.recipe}.yaml",
        "overrides": list(run.overrides),
        "best_checkpoint": str(best.relative_to(out)),
        "epochs": int(last["epoch"]) + 1,
        "steps": int(last["global_step"]),
        "fit_wall_s": round(wall, 1),
        "train_s_per_epoch": round(sum(step_times) / len(step_times), 2),
        "train_s_per_step": round(sum(step_times) / int(last["global_step"]), 4),
        "nfe_forward_per_step": _number(final.get("train_nfe_forward_epoch")),
        "nfe_backward_per_step": _number(final.get("train_nfe_backward_epoch")),
        "test": {key: float(value) for key, value in test_row.items() if key.startswith("test_") and value},
    }


def best_checkpoint(run_dir: Path, recipe: str) -> Path:
    """The best of the run's ``best-*.ckpt`` files (one per resumption at most), by the recipe's monitor.

    Each file holds the score ModelCheckpoint gave it when it was saved.
    """
    callbacks = yaml.safe_load(Path(recipe).read_text())["trainer"]["callbacks"]
    (settings,) = [c["init_args"] for c in callbacks if c["class_path"].endswith("ModelCheckpoint")]
    scored = []
    for path in run_dir.glob("version_*/checkpoints/best-*.ckpt"):
        stored = torch.load(path, map_location="cpu", weights_only=True)["callbacks"]
        (state,) = [s for key, s in stored.items() if key.startswith("ModelCheckpoint")]
        scored.append((float(state["best_model_score"]), path))
    pick = max if settings.get("mode", "min") == "max" else min
    return pick(scored, key=lambda pair: pair[0])[1]


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
        epochs = args.max_epochs or recipe_epochs(run)
        previous = json.loads(saved.read_text()) if saved.exists() else None
        if previous is None or previous["epochs"] != epochs:
            saved.parent.mkdir(parents=True, exist_ok=True)
            saved.write_text(json.dumps(train_and_test(run, args.out, epochs, previous), indent=2))
        results.append(json.loads(saved.read_text()))
        print(f"{run.label}: {results[-1]['test']}", file=sys.stderr, flush=True)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps({"results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Trains and tests zoo recipes through the real CLI, for the benchmark tables.

A run is ``zoo fit`` of a recipe from ``configs/`` with the overrides its table names, then
``zoo test`` of its best checkpoint (by the recipe's ``ModelCheckpoint`` monitor) on the test
split. Recorded: the test metrics; the training seconds (:class:`zoo.timing.StepTimes`: forward,
backward and optimizer steps only, no data loading or validation) per epoch, per step and in
all; the mean forward/backward NFE per training step of the last epoch; each validation's
metrics with the training seconds spent to reach it.

Runs that already have a result in ``<out>/results`` at the recipe's length are read back, not
repeated; a run that is shorter there is resumed from its ``last.ckpt`` (exactly the run a single
longer fit makes: :mod:`zoo.resume`), so lengthening a recipe costs only the new epochs.
"""

from __future__ import annotations

import csv
import json
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


def zoo(*args: str) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    subprocess.run([sys.executable, "-m", "zoo", *args], check=True, env=env, cwd=REPO,
                   stdout=subprocess.DEVNULL)


def logged(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv") as file:
        return list(csv.DictReader(file))


def recipe_budget(run: Run) -> tuple[str, int]:
    """The recipe's length: ``("epochs", max_epochs)`` or ``("steps", max_steps)``."""
    trainer = yaml.safe_load((REPO / "configs" / f"{run.recipe}.yaml").read_text())["trainer"]
    if "max_epochs" in trainer:
        return "epochs", int(trainer["max_epochs"])
    return "steps", int(trainer["max_steps"])


def train_and_test(run: Run, out: Path, budget: tuple[str, int]) -> dict:
    """Fits (resuming the run's last checkpoint if it has one), then tests the best checkpoint.

    A run resumed from its ``last.ckpt`` to more epochs is the same run as one made at once
    (the resume is exact: :mod:`zoo.resume`); each resumption logs into the next ``version_N``.
    """
    recipe = str(REPO / "configs" / f"{run.recipe}.yaml")
    length = f"--trainer.max_{budget[0]}", str(budget[1])
    common = ("--config", recipe, *run.overrides, *length, "--trainer.enable_progress_bar", "false")
    run_dir = out / "fit" / run.label
    versions = sorted(run_dir.glob("version_*"), key=lambda path: int(path.name.split("_")[1]))
    latest = versions[-1] / "checkpoints" / "last.ckpt" if versions else None
    if latest is not None and latest.exists() and _reached(latest, budget):
        version = versions[-1].name.split("_")[1]  # trained already: only the test is (re)made
    else:
        version = str(len(versions))
        resume_args = ("--ckpt_path", str(latest)) if latest is not None and latest.exists() else ()
        started = time.perf_counter()
        zoo("fit", *common, *resume_args, "--trainer.logger.init_args.save_dir", str(out / "fit"),
            "--trainer.logger.init_args.name", run.label, "--trainer.logger.init_args.version", version,
            "--trainer.callbacks+=zoo.timing.StepTimes")
        (run_dir / f"version_{version}" / "wall_s.txt").write_text(f"{time.perf_counter() - started:.1f}\n")
    wall = sum(float(path.read_text()) for path in run_dir.glob("version_*/wall_s.txt"))
    last = torch.load(run_dir / f"version_{version}" / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=True)
    best = best_checkpoint(run_dir, recipe)
    zoo("test", *common, "--ckpt_path", str(best), "--trainer.logger.init_args.save_dir", str(out / "test"),
        "--trainer.logger.init_args.name", run.label, "--trainer.logger.init_args.version", version)
    tested = logged(out / "test" / run.label / f"version_{version}")  # a re-test replaces the old one
    (test_row,) = [row for row in tested if any(k.startswith("test_") and v for k, v in row.items())]
    rows = [row for path in sorted(run_dir.glob("version_*")) for row in logged(path)]
    final = [row for row in rows if row.get("train_loss_epoch") or row.get("train_nfe_forward_epoch")][-1]
    step_times = [float(row["train_steps_s"]) for row in rows if row.get("train_steps_s")]
    return {
        "label": run.label,
        "recipe": f"configs/{run.recipe}.yaml",
        "overrides": list(run.overrides),
        "best_checkpoint": str(best.relative_to(out)),
        "epochs": int(last["epoch"]) + 1,
        "steps": int(last["global_step"]),
        "fit_wall_s": round(wall, 1),  # the fits made with wall_s.txt records (all but the oldest runs)
        "train_s": round(sum(step_times), 1),
        "train_s_per_epoch": round(sum(step_times) / len(step_times), 2),
        "train_s_per_step": round(sum(step_times) / int(last["global_step"]), 4),
        "nfe_forward_per_step": _number(final.get("train_nfe_forward_epoch")),
        "nfe_backward_per_step": _number(final.get("train_nfe_backward_epoch")),
        "history": history(rows),
        "test": {key: float(value) for key, value in test_row.items() if key.startswith("test_") and value},
    }


def _reached(checkpoint: Path, budget: tuple[str, int]) -> bool:
    stored = torch.load(checkpoint, map_location="cpu", weights_only=True)
    done = stored["epoch"] + 1 if budget[0] == "epochs" else stored["global_step"]
    return done >= budget[1]


def history(rows: list[dict[str, str]]) -> list[dict[str, float]]:
    """Each validation's step and metrics, with the training seconds of the epochs up to its own."""
    per_epoch: dict[int, float] = {}
    for row in rows:
        if row.get("train_steps_s"):
            per_epoch[int(row["epoch"])] = float(row["train_steps_s"])
    points = []
    for row in rows:
        metrics = {k: float(v) for k, v in row.items() if k.startswith("val_") and v}
        if metrics:
            epoch = int(row["epoch"])
            spent = sum(seconds for e, seconds in per_epoch.items() if e <= epoch)
            points.append({"step": int(row["step"]), "train_s": round(spent, 1), **metrics})
    return points


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
    if not scored:  # no validation yet (a smoke test shorter than an epoch): the last weights
        return max(run_dir.glob("version_*/checkpoints/last.ckpt"), key=lambda path: path.stat().st_mtime)
    pick = max if settings.get("mode", "min") == "max" else min
    return pick(scored, key=lambda pair: pair[0])[1]


def _number(text: str | None) -> float | None:
    return round(float(text), 1) if text else None


def selected(runs: list[Run], only_groups: list[str] | None, only_labels: list[str] | None) -> list[Run]:
    """The runs in the named groups and with the named labels (all where none are named)."""
    return [run for run in runs if not (only_groups and run.group not in only_groups)
            and not (only_labels and run.label not in only_labels)]


def run_table(runs: list[Run], out: Path, only_groups: list[str] | None, only_labels: list[str] | None,
              budget_override: tuple[str, int] | None = None) -> list[dict]:
    """Trains and tests each run not already done at its budget; the results, in order."""
    results = []
    for run in selected(runs, only_groups, only_labels):
        saved = out / "results" / f"{run.label}.json"
        budget = budget_override or recipe_budget(run)
        previous = json.loads(saved.read_text()) if saved.exists() else None
        if previous is None or previous[budget[0]] != budget[1]:
            saved.parent.mkdir(parents=True, exist_ok=True)
            saved.write_text(json.dumps(train_and_test(run, out, budget), indent=2))
        results.append(json.loads(saved.read_text()))
        print(f"{run.label}: {results[-1]['test']}", file=sys.stderr, flush=True)
    return results


if __name__ == "__main__":  # python benchmarks/recipe_runs.py best <out> <label>: the run's best checkpoint
    command, out, label = sys.argv[1:4]
    if command != "best":
        raise SystemExit(f"unknown command {command!r}; usage: recipe_runs.py best <out> <label>")
    result = json.loads((Path(out) / "results" / f"{label}.json").read_text())
    print(best_checkpoint(Path(out) / "fit" / label, str(REPO / result["recipe"])))

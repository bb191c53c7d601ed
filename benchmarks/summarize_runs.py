"""A table of finished training runs from their CSVLogger ``metrics.csv``.

For each run folder (``runs/<name>/version_N``, or ``runs/<name>`` for its newest version):
the best and the last validation accuracy, the forward NFE per validation batch at the end, and
the mean forward / backward NFE per training step over the whole run.

    python benchmarks/summarize_runs.py runs/node-spheres2d runs/anode-spheres2d
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path


def metrics_file(run: Path) -> Path:
    if (run / "metrics.csv").is_file():
        return run / "metrics.csv"
    versions = sorted(run.glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    if not versions:
        raise SystemExit(f"no metrics.csv under {run}")
    return versions[-1]


def column(rows: list[dict[str, str]], name: str) -> list[float]:
    return [float(row[name]) for row in rows if row.get(name)]


def summarize(run: Path) -> dict[str, str]:
    with open(metrics_file(run)) as file:
        rows = list(csv.DictReader(file))
    val = column(rows, "val_acc")
    val_nfe = column(rows, "val_nfe_forward")
    train_nfe = column(rows, "train_nfe_forward_step")
    back_nfe = column(rows, "train_nfe_backward_step")
    epochs = column(rows, "epoch")

    def fmt(values: list[float], pick) -> str:
        return f"{pick(values):.4g}" if values else "-"

    return {
        "run": run.parent.name if run.name.startswith("version_") else run.name,
        "epochs": str(int(max(epochs)) + 1) if epochs else "-",
        "best_val_acc": fmt(val, max),
        "last_val_acc": fmt(val, lambda v: v[-1]),
        "last_val_nfe": fmt(val_nfe, lambda v: v[-1]),
        "mean_train_nfe_fwd": fmt(train_nfe, statistics.mean),
        "mean_train_nfe_bwd": fmt(back_nfe, statistics.mean),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path)
    table = [summarize(run) for run in parser.parse_args().runs]
    print("| " + " | ".join(table[0]) + " |")
    print("|" + "---|" * len(table[0]))
    for row in table:
        print("| " + " | ".join(row.values()) + " |")


if __name__ == "__main__":
    main()

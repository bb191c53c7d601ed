"""Seconds per training step under the system's malloc and under jemalloc, in alternating rounds.

An allocator is chosen when a process starts, so the two cannot share one process as the
variants of ``step_time.py`` do. This runs ``step_time.py`` (same recipe, variants, batches and
seed) as a child process once per allocator per round, alternating ``system``, ``jemalloc``,
``system``, ... so that a change in the machine's load hits both alike, and prints the median
seconds per step of each (allocator, variant) over all rounds and its ratio to the first
variant under the system allocator: the recipe as it was, if ``recipe`` comes first.

    python benchmarks/allocator_time.py --rounds 2 --variants recipe channels_last \\
        --json benchmarks/results-allocator-time-anode-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from zoo.launch import allocator_in_use, find_jemalloc, relaunch_environment  # noqa: E402


def environment(allocator: str) -> dict[str, str]:
    """This environment without a preload, or with the one the ``zoo`` command starts itself under."""
    environ = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    if allocator == "jemalloc":
        return relaunch_environment({**environ, "ZOO_ALLOCATOR": "jemalloc"})
    return environ


def one_round(allocator: str, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "result.json"
        command = [sys.executable, str(HERE / "step_time.py"), args.recipe, "--variants", *args.variants,
                   "--steps", str(args.steps), "--warmup", str(args.warmup),
                   "--eval-images", str(args.eval_images), "--json", str(output)]
        subprocess.run(command, env=environment(allocator), check=True, stdout=subprocess.DEVNULL)
        (result,) = json.loads(output.read_text())["results"]
    return result


def summary(rounds: list[tuple[str, dict]]) -> list[dict]:
    rows = {}
    for allocator, result in rounds:
        for row in result["rows"]:
            entry = rows.setdefault((allocator, row["variant"]), {
                "allocator": allocator, "variant": row["variant"], "seconds": [],
                "nfe_forward": row["nfe_forward"], "nfe_backward": row["nfe_backward"],
                "train_loss_last": row["train_loss_last"], "eval_acc": row["eval_acc"]})
            entry["seconds"] += row["s_per_step_all"]
    table = list(rows.values())
    for entry in table:
        entry["s_per_step"] = statistics.median(entry["seconds"])
    reference = table[0]["s_per_step"]
    for entry in table:
        entry["speedup"] = reference / entry["s_per_step"]
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", nargs="?", default="configs/anode-fmnist.yaml")
    parser.add_argument("--variants", nargs="+", default=["recipe", "channels_last"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--eval-images", type=int, default=256)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if find_jemalloc() is None:
        raise SystemExit("libjemalloc.so.2 not found: apt-get install libjemalloc2")
    if allocator_in_use() == "jemalloc":
        raise SystemExit("this process already runs under jemalloc: start it without LD_PRELOAD")
    rounds = [(allocator, one_round(allocator, args)) for _ in range(args.rounds)
              for allocator in ("system", "jemalloc")]
    table = summary(rounds)
    print(f"{args.recipe}: {args.rounds} rounds x {args.steps} timed steps per allocator and variant")
    print("| allocator | variant | s/step (median) | speedup | NFE fwd/bwd | train loss (last) | test acc |")
    print("|---|---|---|---|---|---|---|")
    for row in table:
        print(f"| {row['allocator']} | {row['variant']} | {row['s_per_step']:.2f} | {row['speedup']:.2f}x "
              f"| {row['nfe_forward']:.0f}/{row['nfe_backward']:.0f} | {row['train_loss_last']:.4f} "
              f"| {row['eval_acc']:.4f} |")
    if args.json:
        args.json.write_text(json.dumps({"recipe": args.recipe, "rounds": args.rounds, "steps": args.steps,
                                         "rows": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()

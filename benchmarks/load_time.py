"""Wall time of ``zoo.load(name)``, cold and warm, against a plain reference in the same process.

- cold: a fresh Python process runs ``import zoo; zoo.load(name)``; the import of the package
  (torch, Lightning) and the load are timed separately, over ``--cold-runs`` processes.
- warm: in this process, after one load, ``zoo.load(name)`` is timed ``--warm-runs`` times and
  compared with the reference: building the same model class from the card's arguments and
  reading the same safetensors file without the registry, hash check or card lookup.

    python benchmarks/load_time.py --name odenet-fmnist
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

COLD_SCRIPT = """
import time
start = time.perf_counter()
import zoo
imported = time.perf_counter()
zoo.load({name!r})
print(imported - start, time.perf_counter() - imported)
"""


def cold(name: str, runs: int) -> tuple[list[float], list[float]]:
    """Import and load seconds of ``runs`` fresh processes."""
    imports, loads = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", COLD_SCRIPT.format(name=name)], check=True,
                             capture_output=True, text=True).stdout.split()
        imports.append(float(out[-2]))
        loads.append(float(out[-1]))
    return imports, loads


def warm(name: str, runs: int) -> tuple[list[float], list[float]]:
    """Seconds of ``zoo.load`` and of the plain reference, interleaved, ``runs`` times each."""
    from safetensors.torch import load_file

    import zoo
    from zoo.families import model_class

    card = zoo.info(name)
    path = card.weights_location()
    zoo.load(name)
    zoo_times, reference_times = [], []
    for _ in range(runs):
        start = time.perf_counter()
        zoo.load(name)
        zoo_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        model = model_class(card.model)(**card.init_args)
        model.load_state_dict(load_file(path))
        model.eval()
        reference_times.append(time.perf_counter() - start)
    return zoo_times, reference_times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--name", default="odenet-fmnist")
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--warm-runs", type=int, default=20)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    imports, cold_loads = cold(args.name, args.cold_runs)
    zoo_times, reference_times = warm(args.name, args.warm_runs)
    figures = {
        "name": args.name,
        "cold_import_s_median": statistics.median(imports),
        "cold_load_s_median": statistics.median(cold_loads),
        "cold_total_s_median": statistics.median(i + c for i, c in zip(imports, cold_loads)),
        "warm_load_s_median": statistics.median(zoo_times),
        "warm_reference_s_median": statistics.median(reference_times),
        "warm_ratio_zoo_over_reference": statistics.median(zoo_times) / statistics.median(reference_times),
        "cold_runs": args.cold_runs,
        "warm_runs": args.warm_runs,
    }
    for key, value in figures.items():
        print(f"{key:32s} {value:.4f}" if isinstance(value, float) else f"{key:32s} {value}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(figures, file, indent=2)
            file.write("\n")


if __name__ == "__main__":
    main()

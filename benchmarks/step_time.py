"""Seconds per training step of a recipe's model, on random inputs of its data's shape.

Builds the model and data module of ``configs/<name>.yaml`` (no data is read), then times
``--steps`` steps of forward, cross-entropy, backward and Adam on a random batch, after one
warm-up step, printing the median and the forward/backward NFE of the last step. For planning
how long a recipe takes where it is too slow to run here.

    python benchmarks/step_time.py configs/anode-fmnist.yaml --batch-size 256 --steps 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import yaml

from zoo.families import datamodule_class, model_class


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    recipe = yaml.safe_load(Path(args.config).read_text())
    datamodule = datamodule_class(recipe["data"]["class_path"])(**recipe["data"].get("init_args", {}))
    init_args = dict(recipe["model"].get("init_args") or {})
    init_args.update(input_shape=datamodule.input_shape, num_classes=datamodule.num_classes)
    torch.manual_seed(args.seed)
    model = model_class(recipe["model"]["class_path"])(**init_args)
    batch = args.batch_size or datamodule.batch_size
    inputs = torch.randn(batch, *datamodule.input_shape)
    labels = torch.randint(0, datamodule.num_classes, (batch,))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for _ in range(args.steps + 1):
        start = time.perf_counter()
        torch.nn.functional.cross_entropy(model(inputs), labels).backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    blocks = model.ode_blocks()
    print(f"config {args.config}  batch {batch}  threads {torch.get_num_threads()}")
    print(f"s per step (median of {args.steps}, after 1 warm-up): {statistics.median(times[1:]):.2f}")
    if blocks:
        print(f"NFE of the last step: forward {blocks[0].nfe_forward}, backward {blocks[0].nfe_backward}")


if __name__ == "__main__":
    main()

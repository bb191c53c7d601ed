"""Seconds per training step of an image recipe, as written and with each speed setting, in one run.

For each recipe given (default the ANODE and NODE Fashion-MNIST recipes), builds the recipe's
model once per variant from the same seed, then trains every variant on the same real
Fashion-MNIST batches, one step of each variant in turn (so a change in the machine's load hits
all alike): forward, cross-entropy, backward, Adam at the recipe's learning rate. A variant is
the recipe's solver block with a few settings changed:

* ``recipe``: as written;
* ``paper``: with Dupont et al.'s adjoint and dopri5's own first step, as the ANODE/NODE recipes
  were before the speed settings;
* ``seminorm``: the adjoint's error measured on the state and adjoint only (Kidger et al. 2021);
* ``direct``: backpropagation through the solver's operations instead of the adjoint;
* ``channels_last``, ``bf16`` (``solver.precision``), and combinations;
* ``first_step``: dopri5's first step given (0.3), instead of chosen by one more evaluation.

Printed per variant: the median seconds per step after ``--warmup`` steps and its ratio to
``recipe``, the forward/backward NFE per step (mean), the training loss of the last step, and
the loss and accuracy on the first ``--eval-images`` images of the official test split after the
last step (each variant evaluated with its own settings). Then the input pipeline: seconds per
batch of the recipe's DataLoader against the step time.

    python benchmarks/step_time.py --steps 8 --warmup 2 --json benchmarks/results-step-time-cpu.json
    python benchmarks/step_time.py configs/odenet-fmnist.yaml --variants recipe bf16
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from torch.nn import functional as F  # noqa: N812

from zoo.families import datamodule_class, model_class

REPO = Path(__file__).resolve().parents[1]
RECIPES = ("configs/anode-fmnist.yaml", "configs/node-fmnist.yaml")
VARIANTS: dict[str, dict] = {
    "recipe": {},
    "paper": {"adjoint": True, "step_size": None},
    "seminorm": {"seminorm": True},
    "direct": {"adjoint": False},
    "channels_last": {"channels_last": True},
    "seminorm+channels_last": {"seminorm": True, "channels_last": True},
    "direct+channels_last": {"adjoint": False, "channels_last": True},
    "bf16": {"precision": "bf16"},
    "bf16+channels_last": {"precision": "bf16", "channels_last": True},
    "direct+bf16+channels_last": {"adjoint": False, "precision": "bf16", "channels_last": True},
    "first_step": {"step_size": 0.3},
    "direct+first_step": {"adjoint": False, "step_size": 0.3},
}


@dataclass
class Variant:
    name: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    seconds: list[float] = field(default_factory=list)
    nfe: list[tuple[int, int]] = field(default_factory=list)
    loss: float = float("nan")


def build(recipe: dict, data, solver_changes: dict, seed: int) -> torch.nn.Module:
    init_args = dict(recipe["model"].get("init_args") or {})
    init_args.update(input_shape=data.input_shape, num_classes=data.num_classes)
    solver = dict(init_args.get("solver") or {})
    if solver_changes.get("adjoint") is False:
        solver = {k: v for k, v in solver.items() if k not in ("seminorm",) and not k.startswith("adjoint_")}
    init_args["solver"] = {**solver, **solver_changes}
    torch.manual_seed(seed)
    return model_class(recipe["model"]["class_path"])(**init_args)


def train_step(variant: Variant, images: torch.Tensor, labels: torch.Tensor) -> None:
    start = time.perf_counter()
    loss = F.cross_entropy(variant.model(images), labels)
    loss.backward()
    variant.optimizer.step()
    variant.optimizer.zero_grad()
    variant.seconds.append(time.perf_counter() - start)
    blocks = variant.model.ode_blocks()
    variant.nfe.append((sum(b.nfe_forward for b in blocks), sum(b.nfe_backward for b in blocks)))
    variant.loss = loss.item()


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: list) -> tuple[float, float]:
    losses, correct, count = 0.0, 0, 0
    for images, labels in batches:
        logits = model(images)
        losses += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += int((logits.argmax(-1) == labels).sum())
        count += len(labels)
    return losses / count, correct / count


def take(loader, count: int) -> tuple[list, float]:
    """The first ``count`` batches of ``loader`` and the seconds per batch it took to make them."""
    batches, start = [], time.perf_counter()
    for batch in loader:
        batches.append(batch)
        if len(batches) == count:
            break
    return batches, (time.perf_counter() - start) / max(len(batches), 1)


def run_recipe(path: str, names: list[str], args: argparse.Namespace) -> dict:
    recipe = yaml.safe_load((REPO / path).read_text())
    data_args = {**recipe["data"].get("init_args", {}), "num_workers": 0}
    if args.batch_size:
        data_args["batch_size"] = args.batch_size
    data = datamodule_class(recipe["data"]["class_path"])(**data_args)
    data.prepare_data()
    data.setup("fit")
    batches, loader_s = take(data.train_dataloader(), args.warmup + args.steps)
    data.setup("test")
    eval_batches, _ = take(data.test_dataloader(), -(-args.eval_images // data.batch_size))
    lr = recipe["optimizer"]["init_args"]["lr"]
    variants = []
    for name in names:
        model = build(recipe, data, VARIANTS[name], args.seed)
        variants.append(Variant(name, model, torch.optim.Adam(model.parameters(), lr=lr)))
    for images, labels in batches:
        for variant in variants:
            train_step(variant, images, labels)
    rows = []
    for variant in variants:
        timed = variant.seconds[args.warmup:]
        eval_loss, eval_acc = evaluate(variant.model, eval_batches)
        rows.append({
            "variant": variant.name, "solver_changes": VARIANTS[variant.name],
            "s_per_step": statistics.median(timed), "s_per_step_all": timed,
            "nfe_forward": statistics.mean(f for f, _ in variant.nfe),
            "nfe_backward": statistics.mean(b for _, b in variant.nfe),
            "train_loss_last": variant.loss, "eval_loss": eval_loss, "eval_acc": eval_acc,
        })
    reference = rows[0]["s_per_step"]
    for row in rows:
        row["speedup"] = reference / row["s_per_step"]
    return {"recipe": path, "batch_size": data.batch_size, "steps": args.steps, "warmup": args.warmup,
            "eval_images": sum(len(b[1]) for b in eval_batches), "loader_s_per_batch": loader_s,
            "threads": torch.get_num_threads(), "rows": rows}


def table(result: dict) -> str:
    lines = [f"{result['recipe']}: batch {result['batch_size']}, {result['steps']} timed steps after "
             f"{result['warmup']} warm-up, {result['threads']} threads; loss/acc on "
             f"{result['eval_images']} test images after the last step",
             "| variant | s/step | speedup | NFE fwd/bwd | train loss (last) | test loss | test acc |",
             "|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['variant']} | {row['s_per_step']:.2f} | {row['speedup']:.2f}x "
                     f"| {row['nfe_forward']:.1f}/{row['nfe_backward']:.1f} | {row['train_loss_last']:.4f} "
                     f"| {row['eval_loss']:.4f} | {row['eval_acc']:.4f} |")
    step = result["rows"][0]["s_per_step"]
    lines.append(f"input pipeline: {result['loader_s_per_batch'] * 1000:.1f} ms per batch "
                 f"({100 * result['loader_s_per_batch'] / step:.2f}% of a recipe step)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="*", default=list(RECIPES))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                        help="the first is the reference of the ratios (default: recipe first)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, help="default: the recipe's")
    parser.add_argument("--eval-images", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    for path in args.recipes:
        results.append(run_recipe(path, args.variants, args))
        print(table(results[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""The cost of one evaluation of an image recipe's vector field, plain and with each speed setting.

A training step costs NFE x (cost of one evaluation), and ``step_time.py`` measures the product;
this measures the second factor alone, on the state the recipe's ODE block really sees (a real
Fashion-MNIST batch through the recipe's freshly built model; ANODE's state carries its zero
channels). Per setting, three kinds of evaluation, each the median of ``--repeats`` after two
untimed ones:

* ``forward``: ``f(t, y)`` without a graph (the adjoint's forward solve, and test time);
* ``vjp``: ``f(t, y)`` with a graph, then the vector-Jacobian product with respect to ``y`` and
  the parameters (one backward evaluation of the adjoint);
* ``train``: ``f(t, y)`` recorded, then its backward (per evaluation, direct backpropagation).

Settings: ``fp32`` (the recipe), ``channels_last``, ``bf16`` (autocast, output cast back to
float32, as ``solver.precision: bf16`` does), ``bf16+channels_last``, and with ``--compile``,
``torch.compile`` of the field alone, with channels-last, and with bf16 + channels-last (its
compile seconds printed).
Ratios are against ``fp32`` in the same process; the largest output difference from ``fp32``
is printed beside each.

    python benchmarks/field_time.py --json benchmarks/results-field-time-cpu.json
    python benchmarks/field_time.py configs/anode-fmnist.yaml --compile
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import yaml

from zoo.families import datamodule_class, model_class

REPO = Path(__file__).resolve().parents[1]
RECIPES = ("configs/anode-fmnist.yaml", "configs/node-fmnist.yaml", "configs/odenet-fmnist.yaml")
SETTINGS = {  # name: (bf16, channels_last, compiled)
    "fp32": (False, False, False),
    "channels_last": (False, True, False),
    "bf16": (True, False, False),
    "bf16+channels_last": (True, True, False),
}
COMPILED = {"compiled": (False, False, True), "compiled+channels_last": (False, True, True),
            "compiled+bf16+channels_last": (True, True, True)}


def recipe_field(path: str, batch_size: int | None) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The recipe's vector field and the ``(t, y)`` of its first evaluation on a real batch."""
    recipe = yaml.safe_load((REPO / path).read_text())
    data_args = {**recipe["data"].get("init_args", {}), "num_workers": 0}
    if batch_size:
        data_args["batch_size"] = batch_size
    data = datamodule_class(recipe["data"]["class_path"])(**data_args)
    data.prepare_data()
    data.setup("fit")
    images, _ = next(iter(data.train_dataloader()))
    init_args = {**recipe["model"].get("init_args", {}), "input_shape": data.input_shape,
                 "num_classes": data.num_classes}
    torch.manual_seed(0)
    model = model_class(recipe["model"]["class_path"])(**init_args)
    (block,) = model.ode_blocks()
    seen: list = []
    handle = block.dynamics.register_forward_pre_hook(lambda module, args: seen.append(args) or None)
    with torch.no_grad():
        model(images)
    handle.remove()
    t, y = seen[0]
    return block.dynamics, t.detach().clone(), y.detach().clone()


def evaluation(field: Callable, bf16: bool, channels_last: bool) -> Callable:
    def evaluate(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if channels_last:
            y = y.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = field(t, y)
        return out.float()
    return evaluate


def median_seconds(work: Callable[[], None], repeats: int) -> float:
    for _ in range(2):
        work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(field: torch.nn.Module, t: torch.Tensor, y: torch.Tensor, setting: tuple, repeats: int,
            reference: torch.Tensor | None) -> dict:
    bf16, channels_last, compiled = setting
    started = time.perf_counter()
    function = torch.compile(field) if compiled else field
    evaluate = evaluation(function, bf16, channels_last)
    params = [p for p in field.parameters() if p.requires_grad]
    with torch.no_grad():
        out = evaluate(t, y)  # the first call compiles
    compile_s = time.perf_counter() - started if compiled else 0.0
    cotangent = torch.ones_like(out)

    def forward() -> None:
        with torch.no_grad():
            evaluate(t, y)

    def vjp() -> None:
        state = y.detach().requires_grad_()
        torch.autograd.grad(evaluate(t, state), (state, *params), cotangent)

    def train() -> None:
        evaluate(t, y).backward(cotangent)

    figures = {name: median_seconds(work, repeats) for name, work in
               (("forward", forward), ("vjp", vjp), ("train", train))}
    field.zero_grad(set_to_none=True)
    difference = float((out - reference).abs().max()) if reference is not None else 0.0
    return {**figures, "compile_s": compile_s, "max_abs_diff": difference, "output": out}


def run_recipe(path: str, names: dict[str, tuple], args: argparse.Namespace) -> dict:
    field, t, y = recipe_field(path, args.batch_size)
    rows, reference = [], None
    for name, setting in names.items():
        row = measure(field, t, y, setting, args.repeats, reference)
        reference = row.pop("output") if reference is None else reference
        row.pop("output", None)
        rows.append({"setting": name, **row})
    for row in rows:
        for kind in ("forward", "vjp", "train"):
            row[f"{kind}_speedup"] = rows[0][kind] / row[kind]
    return {"recipe": path, "state_shape": list(y.shape), "repeats": args.repeats,
            "threads": torch.get_num_threads(), "rows": rows}


def table(result: dict) -> str:
    lines = [f"{result['recipe']}: state {tuple(result['state_shape'])}, median of {result['repeats']}, "
             f"{result['threads']} threads; ms per evaluation (speedup against fp32)",
             "| setting | forward | vjp | train (fwd+bwd) | max abs diff | compile s |",
             "|---|---|---|---|---|---|"]
    for row in result["rows"]:
        cells = [f"{row[k] * 1000:.1f} ({row[f'{k}_speedup']:.2f}x)" for k in ("forward", "vjp", "train")]
        lines.append(f"| {row['setting']} | {' | '.join(cells)} | {row['max_abs_diff']:.1e} "
                     f"| {row['compile_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="*", default=list(RECIPES))
    parser.add_argument("--batch-size", type=int, help="default: the recipe's")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--compile", action="store_true", help="also torch.compile the field")
    parser.add_argument("--settings", nargs="+", choices=[*SETTINGS, *COMPILED],
                        help="only these (the first is the reference of the ratios)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    names = {**SETTINGS, **(COMPILED if args.compile else {})}
    if args.settings:
        names = {name: {**SETTINGS, **COMPILED}[name] for name in args.settings}
    results = []
    for path in args.recipes:
        results.append(run_recipe(path, names, args))
        print(table(results[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Where a training step of the Latent ODE family goes, on one real batch of each recipe's data.

For each recipe, builds its model and data module, takes the first training batch, and times
``--steps`` training steps (after one warm-up) split into their parts: the encoder (posterior
q(z0) from the ODE-RNN or GRU read backwards), the decoder (the latent solve at the target times
and the readout), the bound (likelihood and KL), and the backward pass; the forecasters have
one forward part. Prints medians in ms, each part's share, and the NFE of the step's solves.

    python benchmarks/series_step_time.py [configs/latent-ode-periodic.yaml ...] [--json F]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import yaml

from zoo.families import datamodule_class, model_class
from zoo.models import LatentODE
from zoo.models.latent_ode import masked_gaussian_log_likelihood
from zoo.ode.stats import recording

REPO = Path(__file__).resolve().parent.parent
RECIPES = [
    "latent-ode-periodic", "rnn-vae-periodic", "ode-rnn-periodic", "gru-dt-periodic",
    "latent-ode-spirals", "gru-dt-spirals", "latent-ode-japanesevowels",
]


def build(recipe_path: Path):
    recipe = yaml.safe_load(recipe_path.read_text())
    datamodule = datamodule_class(recipe["data"]["class_path"])(**recipe["data"].get("init_args", {}))
    datamodule.setup("fit")
    init_args = dict(recipe["model"].get("init_args") or {})
    init_args.update(input_shape=datamodule.input_shape, num_classes=datamodule.num_classes)
    torch.manual_seed(0)
    model = model_class(recipe["model"]["class_path"])(**init_args)
    return model, next(iter(datamodule.train_dataloader()))


def latent_step(model: LatentODE, batch, clock: dict[str, list[float]]) -> tuple[int, int]:
    """One step of the Latent ODE's (or RNN-VAE's) ELBO, each part timed."""
    parts, started = {}, time.perf_counter()

    def lap(name: str) -> None:
        nonlocal started
        now = time.perf_counter()
        parts[name], started = now - started, now

    with recording() as solves:
        start = torch.minimum(batch.times[0], batch.target_times[0])
        q = model.net.posterior(batch, start)
        lap("encoder")
        z0 = q.rsample((model.objective.num_samples,))
        predicted = model.net.decode(z0, start, batch.target_times)
        lap("decoder")
        log_likelihood = masked_gaussian_log_likelihood(
            predicted, batch.target_values, batch.target_mask, model.log_noise_std
        )
        prior = torch.distributions.Normal(torch.zeros_like(q.loc), torch.ones_like(q.scale))
        kl = torch.distributions.kl_divergence(q, prior).sum(-1)
        loss = -(log_likelihood.mean(0) - kl).sum() / batch.target_mask.sum()
        lap("bound")
        loss.backward()
        lap("backward")
    for name, seconds in parts.items():
        clock.setdefault(name, []).append(seconds)
    return solves.nfe_forward, solves.nfe_backward


def forecaster_step(model, batch, clock: dict[str, list[float]]) -> tuple[int, int]:
    with recording() as solves:
        started = time.perf_counter()
        loss = model.step(batch, "train")
        middle = time.perf_counter()
        loss.backward()
        ended = time.perf_counter()
    clock.setdefault("forward", []).append(middle - started)
    clock.setdefault("backward", []).append(ended - middle)
    return solves.nfe_forward, solves.nfe_backward


def measure(recipe_path: Path, steps: int) -> dict:
    model, batch = build(recipe_path)
    model.log = lambda *args, **kwargs: None  # no trainer: the step's logging is a no-op
    optimizer = torch.optim.Adamax(model.parameters(), lr=1e-2)
    step = latent_step if isinstance(model, LatentODE) else forecaster_step
    clock: dict[str, list[float]] = {}
    for i in range(steps + 1):
        laps = {} if i == 0 else clock  # the first step warms up and is not counted
        nfe = step(model, batch, laps)
        optimizer.step()
        optimizer.zero_grad()
    medians = {name: statistics.median(seconds) * 1000 for name, seconds in clock.items()}
    return {
        "recipe": str(recipe_path.relative_to(REPO)),
        "batch": len(batch),
        "times": len(batch.times),
        "target_times": len(batch.target_times),
        "ms": {name: round(ms, 1) for name, ms in medians.items()},
        "ms_per_step": round(sum(medians.values()), 1),
        "nfe_forward": nfe[0],
        "nfe_backward": nfe[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("recipes", nargs="*", type=Path)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    recipes = [p.resolve() for p in args.recipes] or [REPO / "configs" / f"{n}.yaml" for n in RECIPES]
    print(f"threads {torch.get_num_threads()}, median of {args.steps} steps after 1 warm-up")
    results = []
    for recipe in recipes:
        result = measure(recipe, args.steps)
        results.append(result)
        total = result["ms_per_step"]
        parts = ", ".join(f"{k} {v:.0f} ({v / total:.0%})" for k, v in result["ms"].items())
        print(f"{recipe.stem}: {total:.0f} ms/step (batch {result['batch']}, {result['times']} times in, "
              f"{result['target_times']} out; NFE {result['nfe_forward']}/{result['nfe_backward']}): {parts}")
    if args.json:
        summary = {"threads": torch.get_num_threads(), "results": results}
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Latent ODE training steps through the zoo against the same model on a plain torchdiffeq loop.

Builds the recipe's model (default ``configs/latent-ode-periodic.yaml``) and a reference that
holds the same modules (the encoder's GRU cell and vector field, the posterior head, the latent
vector field, the decoder, the noise scale) and computes Rubanova et al.'s step the way their
code does, on ``torchdiffeq.odeint`` directly: the ODE-RNN read backwards, one Euler solve
between consecutive observation times and a GRU update where anything is observed; q(z0),
K reparametrized samples, one dopri5 solve of the latent state through the target times, the
masked Gaussian log-likelihood and the KL (weight 0, the recipe's first epochs). The zoo's step
is the same ELBO through the model's ``bounds`` (``zoo.ode.solve`` with its checks, stats and
per-call times). Both draw their posterior samples from the same seed per step, see the same
batches, and step Adamax, one step of each in turn.

Printed: the median seconds per step after ``--warmup`` steps, the NFE per step (forward +
backward), the first and last training loss of each, and the ratio zoo / reference.

    python benchmarks/latent_step_time.py --steps 20 --warmup 2 \\
        --json benchmarks/results-latent-step-time-cpu.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import yaml
from torch import nn
from torchdiffeq import odeint

from zoo.families import datamodule_class, model_class
from zoo.models.latent_ode import masked_gaussian_log_likelihood
from zoo.ode.stats import recording

REPO = Path(__file__).resolve().parents[1]


class Counted(nn.Module):
    """A vector field that counts its evaluations (forward, and backward through a hook)."""

    def __init__(self, field: nn.Module) -> None:
        super().__init__()
        self.field = field
        self.nfe = 0

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        out = self.field(t, y)
        if out.requires_grad:
            out.register_hook(self._count)
        return out

    def _count(self, grad: torch.Tensor) -> None:
        self.nfe += 1


class Reference(nn.Module):
    """The zoo Latent ODE's modules, driven by plain ``odeint`` calls."""

    def __init__(self, model) -> None:
        super().__init__()
        net = model.net
        self.cell, self.head, self.decoder = net.encoder.cell, net.to_posterior, net.decoder
        self.encoder_field = Counted(net.encoder.evolution.dynamics)
        self.latent_field = Counted(net.dynamics)
        self.log_noise_std = model.log_noise_std
        self.encoder_step = net.encoder.evolution.solver.step.step_size
        latent = net.solver.step
        self.rtol, self.atol, self.num_samples = latent.rtol, latent.atol, model.objective.num_samples

    def encode(self, times, values, mask, start) -> torch.distributions.Normal:
        h = values.new_zeros(values.shape[0], self.cell.hidden_size)
        previous = times[-1]
        for i in range(len(times) - 1, -1, -1):
            h = self.evolve(h, previous, times[i])
            observed = mask[:, i].amax(dim=-1, keepdim=True) > 0
            seen = torch.where(mask[:, i] > 0, values[:, i], 0.0)
            h = torch.where(observed, self.cell(torch.cat([seen, mask[:, i]], dim=-1), h), h)
            previous = times[i]
        h = self.evolve(h, previous, start)
        mean, raw_std = self.head(h).chunk(2, dim=-1)
        return torch.distributions.Normal(mean, nn.functional.softplus(raw_std) + 1e-4)

    def evolve(self, h, start, end):
        if bool(start == end):
            return h
        grid = torch.stack([start, end])
        options = {"step_size": self.encoder_step}
        return odeint(self.encoder_field, h, grid, method="euler", options=options)[-1]

    def loss(self, batch) -> torch.Tensor:
        start = torch.minimum(batch.times[0], batch.target_times[0])
        q = self.encode(batch.times, batch.values, batch.mask, start)
        z0 = q.rsample((self.num_samples,))
        with_start = batch.target_times[0] > start
        grid = torch.cat([start.view(1), batch.target_times]) if with_start else batch.target_times
        states = odeint(self.latent_field, z0, grid, rtol=self.rtol, atol=self.atol, method="dopri5")
        predicted = self.decoder(states[int(with_start):].movedim(0, -2))
        log_likelihood = masked_gaussian_log_likelihood(predicted, batch.target_values, batch.target_mask,
                                                        self.log_noise_std)
        return -log_likelihood.mean(0).sum() / batch.target_mask.sum().clamp(min=1)


def zoo_loss(model, batch) -> torch.Tensor:
    terms = model.bounds(batch, model.objective.num_samples)
    return -terms["log_likelihood"].mean(0).sum() / batch.target_mask.sum().clamp(min=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/latent-ode-periodic.yaml")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    recipe = yaml.safe_load((REPO / args.config).read_text())
    data = datamodule_class(recipe["data"]["class_path"])(**recipe["data"].get("init_args", {}))
    data.prepare_data()
    data.setup("fit")
    init_args = {**recipe["model"]["init_args"], "input_shape": data.input_shape,
                 "num_classes": data.num_classes}
    torch.manual_seed(args.seed)
    zoo_model = model_class(recipe["model"]["class_path"])(**init_args)
    torch.manual_seed(args.seed)
    twin = model_class(recipe["model"]["class_path"])(**init_args)  # same weights, its own copy
    reference = Reference(twin)
    lr = recipe["optimizer"]["init_args"]["lr"]
    runs = {"zoo": (zoo_model, lambda batch: zoo_loss(zoo_model, batch)),
            "reference": (reference, reference.loss)}
    optimizers = {name: torch.optim.Adamax(module.parameters(), lr=lr) for name, (module, _) in runs.items()}
    seconds, losses, nfe = ({name: [] for name in runs} for _ in range(3))
    for step, batch in enumerate(data.train_dataloader()):
        if step == args.warmup + args.steps:
            break
        for name, (_, loss_fn) in runs.items():
            reference.encoder_field.nfe = reference.latent_field.nfe = 0
            torch.manual_seed(args.seed + step)  # the same posterior samples in both
            started = time.perf_counter()
            with recording() as solves:
                loss = loss_fn(batch)
                loss.backward()
            optimizers[name].step()
            optimizers[name].zero_grad()
            seconds[name].append(time.perf_counter() - started)
            losses[name].append(loss.item())
            counted = reference.encoder_field.nfe + reference.latent_field.nfe
            nfe[name].append(solves.nfe_forward + solves.nfe_backward if name == "zoo" else counted)
    print(f"{args.config}: batch {data.batch_size}, {args.steps} timed steps after {args.warmup}, "
          f"{torch.get_num_threads()} threads")
    print("| run | s/step | NFE per step (fwd+bwd) | first loss | last loss |")
    print("|---|---|---|---|---|")
    rows = {}
    for name in runs:
        rows[name] = {"s_per_step": statistics.median(seconds[name][args.warmup:]),
                      "nfe_per_step": statistics.mean(nfe[name]), "first_loss": losses[name][0],
                      "last_loss": losses[name][-1], "s_per_step_all": seconds[name]}
        print(f"| {name} | {rows[name]['s_per_step']:.4f} | {rows[name]['nfe_per_step']:.1f} "
              f"| {losses[name][0]:.4f} | {losses[name][-1]:.4f} |")
    ratio = rows["zoo"]["s_per_step"] / rows["reference"]["s_per_step"]
    print(f"zoo / reference time per step: {ratio:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"config": args.config, "steps": args.steps, "warmup": args.warmup,
                                         "rows": rows, "zoo_over_reference": ratio}, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""FFJORD training steps through the zoo against the same model on a plain torchdiffeq loop.

Builds the recipe's model (default ``configs/ffjord-8gaussians.yaml``: concat-squash 64-64-64,
tanh, a learned end time, dopri5 at 1e-5 with the adjoint, exact divergence) and a reference with
a copy of the same vector field and end time, written the way FFJORD's own code trains its 2-D
flows: the augmented dynamics ``(f, -div f)`` with the divergence as a Python loop of one
``autograd.grad`` per dimension (FFJORD's ``divergence_bf``), solved by
``torchdiffeq.odeint_adjoint`` over ``[0, T]`` with the time gradient from torchdiffeq. Both take
the same batches from the recipe's data module, with Adam at the recipe's settings, one step of
each in turn (so the machine's load hits both alike). The zoo's step is the model's own
``likelihood_loss`` (what its ``training_step`` calls: the state also carries RNODE's two
integrals, left out of step control), backward and Adam; Lightning's loop around it is measured
by ``odenet_fmnist.py``.

Printed: the median seconds per step after ``--warmup`` steps, the forward/backward NFE per step,
the first and last training NLL of each, and the ratio zoo / reference.

    python benchmarks/flow_step_time.py --steps 30 --warmup 3 \
        --json benchmarks/results-flow-step-time-cpu.json
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time
from pathlib import Path

import torch
import yaml
from torch import nn
from torchdiffeq import odeint_adjoint

from zoo.families import datamodule_class, model_class
from zoo.ode.stats import recording

REPO = Path(__file__).resolve().parents[1]


def divergence_by_loop(dz: torch.Tensor, z: torch.Tensor, graph: bool) -> torch.Tensor:
    """The Jacobian's trace, one backward pass per dimension (FFJORD's brute-force divergence)."""
    trace = torch.zeros(len(z), device=z.device, dtype=z.dtype)
    for i in range(z.shape[1]):
        trace = trace + torch.autograd.grad(dz[:, i].sum(), z, create_graph=graph, retain_graph=True)[0][:, i]
    return trace


class ReferenceDynamics(nn.Module):
    """``(f(t, z), -div f)`` of a copied vector field, counting its evaluations."""

    def __init__(self, field: nn.Module) -> None:
        super().__init__()
        self.field = field
        self.nfe = 0

    def forward(self, t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        self.nfe += 1
        z = state[0]
        graph = torch.is_grad_enabled()  # off in the adjoint's forward solve and its time gradient
        with torch.enable_grad():
            z = z if graph and z.requires_grad else z.detach().requires_grad_(True)
            dz = self.field(t, z)
            divergence = divergence_by_loop(dz, z, graph)
        return (dz, -divergence) if graph else (dz.detach(), -divergence.detach())


class Reference(nn.Module):
    """The flow of the zoo model's first block on plain ``odeint_adjoint``."""

    def __init__(self, zoo_model, solver) -> None:
        super().__init__()
        self.dynamics = ReferenceDynamics(copy.deepcopy(zoo_model.net.fields[0]))
        self.raw_end_time = nn.Parameter(zoo_model.net.raw_end_time.detach()[:1].clone())
        self.rtol, self.atol = solver.step.rtol, solver.step.atol

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        end = nn.functional.softplus(self.raw_end_time)[0]
        times = torch.stack([end.new_zeros(()), end])
        state = (x, x.new_zeros(len(x)))
        z, delta = (s[-1] for s in odeint_adjoint(self.dynamics, state, times, rtol=self.rtol, atol=self.atol,
                                                  method="dopri5", adjoint_params=tuple(self.parameters())))
        log_normal = -0.5 * (z.pow(2).sum(-1) + z.shape[1] * math.log(2 * math.pi))
        return -(log_normal - delta).mean()


def timed_step(loss_fn, optimizer, x) -> tuple[float, float]:
    start = time.perf_counter()
    loss = loss_fn(x)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return time.perf_counter() - start, loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/ffjord-8gaussians.yaml")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    recipe = yaml.safe_load((REPO / args.config).read_text())
    data = datamodule_class(recipe["data"]["class_path"])(**recipe["data"].get("init_args", {}))
    data.prepare_data()
    data.setup("fit")
    torch.manual_seed(args.seed)
    init_args = {**recipe["model"]["init_args"], "input_shape": data.input_shape}
    model = model_class(recipe["model"]["class_path"])(**init_args)
    if model.training_settings.trainer != "likelihood" or len(model.net.fields) != 1:
        parser.error("the reference is one block trained by likelihood: pick an ffjord- or rnode- recipe")
    reference = Reference(model, model.solver)
    optimizer_args = recipe["optimizer"].get("init_args", {})
    runs = {
        "zoo": (model.likelihood_loss, torch.optim.Adam(model.parameters(), **optimizer_args)),
        "reference": (reference.nll, torch.optim.Adam(reference.parameters(), **optimizer_args)),
    }
    seconds = {name: [] for name in runs}
    losses = {name: [] for name in runs}
    nfe = {name: [] for name in runs}
    for step, (x,) in enumerate(data.train_dataloader()):
        if step == args.warmup + args.steps:
            break
        for name, (loss_fn, optimizer) in runs.items():
            reference.dynamics.nfe = 0
            with recording() as solves:
                s, loss = timed_step(loss_fn, optimizer, x)
            seconds[name].append(s)
            losses[name].append(loss)
            zoo_nfe = solves.nfe_forward + solves.nfe_backward
            nfe[name].append(zoo_nfe if name == "zoo" else reference.dynamics.nfe)
    print(f"{args.config}: batch {data.batch_size}, {args.steps} timed steps after {args.warmup}, "
          f"{torch.get_num_threads()} threads")
    print("| run | s/step | NFE per step (fwd+bwd) | first NLL | last NLL |")
    print("|---|---|---|---|---|")
    rows = {}
    for name in runs:
        median = statistics.median(seconds[name][args.warmup:])
        rows[name] = {"s_per_step": median, "nfe_total_per_step": statistics.mean(nfe[name]),
                      "first_nll": losses[name][0], "last_nll": losses[name][-1],
                      "s_per_step_all": seconds[name]}
        print(f"| {name} | {median:.4f} | {rows[name]['nfe_total_per_step']:.1f} "
              f"| {losses[name][0]:.4f} | {losses[name][-1]:.4f} |")
    ratio = rows["zoo"]["s_per_step"] / rows["reference"]["s_per_step"]
    print(f"zoo / reference time per step: {ratio:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"config": args.config, "steps": args.steps, "warmup": args.warmup,
                                         "rows": rows, "zoo_over_reference": ratio}, indent=2) + "\n")


if __name__ == "__main__":
    main()

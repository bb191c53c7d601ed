"""Seconds per training step on CPU: one process against 2-process DDP (gloo), same global batch.

For each model, trains ``--warmup + --steps`` steps twice through Lightning, from the same
initial weights and on the same global batches of real Fashion-MNIST images (``--data random``
for random inputs):

- **single**: one process on the whole global batch, with ``--threads`` threads;
- **ddp**: ``ddp_spawn`` with 2 processes and the gloo backend, each on its half of every
  global batch, with ``--threads / 2`` threads each, so both runs share the same cores.

It prints the median seconds per step after the warm-up (process 0's, from the start of the
batch to the end of the optimizer step: for DDP that includes the gradient all-reduce and the
synchronized logging), the speed-up, the forward/backward NFE of the first step, and how far
DDP's all-reduced gradients of the first step are from:

- the gradient of the whole global batch in one process (``single``). With an adaptive solver
  this is not zero: each process's half takes its own steps (the error norm is over a batch),
  and the adjoint turns round-off differences (other thread counts) into differences around
  1e-4 relative. It is zero up to round-off for fixed-step solvers;
- the mean of the two halves' gradients, each solved on its own in one process with as many
  threads as one DDP process (``halves``): exactly what DDP must compute, so this should be 0
  or round-off.

    python benchmarks/ddp_cpu.py --json benchmarks/results-ddp-cpu.json
    python benchmarks/ddp_cpu.py --models odenet-tiny --global-batch 16 --steps 2   # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningDataModule, Trainer
from torch.nn import functional as F  # noqa: N812
from torch.utils.data import DataLoader

from zoo.data import FashionMNISTDataModule
from zoo.models import ANODE, ODENet

WORLD = 2
#: Models: class and constructor arguments. The solver is each class's default: dopri5 at
#: rtol = atol = 1e-3, without the adjoint for ODE-Net and with it for ANODE, as in the recipes.
MODELS = {
    # configs/odenet-fmnist.yaml's architecture at width 16 (its own width is 64)
    "odenet-tiny": (ODENet, {"width": 16, "dynamics": {"name": "odenet_conv", "hidden_dims": [16]}}),
    # configs/odenet-fmnist.yaml's model as it is: width 64, 208,266 parameters
    "odenet": (ODENet, {"width": 64, "dynamics": {"name": "odenet_conv", "hidden_dims": [64]}}),
    # configs/anode-fmnist.yaml's model: 64 filters, 5 augmented channels, the adjoint; 85,462 parameters
    "anode": (ANODE, {"augment_dim": 5, "dynamics": {"name": "anode_conv", "hidden_dims": [64]}}),
}


class Shards(LightningDataModule):
    """Fixed global batches; each process of ``world`` takes its contiguous share of every one."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]], world: int) -> None:
        super().__init__()
        self.batches, self.world = batches, world

    def train_dataloader(self) -> DataLoader:
        rank = self.trainer.global_rank if self.world > 1 else 0
        shards = [(x.chunk(self.world)[rank], y.chunk(self.world)[rank]) for x, y in self.batches]
        return DataLoader(shards, batch_size=None)


class StepTimer(Callback):
    """Times every step, and keeps the first step's gradients and NFE; saves them at the end."""

    def __init__(self, out_dir: str, threads: int) -> None:
        super().__init__()
        self.out_dir, self.threads = Path(out_dir), threads
        self.seconds: list[float] = []
        self.grads: dict[str, torch.Tensor] | None = None
        self.nfe: tuple[int, int] | None = None
        self._start = 0.0

    def setup(self, trainer, pl_module, stage) -> None:
        torch.set_num_threads(self.threads)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.grads is None:
            self.grads = {name: p.grad.detach().clone() for name, p in pl_module.named_parameters()}
            blocks = pl_module.ode_blocks()
            self.nfe = (sum(b.nfe_forward for b in blocks), sum(b.nfe_backward for b in blocks))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seconds.append(time.perf_counter() - self._start)

    def on_fit_end(self, trainer, pl_module) -> None:
        record = {"seconds": self.seconds, "grads": self.grads, "nfe": self.nfe}
        torch.save(record, self.out_dir / f"rank{trainer.global_rank}.pt")


def build(name: str, seed: int) -> torch.nn.Module:
    """The model ``name``, initialized from ``seed``."""
    cls, kwargs = MODELS[name]
    torch.manual_seed(seed)
    return cls(**kwargs)


def global_batches(source: str, size: int, count: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` batches of ``size`` Fashion-MNIST training images (normalized) or random inputs."""
    generator = torch.Generator().manual_seed(seed)
    if source == "random":
        return [(torch.randn(size, 1, 28, 28, generator=generator),
                 torch.randint(0, 10, (size,), generator=generator)) for _ in range(count)]
    data = FashionMNISTDataModule(val_size=0, augment=False, download=False)
    data.prepare_data()
    data.setup("fit")
    order = torch.randperm(len(data.train_set), generator=generator)[: size * count].tolist()
    images = torch.stack([data.train_set[i][0] for i in order])
    labels = torch.tensor([data.train_set[i][1] for i in order])
    return list(zip(images.split(size), labels.split(size), strict=True))


def train(name: str, batches, world: int, threads: int, seed: int) -> list[dict]:
    """Trains on ``batches`` with ``world`` processes; returns each process's timer record."""
    with tempfile.TemporaryDirectory(prefix="ddp-cpu-") as folder:
        trainer = Trainer(
            accelerator="cpu", devices=world, strategy="ddp_spawn" if world > 1 else "auto",
            max_steps=len(batches), limit_val_batches=0, num_sanity_val_steps=0,
            use_distributed_sampler=False, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False,
            callbacks=[StepTimer(folder, threads)],
        )
        trainer.fit(build(name, seed), datamodule=Shards(batches, world))
        return [torch.load(Path(folder, f"rank{rank}.pt"), weights_only=False) for rank in range(world)]


def halves_gradient(name: str, batch, seed: int) -> dict[str, torch.Tensor]:
    """The mean of the gradients of the halves of ``batch``, each solved on its own."""
    model = build(name, seed)
    total = {}
    for images, labels in zip(batch[0].chunk(WORLD), batch[1].chunk(WORLD), strict=True):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        for key, p in model.named_parameters():
            total[key] = total.get(key, 0) + p.grad / WORLD
    return total


def max_abs(grads: dict[str, torch.Tensor]) -> float:
    return max(float(g.abs().max()) for g in grads.values())


def difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[float, float]:
    """Largest absolute difference, and the norm of the difference over the norm of ``b``."""
    diff = {key: a[key] - b[key] for key in b}
    norm = sum(float(d.square().sum()) for d in diff.values()) ** 0.5
    return max_abs(diff), norm / sum(float(g.square().sum()) for g in b.values()) ** 0.5


def measure(name: str, args: argparse.Namespace) -> dict:
    """The figures of one model."""
    batches = global_batches(args.data, args.global_batch, args.warmup + args.steps, args.seed)
    torch.set_num_threads(args.threads)
    single = train(name, batches, 1, args.threads, args.seed)[0]
    ddp = train(name, batches, WORLD, max(1, args.threads // WORLD), args.seed)
    torch.set_num_threads(max(1, args.threads // WORLD))
    halves = halves_gradient(name, batches[0], args.seed)
    single_s = statistics.median(single["seconds"][args.warmup:])
    ddp_s = statistics.median(ddp[0]["seconds"][args.warmup:])
    vs_single, vs_single_rel = difference(ddp[0]["grads"], single["grads"])
    vs_halves, _ = difference(ddp[0]["grads"], halves)
    return {
        "model": name,
        "params": sum(p.numel() for p in build(name, args.seed).parameters()),
        "global_batch": args.global_batch,
        "single_s_per_step_median": single_s,
        "ddp_s_per_step_median": ddp_s,
        "speedup_single_over_ddp": single_s / ddp_s,
        "single_s_per_step": single["seconds"],
        "ddp_s_per_step_rank0": ddp[0]["seconds"],
        "nfe_first_step_single": single["nfe"],
        "nfe_first_step_ddp_by_rank": [record["nfe"] for record in ddp],
        "max_abs_grad": max_abs(single["grads"]),
        "max_abs_grad_diff_ddp_vs_single": vs_single,
        "rel_norm_grad_diff_ddp_vs_single": vs_single_rel,
        "max_abs_grad_diff_ddp_vs_halves": vs_halves,
        "grads_equal_across_ranks": all(
            torch.equal(ddp[0]["grads"][key], ddp[1]["grads"][key]) for key in ddp[0]["grads"]
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["odenet-tiny", "anode"])
    parser.add_argument("--global-batch", type=int, default=64, help="split in 2 halves under DDP")
    parser.add_argument("--steps", type=int, default=10, help="timed steps, after the warm-up")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="threads of the single process; each DDP process gets half")
    parser.add_argument("--data", choices=["fmnist", "random"], default="fmnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.global_batch % WORLD:
        parser.error(f"--global-batch must be a multiple of {WORLD}")
    results = [measure(name, args) for name in args.models]

    print(f"CPU, {args.threads} threads; DDP: {WORLD} processes x {max(1, args.threads // WORLD)} threads, "
          f"gloo; global batch {args.global_batch}; median of {args.steps} steps after {args.warmup}")
    header = ("model", "params", "single s/step", "ddp s/step", "speedup", "NFE single", "NFE ddp",
              "max|g|", "max|ddp-single|", "rel", "max|ddp-halves|")
    print(" | ".join(header))
    for r in results:
        print(" | ".join([
            r["model"], f"{r['params']:,}", f"{r['single_s_per_step_median']:.3f}",
            f"{r['ddp_s_per_step_median']:.3f}", f"{r['speedup_single_over_ddp']:.2f}x",
            "/".join(map(str, r["nfe_first_step_single"])),
            " ".join("/".join(map(str, nfe)) for nfe in r["nfe_first_step_ddp_by_rank"]),
            f"{r['max_abs_grad']:.3g}", f"{r['max_abs_grad_diff_ddp_vs_single']:.3g}",
            f"{r['rel_norm_grad_diff_ddp_vs_single']:.3g}", f"{r['max_abs_grad_diff_ddp_vs_halves']:.3g}",
        ]))
    if args.json:
        figures = {
            "world": WORLD, "backend": "gloo", "threads": args.threads, "global_batch": args.global_batch,
            "steps": args.steps, "warmup": args.warmup, "data": args.data, "seed": args.seed,
            "torch": torch.__version__, "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "results": results,
        }
        with open(args.json, "w") as file:
            json.dump(figures, file, indent=2)
            file.write("\n")


if __name__ == "__main__":
    main()

"""The zoo's overhead on ODE-Net training, against the same model on plain torchdiffeq + torch.

Two training runs of ODE-Net on Fashion-MNIST, in this one process, with the same seed, threads,
data and number of steps:

* **zoo**: ``configs/odenet-fmnist.yaml`` through the zoo's real command-line path
  (:class:`zoo.cli.ZooCLI` built in-process, as ``zoo fit`` does), with validation,
  checkpointing and the progress bar turned off. A callback times each training step
  (``on_train_batch_start`` -> ``on_train_batch_end``: forward, loss, metrics and logging,
  backward, optimizer step) and reads the ODE block's forward and backward evaluation counts.
* **reference**: the architecture of torchdiffeq's ``examples/odenet_mnist.py`` written here
  directly on ``torch`` and ``torchdiffeq.odeint`` (no Lightning, no ``zoo.ode``), with the
  config's solver (dopri5, rtol = atol = 1e-3, ``options={"step_t": [t1]}``, the option the zoo
  passes for end-state solves), SGD and MultiStepLR settings. Each step is timed from the batch
  on the device to the end of ``optimizer.step()``.

Both read their batches from the zoo's ``FashionMNISTDataModule`` with the same settings, so the
input pipeline is identical; the reference's loader gets Lightning's ``pl_worker_init_function``
(what Lightning adds after ``seed_everything(workers=True)``), so the random crops are identical
too. (With ``--num-workers 0`` the crops draw from the main process's generator, which the runs
share, and they differ.) The reference builds its ODE function before the stem, as
``zoo.models.ODENet`` does, so both start from the same weights; on CPU the two runs then compute
the same losses step by step (the first and last are printed). Backward evaluations are counted
the zoo's way in both: a gradient hook on each recorded evaluation's output (without the adjoint,
one vector-Jacobian product per evaluation that reaches the loss).

By default the runs are interleaved step by step (a reference step runs after each zoo step,
outside the zoo's timing), so a change in machine load hits both alike. The first ``--warmup``
steps of each are left out. Reported: seconds per step (mean, median; also the whole loop per step,
which adds data waiting and the per-step work outside the timed window), NFE per step, test
accuracy on the official test split, and the overhead zoo / reference, raw and per function
evaluation (seconds per forward + backward evaluation), since the adaptive solver's NFE may drift
apart once the weights do.

Full run (one epoch, 430 steps; the whole test set)::

    python benchmarks/odenet_fmnist.py --json odenet-fmnist-bench.json

Quick check::

    python benchmarks/odenet_fmnist.py --steps 15 --warmup 3 --test-batches 5
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import lightning
import numpy as np
import torch
import torchdiffeq
import yaml
from lightning import Callback, LightningDataModule, LightningModule
from lightning.fabric.utilities.seed import pl_worker_init_function
from torch import nn
from torch.nn import functional as F  # noqa: N812

from zoo.cli import ZooCLI
from zoo.data import FashionMNISTDataModule

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "odenet-fmnist.yaml"
TRAIN_IMAGES = 60000
ORDERS = ("interleave", "reference-first", "zoo-first")


# ------------------------------------------------------------------ configuration


@dataclass(frozen=True)
class Setup:
    """What both runs share: the config's hyperparameters and this script's flags."""

    config: dict[str, Any]
    steps: int
    warmup: int
    batch_size: int
    num_workers: int
    test_batches: int | None
    seed: int
    device: torch.device
    threads: int
    order: str

    @property
    def model(self) -> dict[str, Any]:
        return self.config["model"]["init_args"]

    @property
    def solver(self) -> dict[str, Any]:
        return self.model["solver"]

    def data_kwargs(self) -> dict[str, Any]:
        kwargs = dict(self.config["data"]["init_args"])
        kwargs.update(batch_size=self.batch_size, num_workers=self.num_workers, seed=self.seed)
        return kwargs


def load_config() -> dict[str, Any]:
    config = yaml.safe_load(CONFIG.read_text())
    model = config["model"]["init_args"]
    assert config["model"]["class_path"].endswith("ODENet"), config["model"]["class_path"]
    assert model["dynamics"]["name"] == "odenet_conv" and not model["solver"].get("adjoint")
    return config


def epoch_steps(config: dict[str, Any], batch_size: int) -> int:
    return math.ceil((TRAIN_IMAGES - config["data"]["init_args"]["val_size"]) / batch_size)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Seconds per training step of ODE-Net on Fashion-MNIST through the zoo "
                    "(Lightning CLI) and through plain torchdiffeq, in one process.")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps of each run (default: one epoch, 430 at batch 128)")
    parser.add_argument("--warmup", type=int, default=5, help="first steps left out of the timings")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the config's (128)")
    parser.add_argument("--num-workers", type=int, default=2, help="data loader workers of each run")
    parser.add_argument("--test-batches", type=int, default=None,
                        help="test batches to evaluate (default: the whole test set)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads for both runs (default: torch's current)")
    parser.add_argument("--seed", type=int, default=0, help="seed of both runs")
    parser.add_argument("--order", choices=ORDERS, default="interleave",
                        help="interleave the runs step by step, or run one after the other")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return parser.parse_args(argv)


def make_setup(args: argparse.Namespace) -> Setup:
    config = load_config()
    batch_size = args.batch_size or config["data"]["init_args"]["batch_size"]
    steps = args.steps or epoch_steps(config, batch_size)
    if not 0 <= args.warmup < steps:
        raise SystemExit(f"--warmup must be in [0, --steps), got {args.warmup} with {steps} steps")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    device = "cpu" if device == "auto" else device
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    return Setup(config, steps, args.warmup, batch_size, args.num_workers, args.test_batches,
                 args.seed, torch.device(device), threads, args.order)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------ measurements


@dataclass
class StepStats:
    """Per-step figures of one run."""

    warmup: int
    step_s: list[float] = field(default_factory=list)
    loop_s: list[float] = field(default_factory=list)
    nfe_forward: list[int] = field(default_factory=list)
    nfe_backward: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    threads: int = 0
    initial_weights: list[torch.Tensor] = field(default_factory=list, repr=False)
    test: dict[str, float] = field(default_factory=dict)

    def add(self, step_s: float, nfe_forward: int, nfe_backward: int, loss: float) -> None:
        self.step_s.append(step_s)
        self.nfe_forward.append(nfe_forward)
        self.nfe_backward.append(nfe_backward)
        self.loss.append(loss)

    def summary(self) -> dict[str, Any]:
        k = self.warmup
        times, loop = self.step_s[k:], self.loop_s[k:]
        nfe = sum(self.nfe_forward[k:]) + sum(self.nfe_backward[k:])
        return {
            "steps": len(self.step_s), "timed_steps": len(times), "threads": self.threads,
            "step_s_mean": statistics.fmean(times), "step_s_median": statistics.median(times),
            "loop_s_mean": statistics.fmean(loop) if loop else math.nan,
            "nfe_forward_mean": statistics.fmean(self.nfe_forward[k:]),
            "nfe_backward_mean": statistics.fmean(self.nfe_backward[k:]),
            "s_per_nfe": sum(times) / nfe,
            "loss_first": self.loss[0], "loss_last": self.loss[-1], **self.test,
        }

    def per_step(self) -> dict[str, list]:
        return {"step_s": self.step_s, "loop_s": self.loop_s, "nfe_forward": self.nfe_forward,
                "nfe_backward": self.nfe_backward, "loss": self.loss}


# ------------------------------------------------------------------ reference: torchdiffeq + torch


def norm(dim: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, dim), dim)


class ConcatConv2d(nn.Module):
    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self._layer = nn.Conv2d(dim_in + 1, dim_out, kernel_size=3, stride=1, padding=1)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        tt = torch.ones_like(x[:, :1, :, :]) * t
        return self._layer(torch.cat([tt, x], 1))


class ODEfunc(nn.Module):
    """torchdiffeq's example ODE function, counting forward and backward evaluations."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm1 = norm(dim)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = ConcatConv2d(dim, dim)
        self.norm2 = norm(dim)
        self.conv2 = ConcatConv2d(dim, dim)
        self.norm3 = norm(dim)
        self.nfe = self.nfe_backward = 0

    def count_backward(self, grad: torch.Tensor) -> None:
        self.nfe_backward += 1

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        out = self.relu(self.norm1(x))
        out = self.relu(self.norm2(self.conv1(t, out)))
        out = self.norm3(self.conv2(t, out))
        if out.requires_grad:
            out.register_hook(self.count_backward)
        return out


class ODEBlock(nn.Module):
    def __init__(self, odefunc: ODEfunc, solver: dict[str, Any], t1: float) -> None:
        super().__init__()
        self.odefunc = odefunc
        self.integration_time = torch.tensor([0.0, t1])
        self.step_t = torch.tensor([t1])
        self.method, self.rtol, self.atol = solver["method"], solver["rtol"], solver["atol"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.odefunc.nfe = self.odefunc.nfe_backward = 0
        out = torchdiffeq.odeint(self.odefunc, x, self.integration_time.type_as(x),
                                 rtol=self.rtol, atol=self.atol, method=self.method,
                                 options={"step_t": self.step_t.type_as(x)})
        return out[1]


def reference_net(setup: Setup) -> tuple[nn.Sequential, ODEfunc]:
    """Stem, ODE block, head; the ODE function is built first, as in ``zoo.models.ODENet``."""
    width, model = setup.model["width"], setup.model
    odefunc = ODEfunc(width)
    stem = [nn.Conv2d(1, width, 3, 1), norm(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 4, 2, 1), norm(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 4, 2, 1)]
    block = ODEBlock(odefunc, setup.solver, model["integration_time"])
    head = [norm(width), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
            nn.Linear(width, 10)]
    return nn.Sequential(*stem, block, *head), odefunc


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class ReferenceRun:
    """The reference training loop, one step per :meth:`step` call."""

    def __init__(self, setup: Setup) -> None:
        self.setup, self.device = setup, setup.device
        seed_all(setup.seed)
        net, self.odefunc = reference_net(setup)
        self.net = net.to(self.device)
        self.stats = StepStats(setup.warmup, threads=torch.get_num_threads())
        self.stats.initial_weights = [v.detach().clone() for v in self.net.state_dict().values()]
        optimizer, scheduler = setup.config["optimizer"], setup.config["lr_scheduler"]
        self.optimizer = torch.optim.SGD(self.net.parameters(), **optimizer["init_args"])
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer,
                                                              **scheduler["init_args"])
        self.data = FashionMNISTDataModule(**setup.data_kwargs())
        self.data.prepare_data()
        self.data.setup("fit")
        self.loader = self.data.train_dataloader()
        self.loader.worker_init_fn = partial(pl_worker_init_function, rank=0)
        self.batches = iter(self.loader)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        batch = next(self.batches, None)
        if batch is None:  # end of an epoch
            self.scheduler.step()
            self.batches = iter(self.loader)
            batch = next(self.batches)
        return tuple(x.to(self.device, non_blocking=True) for x in batch)

    def step(self) -> None:
        start = time.perf_counter()
        images, labels = self.next_batch()
        synchronize(self.device)
        begin = time.perf_counter()
        self.optimizer.zero_grad()
        loss = F.cross_entropy(self.net(images), labels)
        loss.backward()
        self.optimizer.step()
        synchronize(self.device)
        end = time.perf_counter()
        self.stats.add(end - begin, self.odefunc.nfe, self.odefunc.nfe_backward, loss.item())
        self.stats.loop_s.append(end - start)

    def finish(self) -> None:
        while len(self.stats.step_s) < self.setup.steps:
            self.step()
        self.batches = self.loader = None  # stops the workers

    @torch.no_grad()
    def test(self) -> None:
        self.data.setup("test")
        self.net.eval()
        correct = seen = nfe = 0
        for index, (images, labels) in enumerate(self.data.test_dataloader()):
            if index == self.setup.test_batches:
                break
            logits = self.net(images.to(self.device))
            correct += int((logits.argmax(1).cpu() == labels).sum())
            seen += len(labels)
            nfe += self.odefunc.nfe * len(labels)
        self.stats.test = {"test_acc": correct / seen, "test_nfe_forward": nfe / seen,
                           "test_images": seen}


# ------------------------------------------------------------------ zoo: the Lightning CLI


class StepTimer(Callback):
    """Times the zoo's training steps; calls ``between`` after each one, outside the timing."""

    def __init__(self, setup: Setup, between: Callable[[], None] | None = None) -> None:
        self.device, self.between = setup.device, between
        self.stats = StepStats(setup.warmup)
        self._begin = self._last_begin = self._between_s = 0.0
        self.test_images = 0

    def on_fit_start(self, trainer, pl_module) -> None:
        self.stats.threads = torch.get_num_threads()
        self.stats.initial_weights = [v.detach().clone() for v in pl_module.net.state_dict().values()]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        synchronize(self.device)
        now = time.perf_counter()
        if self._last_begin:  # the loop since the previous step began, less the reference's step
            self.stats.loop_s.append(now - self._last_begin - self._between_s)
        self._begin = self._last_begin = now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        synchronize(self.device)
        step_s = time.perf_counter() - self._begin
        blocks = pl_module.ode_blocks()
        self.stats.add(step_s, sum(b.nfe_forward for b in blocks),
                       sum(b.nfe_backward for b in blocks), float(outputs["loss"]))
        start = time.perf_counter()
        if self.between is not None:
            self.between()
        self._between_s = time.perf_counter() - start

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.test_images += len(batch[1])


def kept_callbacks(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The config's callbacks but checkpointing (there is no validation to monitor)."""
    return [c for c in config["trainer"].get("callbacks") or []
            if not c["class_path"].endswith("ModelCheckpoint")]


def zoo_args(setup: Setup, save_dir: str) -> list[str]:
    args = [
        "fit", "--config", str(CONFIG), "--seed_everything", str(setup.seed),
        "--trainer.max_steps", str(setup.steps), "--trainer.limit_val_batches", "0",
        "--trainer.num_sanity_val_steps", "0", "--trainer.enable_checkpointing", "false",
        "--trainer.callbacks", json.dumps(kept_callbacks(setup.config)),
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.logger.init_args.save_dir", save_dir,
        "--trainer.accelerator", setup.device.type, "--trainer.devices", "1",
        "--data.init_args.batch_size", str(setup.batch_size),
        "--data.init_args.num_workers", str(setup.num_workers),
        "--data.init_args.seed", str(setup.seed),
    ]
    return args


def run_zoo(setup: Setup, timer: StepTimer, save_dir: str) -> None:
    """``zoo fit`` in-process (``zoo.cli.main``'s ZooCLI, plus the timer), then the test split."""
    cli = ZooCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"callbacks": [timer]},
        args=zoo_args(setup, save_dir),
    )
    if setup.test_batches is not None:  # set here: the CLI reads "1" as 1.0, the whole set
        cli.trainer.limit_test_batches = setup.test_batches
    (results,) = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    timer.stats.test = {"test_acc": results["test_acc"],
                        "test_nfe_forward": results["test_nfe_forward"],
                        "test_images": timer.test_images}


def run_both(setup: Setup, save_dir: str) -> tuple[StepStats, StepStats]:
    if setup.order == "zoo-first":
        timer = StepTimer(setup)
        run_zoo(setup, timer, save_dir)
        reference = ReferenceRun(setup)
        reference.finish()
    else:
        reference = ReferenceRun(setup)
        if setup.order == "reference-first":
            reference.finish()
        timer = StepTimer(setup, between=reference.step if setup.order == "interleave" else None)
        run_zoo(setup, timer, save_dir)
        reference.finish()
    reference.test()
    return timer.stats, reference.stats


# ------------------------------------------------------------------ report


def same_weights(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(
        x.shape == y.shape and torch.equal(x.cpu(), y.cpu()) for x, y in zip(a, b))


def header(setup: Setup) -> str:
    device = "CPU" if setup.device.type == "cpu" else f"GPU {torch.cuda.get_device_name(setup.device)}"
    return (f"ODE-Net Fashion-MNIST | torch {torch.__version__}, lightning {lightning.__version__}, "
            f"torchdiffeq {torchdiffeq.__version__} | {device}, {setup.threads} threads | "
            f"{setup.steps} steps ({setup.warmup} warm-up) of batch {setup.batch_size}, "
            f"{setup.num_workers} workers, {setup.order}")


ROWS = (
    ("s/step, mean", "step_s_mean", "{:.4f}"),
    ("s/step, median", "step_s_median", "{:.4f}"),
    ("s/step, whole loop (incl. data wait)", "loop_s_mean", "{:.4f}"),
    ("forward NFE/step", "nfe_forward_mean", "{:.1f}"),
    ("backward NFE/step (grad hooks)", "nfe_backward_mean", "{:.1f}"),
    ("ms per (fwd+bwd) NFE", "s_per_nfe", "{:.3f}"),
    ("train loss, first step", "loss_first", "{:.5f}"),
    ("train loss, last step", "loss_last", "{:.5f}"),
    ("test images", "test_images", "{:d}"),
    ("test accuracy", "test_acc", "{:.4f}"),
    ("test forward NFE/batch", "test_nfe_forward", "{:.1f}"),
)
RATIOS = {"step_s_mean", "step_s_median", "loop_s_mean", "s_per_nfe"}


def table(zoo: dict[str, Any], ref: dict[str, Any]) -> list[str]:
    lines = [f"{'':38}{'zoo':>12}{'reference':>12}{'zoo/ref':>10}"]
    for label, key, fmt in ROWS:
        z, r = (zoo[key], ref[key]) if key != "s_per_nfe" else (zoo[key] * 1e3, ref[key] * 1e3)
        ratio = f"{z / r:.3f}" if key in RATIOS else ""
        lines.append(f"{label:38}{fmt.format(z):>12}{fmt.format(r):>12}{ratio:>10}")
    lines.append(f"(timings over steps {zoo['steps'] - zoo['timed_steps'] + 1}-{zoo['steps']}; "
                 "test on the official Fashion-MNIST test split)")
    return lines


def paired_medians(zoo: StepStats, ref: StepStats) -> tuple[float, float]:
    """Medians over timed steps of zoo/reference of the same step: raw, and per (fwd+bwd) NFE."""
    k, raw, per_nfe = zoo.warmup, [], []
    for z, r, zf, zb, rf, rb in zip(zoo.step_s[k:], ref.step_s[k:], zoo.nfe_forward[k:],
                                    zoo.nfe_backward[k:], ref.nfe_forward[k:], ref.nfe_backward[k:]):
        raw.append(z / r)
        per_nfe.append((z / (zf + zb)) / (r / (rf + rb)))
    return statistics.median(raw), statistics.median(per_nfe)


def overheads(zs: dict[str, Any], rs: dict[str, Any], zoo: StepStats, ref: StepStats) -> dict:
    paired_raw, paired_per_nfe = paired_medians(zoo, ref)
    return {"raw_mean": zs["step_s_mean"] / rs["step_s_mean"],
            "raw_median": zs["step_s_median"] / rs["step_s_median"],
            "per_nfe": zs["s_per_nfe"] / rs["s_per_nfe"],
            "paired_median_raw": paired_raw, "paired_median_per_nfe": paired_per_nfe}


NOTES = (
    "s/step: zoo on_train_batch_start -> on_train_batch_end; reference batch on device -> "
    "optimizer.step() done. Backward NFE: gradient hooks on recorded evaluations (the zoo's count). "
    "Both runs read batches from zoo.data.FashionMNISTDataModule with the same settings and seeds."
)


def report(setup: Setup, zoo: StepStats, ref: StepStats) -> dict[str, Any]:
    zs, rs = zoo.summary(), ref.summary()
    overhead = overheads(zs, rs, zoo, ref)
    identical = same_weights(zoo.initial_weights, ref.initial_weights)
    print(header(setup))
    print("\n".join(table(zs, rs)))
    print(f"overhead zoo/reference: raw {overhead['raw_mean']:.3f}x (medians {overhead['raw_median']:.3f}x, "
          f"paired by step {overhead['paired_median_raw']:.3f}x); per (fwd+bwd) NFE "
          f"{overhead['per_nfe']:.3f}x (paired {overhead['paired_median_per_nfe']:.3f}x); "
          f"same initial weights: {'yes' if identical else 'NO'}")
    return {"header": header(setup), "notes": NOTES, "overhead": overhead,
            "same_initial_weights": identical,
            "zoo": {**zs, "per_step": zoo.per_step()}, "reference": {**rs, "per_step": ref.per_step()}}


def quiet_lightning() -> None:
    """Only results on the terminal: no Lightning banners, tips or advice."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"lightning\..*")
    warnings.filterwarnings("ignore", message=r".*(num_workers|does not have many workers).*")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup = make_setup(args)
    quiet_lightning()
    with tempfile.TemporaryDirectory(prefix="odenet-bench-") as save_dir:
        zoo, ref = run_both(setup, save_dir)
    figures = report(setup, zoo, ref)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())

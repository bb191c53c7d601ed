"""Pictures of a flow: the density, samples and paths of a 2-D flow; samples of an image flow.

For 2-D points, the learned density on a grid beside the data, samples and trajectories; for
images, a grid of samples beside test images.
"""

from __future__ import annotations

import math

import torch
from lightning.pytorch import LightningModule, Trainer
from matplotlib.figure import Figure

from zoo.errors import SettingError
from zoo.ode import solve
from zoo.pictures import FitPictures, evaluating, log_picture, new_figure, save_figure


@torch.no_grad()
def plot_density(model: LightningModule, data: torch.Tensor, resolution: int = 120,
                 num_samples: int = 2000, num_paths: int = 24, limit: float = 4.5) -> Figure:
    """Four panels: the data, the model's density exp(log p) on a grid, its samples, its flow.

    Args:
        model: An FFJORD model on 2-D points (``log_prob``, ``sample``, ``net``).
        data: (N, 2) test points.
        resolution: Grid points per side of the density panel.
        num_samples: Points drawn from the model.
        num_paths: Base points whose paths back to data space are drawn.
        limit: The panels show [-limit, limit]^2.
    """
    figure, axes = new_figure(ncols=4, width=3.2, height=3.2)
    edges = torch.linspace(-limit, limit, resolution, device=model.device)
    grid = torch.cartesian_prod(edges, edges)
    with evaluating(model):
        density = model.log_prob(grid).exp().reshape(resolution, resolution).T.cpu()
        samples = model.sample(num_samples, generator=torch.Generator(model.device).manual_seed(0)).cpu()
        paths = _paths(model, num_paths)
    shown = data[: min(len(data), num_samples)].cpu()
    axes[0].scatter(shown[:, 0], shown[:, 1], s=1, color="black")
    axes[0].set_title("data")
    axes[1].imshow(density, origin="lower", extent=(-limit, limit, -limit, limit), cmap="magma")
    cell = (2 * limit / (resolution - 1)) ** 2
    axes[1].set_title(f"density (mass on grid {density.sum().item() * cell:.3f})")
    axes[2].scatter(samples[:, 0], samples[:, 1], s=1, color="tab:blue")
    axes[2].set_title("samples")
    for path in paths.unbind(1):
        axes[3].plot(path[:, 0], path[:, 1], lw=0.8, color="tab:orange")
        axes[3].scatter(path[-1, 0], path[-1, 1], s=6, color="black")
    axes[3].set_title("flow from base (dots: data side)")
    for ax in axes:
        ax.set_xlim(-limit, limit)
        ax.set_ylim(-limit, limit)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    return figure


def _paths(model: LightningModule, num_paths: int, num_times: int = 40) -> torch.Tensor:
    """(num_times, num_paths, 2) states of base points flowed back through the blocks."""
    angle = torch.arange(num_paths, device=model.device) * 2 * math.pi / num_paths
    z = 2.0 * torch.stack([angle.cos(), angle.sin()], dim=1)
    states = []
    for block in reversed(range(len(model.net.fields))):
        end = model.net.end_times[block]
        times = torch.linspace(1, 0, num_times, device=model.device) * end
        path = solve(model.net.fields[block], z, times, model.test_solver).ys
        states.append(path)
        z = path[-1]
    return torch.cat(states).cpu()


def _test_tensor(trainer: Trainer, folder) -> torch.Tensor | None:
    """The data module's test points or images, on the rank-zero process of a run with a folder."""
    datamodule = getattr(trainer, "datamodule", None)
    if not (trainer.is_global_zero and folder is not None and datamodule is not None):
        return None
    datamodule.setup("test")
    (data,) = datamodule.test_set.tensors
    return data


class DensityPictures(FitPictures):
    """Saves :func:`plot_density` of the test split as ``pictures/density.png`` after fitting.

    The picture also goes to the run's Weights & Biases or TensorBoard logger under
    ``pictures/density``. Only the global-rank-zero process writes.

    Args:
        resolution: Grid points per side of the density panel.
        num_samples: Points drawn from the model.
    """

    def __init__(self, resolution: int = 120, num_samples: int = 2000) -> None:
        super().__init__()
        if resolution < 2 or num_samples < 1:
            raise SettingError(
                f"resolution must be >= 2 and num_samples >= 1, got {resolution!r}, {num_samples!r}"
            )
        self.resolution, self.num_samples = resolution, num_samples

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        data = _test_tensor(trainer, self.folder)
        if data is None:
            return
        figure = plot_density(pl_module, data, self.resolution, self.num_samples)
        log_picture(trainer, "pictures/density", save_figure(figure, self.folder / "density.png"))


@torch.no_grad()
def plot_samples(model: LightningModule, images: torch.Tensor, num_samples: int = 64,
                 seed: int = 0) -> Figure:
    """Two panels of pixel images: test images and as many samples of an image flow.

    Args:
        model: An FFJORD model on integer pixels (``sample``, ``pixels``).
        images: (N, C, H, W) test images of pixel values 0 to ``levels - 1``.
        num_samples: Images in each panel (a square grid).
        seed: Seed of the samples' base points.
    """
    from torchvision.utils import make_grid

    if getattr(model, "pixels", None) is None:
        raise SettingError("plot_samples draws pixel images: the model needs pixel_levels")
    figure, axes = new_figure(ncols=2, width=4.0, height=4.2)
    with evaluating(model):
        samples = model.sample(num_samples, generator=torch.Generator(model.device).manual_seed(seed)).cpu()
    top = model.pixels.levels - 1
    columns = max(1, math.isqrt(num_samples))
    panels = ((axes[0], images[:num_samples].cpu(), "test images"), (axes[1], samples, "samples"))
    for ax, batch, title in panels:
        grid = make_grid(batch / top, nrow=columns, padding=1, pad_value=1.0)
        ax.imshow(grid.permute(1, 2, 0).clamp(0, 1), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    return figure


class SamplePictures(FitPictures):
    """Saves :func:`plot_samples` as ``pictures/samples.png`` after fitting an image flow.

    The picture also goes to the run's Weights & Biases or TensorBoard logger under
    ``pictures/samples``. Only the global-rank-zero process writes.

    Args:
        num_samples: Images drawn from the model.
    """

    def __init__(self, num_samples: int = 64) -> None:
        super().__init__()
        if isinstance(num_samples, bool) or num_samples < 1:
            raise SettingError(f"num_samples must be a positive integer, got {num_samples!r}")
        self.num_samples = num_samples

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        images = _test_tensor(trainer, self.folder)
        if images is None:
            return
        figure = plot_samples(pl_module, images, self.num_samples)
        log_picture(trainer, "pictures/samples", save_figure(figure, self.folder / "samples.png"))

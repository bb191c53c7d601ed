"""Pictures of ODE classifiers on toy data: flows, decision regions, and NFE during training.

* :func:`plot_flow`: the trajectories of points through a model's first ODE block, coloured by
  class, as in Dupont, Doucet & Teh 2019, "Augmented Neural ODEs", Figures 1 and 3.
* :func:`plot_decision_regions`: the predicted class over a toy data set's box, with its test
  points on top.
* :func:`plot_nfe` and :func:`save_nfe_plot`: function evaluations per training step of runs
  logged by Lightning's ``CSVLogger``.
* :class:`FlowPictures`: a callback saving the first two at the end of training, and sending
  them to the run's Weights & Biases or TensorBoard logger.

Figures are built with matplotlib's object API on the Agg canvas (``matplotlib.figure.Figure``,
never ``pyplot``), so no global figure registry holds them: a figure is freed with its last
reference, and nothing here needs a display.
"""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from zoo.data.toys import ToyDataModule
from zoo.errors import SettingError

#: Most trajectories :func:`plot_flow` draws by default.
MAX_TRAJECTORIES = 200
#: Resolution (dots per inch) of the saved PNG files.
DPI = 150
#: Columns of a ``metrics.csv`` holding the NFE per training step, forward and backward; the
#: names without ``_step`` are those of metrics logged on steps only.
NFE_COLUMNS = {
    "forward": ("train_nfe_forward_step", "train_nfe_forward"),
    "backward": ("train_nfe_backward_step", "train_nfe_backward"),
}

# ---------------------------------------------------------------- shared helpers


def new_figure(ncols: int = 1, width: float = 5.0, height: float = 4.0) -> tuple[Figure, list[Axes]]:
    """A figure on the Agg canvas with ``ncols`` axes side by side.

    Args:
        ncols: Number of axes.
        width: Width of each axes' share of the figure, in inches.
        height: Height of the figure, in inches.

    Returns:
        The figure and its axes, left to right.
    """
    figure = Figure(figsize=(width * ncols, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, ncols, squeeze=False)[0]
    return figure, list(axes)


def save_figure(figure: Figure, path: Path) -> Path:
    """Writes ``figure`` as a PNG at ``path``, creating its folder.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=DPI)
    return path


def class_colors(num_classes: int) -> list[tuple[float, float, float, float]]:
    """One colour per class label: ``tab10`` up to ten classes, else evenly along ``turbo``."""
    if num_classes <= 10:
        cmap = matplotlib.colormaps["tab10"]
        return [cmap(k) for k in range(num_classes)]
    cmap = matplotlib.colormaps["turbo"]
    return [cmap(k / (num_classes - 1)) for k in range(num_classes)]


def _class_legend(axes: Axes, colors: Sequence, class_names: Sequence[str] | None) -> None:
    names = class_names or [f"class {k}" for k in range(len(colors))]
    handles = [Line2D([], [], color=color, marker="o", linestyle="", label=name)
               for color, name in zip(colors, names)]
    axes.legend(handles=handles, loc="best", fontsize="small")


def subsample(n: int, limit: int) -> torch.Tensor:
    """Indices of at most ``limit`` of ``n`` items, evenly spread and always the same.

    Returns:
        ``range(n)`` when ``n <= limit``, else ``limit`` distinct increasing indices.
    """
    if limit < 1:
        raise SettingError(f"limit must be a positive integer, got {limit!r}")
    if n <= limit:
        return torch.arange(n)
    return torch.arange(limit) * n // limit


@contextlib.contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no gradients inside; every submodule's mode restored after.

    The solves made inside count in no training step: a step's NFE are the stats of the solves
    it records itself (:class:`zoo.models.base.ZooModule`).
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training


def _placement(model: torch.nn.Module) -> dict:
    """``device`` and floating ``dtype`` of the model's first parameter (CPU float32 without one)."""
    parameter = next(model.parameters(), None)
    if parameter is None:
        return {"device": torch.device("cpu"), "dtype": torch.float32}
    return {"device": parameter.device, "dtype": parameter.dtype}


def predict(model: torch.nn.Module, points: torch.Tensor, batch_size: int = 65536) -> torch.Tensor:
    """Predicted class of each point (argmax of the model's output), on the CPU.

    Call it inside :func:`evaluating`; the points are moved to the model's device in batches.
    """
    placement = _placement(model)
    batches = [model(chunk.to(**placement)).argmax(dim=-1).cpu() for chunk in points.split(batch_size)]
    return torch.cat(batches)


# ---------------------------------------------------------------- flows


def plot_flow(model: torch.nn.Module, points: torch.Tensor, labels: torch.Tensor, num_times: int = 20,
              *, max_points: int = MAX_TRAJECTORIES, class_names: Sequence[str] | None = None) -> Figure:
    """Trajectories of points through the model's first ODE block, coloured by class.

    The block (``model.ode_blocks()[0]``) must act on the input features themselves, as in
    :class:`zoo.models.VectorODEClassifier`. It is solved in eval mode, without gradients, and
    read at ``num_times`` times from its ``t0`` to its ``t1``; the model's modes are restored.

    For 1-D inputs the first axes shows the state's first coordinate against time (Dupont et
    al. 2019, Figures 1 and 3), and for an augmented block a second axes shows the paths in the
    plane of the data coordinate and the first augmented coordinate. For 2-D inputs one axes
    shows the paths in the plane of the state's first two coordinates, start points marked.
    Each trajectory is one line.

    Args:
        model: A classifier with ``ode_blocks()``, such as any :class:`zoo.models.Classifier`.
        points: Inputs, (n, 1) or (n, 2).
        labels: Their classes, (n,) integers from 0; they colour the trajectories.
        num_times: Number of times the trajectories are read at, >= 2.
        max_points: Most trajectories drawn: an evenly spread, fixed subset of the points.
        class_names: Names of the classes, by label, for the legend.

    Returns:
        The figure.

    Raises:
        ValueError: The model has no ODE block, the points are not 1-D or 2-D vectors, or
            ``num_times`` < 2.
    """
    blocks = model.ode_blocks()
    if not blocks:
        raise SettingError(f"plot_flow needs a model with an ODE block; {type(model).__name__} has none")
    if points.dim() != 2 or points.shape[1] not in (1, 2):
        raise SettingError(f"plot_flow draws 1-D or 2-D inputs, (n, 1) or (n, 2); got {tuple(points.shape)}")
    if int(num_times) != num_times or num_times < 2:
        raise SettingError(f"num_times must be an integer >= 2, got {num_times!r}")
    block = blocks[0]
    keep = subsample(len(points), max_points)
    points, labels = points[keep], labels[keep].cpu().numpy()
    times = torch.linspace(block.t0, block.t1, int(num_times))
    with evaluating(model):
        states = block(points.to(**_placement(model)), times=times).float().cpu().numpy()
    num_classes = max(len(class_names or ()), int(labels.max(initial=-1)) + 1)
    colors = class_colors(num_classes)
    line_colors = [colors[label] for label in labels]
    if points.shape[1] == 1:
        figure, axes = _flow_1d(times.numpy(), states, line_colors, augmented=block.augment_dim > 0)
    else:
        figure, axes = _flow_2d(states, line_colors)
    _class_legend(axes[0], colors, class_names)
    return figure


def _flow_1d(times: np.ndarray, states: np.ndarray, colors: list, augmented: bool
             ) -> tuple[Figure, list[Axes]]:
    """Data coordinate against time; with augmentation, also the (data, augmented) plane."""
    figure, axes = new_figure(2 if augmented else 1)
    for i, color in enumerate(colors):
        axes[0].plot(times, states[:, i, 0], color=color, linewidth=0.8, alpha=0.7)
    axes[0].set(xlabel="t", ylabel="h(t), data coordinate", title="Trajectories")
    if augmented:
        for i, color in enumerate(colors):
            axes[1].plot(states[:, i, 0], states[:, i, 1], color=color, linewidth=0.8, alpha=0.7)
        axes[1].scatter(states[0, :, 0], states[0, :, 1], c=colors, s=8, zorder=3)
        axes[1].set(xlabel="h(t), data coordinate", ylabel="first augmented coordinate",
                    title="Paths in the augmented plane")
    return figure, axes


def _flow_2d(states: np.ndarray, colors: list) -> tuple[Figure, list[Axes]]:
    """Paths in the plane of the first two state coordinates, start points marked."""
    figure, axes = new_figure(1, width=5.0, height=5.0)
    for i, color in enumerate(colors):
        axes[0].plot(states[:, i, 0], states[:, i, 1], color=color, linewidth=0.8, alpha=0.6)
    axes[0].scatter(states[0, :, 0], states[0, :, 1], c=colors, s=8, zorder=3)
    axes[0].set(xlabel="h₁(t)", ylabel="h₂(t)", title="Trajectories from t0 (dots) to t1")
    axes[0].set_aspect("equal", adjustable="datalim")
    return figure, axes


# ---------------------------------------------------------------- decision regions


def plot_decision_regions(model: torch.nn.Module, datamodule: ToyDataModule, resolution: int = 200) -> Figure:
    """The model's predicted class over a toy data set's box, with the test points on top.

    2-D data: the predicted class filled in over ``datamodule.grid(resolution)``. 1-D data: a
    strip of the predicted class along x (the box with a 10% margin), the test points at the
    height of their class. Points are coloured by their true class, and the title gives the
    accuracy on them (all of the test split, from ``datamodule.make_split("test")``). The model
    is evaluated in eval mode without gradients; its modes are restored.

    Args:
        model: A classifier of the data module's points, returning class scores.
        datamodule: A toy data module with 1-D or 2-D inputs.
        resolution: Number of grid points along each axis.

    Returns:
        The figure.

    Raises:
        ValueError: The data are not 1-D or 2-D.
    """
    if tuple(datamodule.input_shape) not in ((1,), (2,)):
        raise SettingError(f"plot_decision_regions draws 1-D or 2-D data; {datamodule.display_name} has "
                         f"input_shape {tuple(datamodule.input_shape)}")
    points, labels = datamodule.make_split("test")
    colors = class_colors(datamodule.num_classes)
    figure, (axes,) = new_figure(1, width=5.5, height=5.0 if datamodule.input_shape == (2,) else 3.0)
    with evaluating(model):
        if datamodule.input_shape == (2,):
            _regions_2d(axes, model, datamodule, resolution, colors)
        else:
            _regions_1d(axes, model, datamodule, resolution, colors)
        correct = predict(model, points) == labels
    _draw_points(axes, points, labels, colors)
    _class_legend(axes, colors, datamodule.class_names)
    axes.set_title(f"{datamodule.display_name}\ntest accuracy {correct.float().mean().item():.1%} "
                   f"({len(labels)} points)")
    return figure


def _regions_2d(axes: Axes, model: torch.nn.Module, datamodule: ToyDataModule, resolution: int,
                colors: list) -> None:
    xx, yy, grid = datamodule.grid(resolution)
    classes = predict(model, grid).reshape(xx.shape)
    levels = np.arange(datamodule.num_classes + 1) - 0.5
    axes.contourf(xx.numpy(), yy.numpy(), classes.numpy(), levels=levels, colors=colors, alpha=0.3)
    axes.set(xlabel="x₁", ylabel="x₂")
    axes.set_aspect("equal", adjustable="box")


def _regions_1d(axes: Axes, model: torch.nn.Module, datamodule: ToyDataModule, resolution: int,
                colors: list) -> None:
    low, high = datamodule.bounds[0]
    pad = 0.1 * (high - low)
    xs = torch.linspace(low - pad, high + pad, resolution)
    classes = predict(model, xs[:, None]).numpy()
    rgba = np.asarray(colors)[classes][None]
    top = datamodule.num_classes - 0.5
    axes.imshow(rgba, extent=(xs[0].item(), xs[-1].item(), -0.5, top), aspect="auto", alpha=0.3,
                interpolation="nearest", origin="lower")
    axes.set(xlabel="x", ylabel="class", ylim=(-0.5, top))
    axes.set_yticks(range(datamodule.num_classes), datamodule.class_names)


def _draw_points(axes: Axes, points: torch.Tensor, labels: torch.Tensor, colors: list) -> None:
    """Test points coloured by class; 1-D points at their class's height, spread deterministically."""
    point_colors = [colors[label] for label in labels.tolist()]
    if points.shape[1] == 2:
        x, y = points[:, 0].numpy(), points[:, 1].numpy()
    else:
        spread = (torch.arange(len(labels)) % 7 - 3).numpy() * 0.05
        x, y = points[:, 0].numpy(), labels.numpy() + spread
    axes.scatter(x, y, c=point_colors, s=10, edgecolors="black", linewidths=0.3, zorder=3)


# ---------------------------------------------------------------- NFE during training


def read_nfe(path: Path) -> dict[str, tuple[list[int], list[float]]]:
    """The NFE per training step logged in a ``CSVLogger`` ``metrics.csv``.

    Args:
        path: The CSV file, or the run's folder holding ``metrics.csv``.

    Returns:
        ``{"forward": (steps, nfe)}``, plus ``"backward"`` where the file logs it; rows without
        a value are skipped.

    Raises:
        ValueError: The file has no forward-NFE column (``train_nfe_forward_step``).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.csv"
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    header = rows[0].keys() if rows else ()
    series = {}
    for direction, names in NFE_COLUMNS.items():
        column = next((name for name in names if name in header), None)
        if column is not None:
            pairs = [(int(float(row["step"])), float(row[column])) for row in rows if row.get(column)]
            series[direction] = ([step for step, _ in pairs], [nfe for _, nfe in pairs])
    if "forward" not in series:
        raise SettingError(f"{path} logs no NFE per training step (no column {NFE_COLUMNS['forward'][0]})")
    return series


def plot_nfe(runs: Mapping[str, Path]) -> Figure:
    """Function evaluations per training step of named runs, from their ``metrics.csv`` files.

    Each run gets one colour: the forward NFE a solid line, the backward NFE (where logged) a
    dashed one.

    Args:
        runs: Run names (for the legend) to their ``metrics.csv`` files or run folders, for
            example ``{"NODE": Path(...), "ANODE": Path(...)}``.

    Returns:
        The figure, one axes.

    Raises:
        ValueError: No runs, or a run's file logs no forward NFE.
    """
    if not runs:
        raise SettingError("plot_nfe needs at least one run")
    figure, (axes,) = new_figure(1, width=7.0, height=4.0)
    colors = class_colors(len(runs))
    for (name, path), color in zip(runs.items(), colors):
        series = read_nfe(path)
        axes.plot(*series["forward"], color=color, linestyle="-", label=f"{name} forward")
        if "backward" in series:
            axes.plot(*series["backward"], color=color, linestyle="--", label=f"{name} backward")
    axes.set(xlabel="training step", ylabel="NFE per step", title="Function evaluations during training")
    axes.legend(fontsize="small")
    return figure


def save_nfe_plot(runs: Mapping[str, Path], out: Path) -> Path:
    """Saves :func:`plot_nfe` of ``runs`` as a PNG at ``out`` (its folder created).

    Returns:
        ``out``.
    """
    return save_figure(plot_nfe(runs), out)


# ---------------------------------------------------------------- callback


def run_folder(trainer: Trainer) -> Path:
    """The folder of the trainer's current run, where its first logger keeps this run's files.

    For a CSV or TensorBoard logger, and without a logger, ``trainer.log_dir``
    (``<save_dir>/<name>/version_<n>``, or ``default_root_dir``). Other loggers, such as
    ``WandbLogger``, give their ``save_dir`` as ``log_dir``, which every run shares; for them it is
    ``<save_dir>/<name>/<version>``, the folder ``ModelCheckpoint`` writes to as well.

    Call it on every process: ``trainer.log_dir`` is a collective call. Processes other than
    global rank zero get ``trainer.log_dir``, as their loggers know no version.
    """
    log_dir = Path(trainer.log_dir or trainer.default_root_dir)
    loggers = trainer.loggers
    if not loggers or isinstance(loggers[0], (CSVLogger, TensorBoardLogger)) or not trainer.is_global_zero:
        return log_dir
    logger = loggers[0]
    version = logger.version
    version = version if isinstance(version, str) else f"version_{version}"
    return Path(logger.save_dir or trainer.default_root_dir) / str(logger.name) / version


def log_picture(trainer: Trainer, key: str, path: Path) -> None:
    """Sends the PNG at ``path`` to each of the trainer's loggers that shows pictures, at its global step.

    A ``WandbLogger`` gets it as an image under ``key`` (``log_image``), a ``TensorBoardLogger``
    as an image summary tagged ``key`` (``add_image``); other loggers, such as ``CSVLogger``,
    are skipped. Weights & Biases is only imported by its logger, when it logs.
    """
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[str(path)], step=trainer.global_step)
        elif isinstance(logger, TensorBoardLogger):
            image = matplotlib.image.imread(path)  # height x width x RGBA, floats in [0, 1]
            logger.experiment.add_image(key, image, trainer.global_step, dataformats="HWC")


class FitPictures(Callback):
    """Draws into ``pictures/`` of the run's folder after fitting; the folder is found on every process."""

    def __init__(self) -> None:
        super().__init__()
        self.folder: Path | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self.folder = run_folder(trainer) / "pictures"


class FlowPictures(Callback):
    """Saves :func:`plot_flow` and :func:`plot_decision_regions` pictures of a toy model.

    At the end of fitting it writes ``flow.png`` and ``decision_regions.png``, and every
    ``every_n_epochs`` epochs (after validation) ``flow-epoch=NNN.png``, into ``pictures/`` under
    the run's folder (:func:`run_folder`: the logger's run folder; ``default_root_dir`` without a
    logger). Each picture also goes to the run's Weights & Biases or TensorBoard logger (see
    :func:`log_picture`), under ``pictures/flow`` and ``pictures/decision_regions`` at the
    global step it was drawn at. The points are the data module's test split. Only the
    global-rank-zero process writes.

    It does nothing, without an error, unless the trainer's data module is a
    :class:`zoo.data.ToyDataModule` with 1-D or 2-D inputs; the flows also need a model with
    ``ode_blocks()`` whose first block acts on the input features (as
    :class:`zoo.models.VectorODEClassifier`'s), and are skipped for a model with no ODE block.

    Args:
        every_n_epochs: Save a flow picture after the validation of every n-th epoch; 0: only at
            the end.
        resolution: Grid points along each axis of the decision regions.
    """

    def __init__(self, every_n_epochs: int = 0, resolution: int = 150) -> None:
        super().__init__()
        if isinstance(every_n_epochs, bool) or int(every_n_epochs) != every_n_epochs or every_n_epochs < 0:
            raise SettingError(f"every_n_epochs must be an integer >= 0, got {every_n_epochs!r}")
        if isinstance(resolution, bool) or int(resolution) != resolution or resolution < 2:
            raise SettingError(f"resolution must be an integer >= 2, got {resolution!r}")
        self.every_n_epochs = int(every_n_epochs)
        self.resolution = int(resolution)
        self.folder: Path | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Finds the folder on every process (``trainer.log_dir`` is a collective call)."""
        if stage == "fit":
            self.folder = run_folder(trainer) / "pictures"

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Saves ``flow-epoch=NNN.png`` after the validation of every ``every_n_epochs``-th epoch."""
        if not self.every_n_epochs or trainer.sanity_checking:
            return
        epoch = trainer.current_epoch
        if (epoch + 1) % self.every_n_epochs == 0:
            self._save(trainer, pl_module, flow=f"flow-epoch={epoch:03d}.png")

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Saves ``flow.png`` and ``decision_regions.png``."""
        self._save(trainer, pl_module, flow="flow.png", regions="decision_regions.png")

    def _save(self, trainer: Trainer, pl_module: LightningModule, flow: str | None = None,
              regions: str | None = None) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        if not (trainer.is_global_zero and self.folder is not None and _drawable(datamodule)):
            return
        if flow and getattr(pl_module, "ode_blocks", None) and pl_module.ode_blocks():
            points, labels = datamodule.make_split("test")
            figure = plot_flow(pl_module, points, labels, class_names=datamodule.class_names)
            log_picture(trainer, "pictures/flow", save_figure(figure, self.folder / flow))
        if regions:
            figure = plot_decision_regions(pl_module, datamodule, self.resolution)
            log_picture(trainer, "pictures/decision_regions", save_figure(figure, self.folder / regions))


def _drawable(datamodule: object) -> bool:
    """Whether the pictures apply: a toy data module of 1-D or 2-D points."""
    return isinstance(datamodule, ToyDataModule) and tuple(datamodule.input_shape) in ((1,), (2,))

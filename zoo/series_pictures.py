"""Pictures of time-series models: what was observed, the prediction and its spread, the truth.

* :func:`plot_series`: for a few series of a batch, one panel per series (first channel, or a
  chosen one): the observed points, the known target values, and the model's predictive mean
  with its 90% band at dense times over the whole window (a model with ``predict``, such as the
  Latent ODE), or its predictions at the target times (a forecaster).
* :class:`SeriesPictures`: a callback saving that picture of the first test batch at the end of
  fitting, as ``pictures/series.png`` in the run's folder, and sending it to the logger.
"""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule, Trainer
from matplotlib.figure import Figure

from zoo.data.series import SeriesBatch
from zoo.errors import SettingError
from zoo.pictures import FitPictures, evaluating, log_picture, new_figure, save_figure


def plot_series(
    model: torch.nn.Module,
    batch: SeriesBatch,
    num_series: int = 4,
    channel: int = 0,
    dense: int = 200,
    num_samples: int = 50,
) -> Figure:
    """One panel per series: observations, truth, and the model's mean and 90% predictive band."""
    count = min(num_series, len(batch))
    figure, axes = new_figure(ncols=count, width=4.0, height=3.0)
    start = torch.minimum(batch.times[0], batch.target_times[0])
    end = torch.maximum(batch.times[-1], batch.target_times[-1])
    grid = torch.linspace(float(start), float(end), dense, device=batch.times.device)
    with evaluating(model), torch.no_grad():
        if hasattr(model, "predict"):
            out = model.predict(batch.times, batch.values, batch.mask, grid, num_samples=num_samples)
            mean, band = out["mean"], torch.quantile(out["samples"], torch.tensor([0.05, 0.95]), dim=0)
            at = grid
        else:
            mean, band, at = model(batch), None, batch.target_times
    mean, at = mean.cpu(), at.cpu()
    band = None if band is None else band.cpu()
    batch = SeriesBatch(*(_to(getattr(batch, name), "cpu") for name in batch.__dataclass_fields__))
    for k, ax in enumerate(axes[:count]):
        seen = batch.mask[k, :, channel] > 0
        known = batch.target_mask[k, :, channel] > 0
        ax.plot(
            batch.target_times[known], batch.target_values[k, known, channel], ".", color="0.6", label="truth"
        )
        ax.plot(batch.times[seen], batch.values[k, seen, channel], "o", color="black", ms=3, label="observed")
        ax.plot(at, mean[k, :, channel], color="tab:blue", label="mean")
        if band is not None:
            ax.fill_between(
                at,
                band[0, k, :, channel],
                band[1, k, :, channel],
                color="tab:blue",
                alpha=0.25,
                label="90% band",
            )
        ax.set_xlabel("time (data set units)")
    axes[0].legend(fontsize=7)
    return figure


class SeriesPictures(FitPictures):
    """Saves :func:`plot_series` of the first test batch as ``pictures/series.png`` after fitting.

    The picture also goes to the run's Weights & Biases or TensorBoard logger under
    ``pictures/series``. Only the global-rank-zero process writes; a data module without
    series batches is skipped.

    Args:
        num_series: Series to draw.
        channel: The channel drawn.
    """

    def __init__(self, num_series: int = 4, channel: int = 0) -> None:
        super().__init__()
        if num_series < 1 or channel < 0:
            raise SettingError(f"num_series must be >= 1 and channel >= 0, got {num_series!r}, {channel!r}")
        self.num_series, self.channel = num_series, channel

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        if not (trainer.is_global_zero and self.folder is not None and hasattr(datamodule, "collate")):
            return
        datamodule.setup("test")
        batch = next(iter(datamodule.test_dataloader()))
        if not isinstance(batch, SeriesBatch):
            return
        batch = SeriesBatch(*(_to(getattr(batch, f), pl_module.device) for f in batch.__dataclass_fields__))
        figure = plot_series(pl_module, batch, self.num_series, self.channel)
        log_picture(trainer, "pictures/series", save_figure(figure, self.folder / "series.png"))


def _to(value: torch.Tensor | None, device) -> torch.Tensor | None:
    return None if value is None else value.to(device)

"""zoo.pictures: flows, decision regions, NFE curves, and the FlowPictures callback."""

import csv

import lightning
import matplotlib.image
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from torch.utils.data import DataLoader, TensorDataset

from zoo.data import SpheresDataModule
from zoo.models import ANODE, VectorODEClassifier
from zoo.pictures import (
    FlowPictures,
    plot_decision_regions,
    plot_flow,
    plot_nfe,
    read_nfe,
    save_figure,
    save_nfe_plot,
    subsample,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FAST_SOLVER = {"method": "rk4", "step_size": 0.25}
SMALL_MLP = {"name": "concat_mlp", "hidden_dims": [8]}


def toy_model(dim, augment_dim=0):
    torch.manual_seed(0)
    return VectorODEClassifier(input_shape=(dim,), num_classes=2, augment_dim=augment_dim,
                               dynamics=SMALL_MLP, solver=FAST_SOLVER)


def spheres(dim, **kwargs):
    return SpheresDataModule(dim=dim, num_inner=20, num_outer=60, num_val=20, num_test=20, **kwargs)


def assert_png(path):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 0 and image.shape[1] > 0


def scatters(axes):
    return [c for c in axes.collections if isinstance(c, PathCollection)]


def test_subsample_is_even_distinct_and_capped():
    assert subsample(5, 200).tolist() == [0, 1, 2, 3, 4]
    picked = subsample(1000, 200)
    assert len(picked) == 200 and len(set(picked.tolist())) == 200
    assert picked[0] == 0 and picked[-1] < 1000
    assert torch.equal(picked, subsample(1000, 200))
    with pytest.raises(ValueError, match="limit"):
        subsample(10, 0)


def test_flow_1d_augmented_draws_time_and_augmented_plane(tmp_path):
    model = toy_model(1, augment_dim=2)
    points, labels = spheres(1).make_split("train")
    figure = plot_flow(model, points, labels, num_times=7)
    assert isinstance(figure, Figure)
    time_axes, plane_axes = figure.axes
    assert len(time_axes.lines) == len(plane_axes.lines) == len(points) == 80
    assert all(len(line.get_xdata()) == 7 for line in time_axes.lines)
    torch.testing.assert_close(torch.as_tensor(time_axes.lines[0].get_xdata()), torch.linspace(0, 1, 7))
    # trajectories start at the data (time panel) and at zero augmentation (plane panel)
    assert time_axes.lines[0].get_ydata()[0] == pytest.approx(points[0, 0].item())
    assert plane_axes.lines[0].get_ydata()[0] == 0.0
    assert len(scatters(plane_axes)) == 1
    assert_png(save_figure(figure, tmp_path / "sub" / "flow.png"))


def test_flow_1d_without_augmentation_has_one_axes():
    model = toy_model(1)
    points, labels = spheres(1).make_split("test")
    assert len(plot_flow(model, points, labels, num_times=3).axes) == 1


def test_flow_2d_caps_trajectories_and_marks_starts(tmp_path):
    model = toy_model(2)
    points, labels = spheres(2).make_split("train")
    figure = plot_flow(model, points, labels, num_times=5, max_points=30, class_names=("in", "out"))
    (axes,) = figure.axes
    assert len(axes.lines) == 30
    (starts,) = scatters(axes)
    kept = points[subsample(len(points), 30)]
    torch.testing.assert_close(torch.as_tensor(starts.get_offsets()), kept.double())
    assert [text.get_text() for text in axes.get_legend().get_texts()] == ["in", "out"]
    assert_png(save_figure(figure, tmp_path / "flow2d.png"))


def test_flow_restores_modes_and_counts():
    model = toy_model(2)
    model.train()
    model.net.head.eval()
    block = model.ode_blocks()[0]
    points, labels = spheres(2).make_split("test")
    model(points)
    nfe = block.nfe_forward
    plot_flow(model, points, labels, num_times=4)
    assert model.training and model.net.body.training and not model.net.head.training
    assert block.nfe_forward == nfe


def test_flow_rejects_what_it_cannot_draw():
    points, labels = spheres(3).make_split("test")
    with pytest.raises(ValueError, match="1-D or 2-D"):
        plot_flow(toy_model(3), points, labels)
    points, labels = spheres(2).make_split("test")
    with pytest.raises(ValueError, match="num_times"):
        plot_flow(toy_model(2), points, labels, num_times=1)


@pytest.mark.parametrize("dim", [1, 2])
def test_decision_regions(dim, tmp_path):
    data = spheres(dim)
    figure = plot_decision_regions(toy_model(dim, augment_dim=2 if dim == 1 else 0), data, resolution=25)
    (axes,) = figure.axes
    (points,) = scatters(axes)
    assert len(points.get_offsets()) == 20
    if dim == 2:
        assert axes.collections[0] is not points  # the filled regions, under the points
    else:
        assert len(axes.images) == 1
    assert "test accuracy" in axes.get_title() and "(20 points)" in axes.get_title()
    assert_png(save_figure(figure, tmp_path / "regions.png"))


def test_decision_regions_accuracy_matches_the_model():
    data, model = spheres(2), toy_model(2)
    points, labels = data.make_split("test")
    with torch.no_grad():
        accuracy = (model(points).argmax(-1) == labels).float().mean().item()
    assert f"test accuracy {accuracy:.1%}" in plot_decision_regions(model, data, 10).axes[0].get_title()


def write_metrics(path, steps, backward=True):
    """A metrics.csv as CSVLogger writes it: union of columns, empty cells for missing values."""
    columns = ["epoch", "step", "train_loss_step", "train_nfe_forward_step", "val_acc"]
    if backward:
        columns.append("train_nfe_backward_step")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        for step in range(steps):
            row = {"epoch": 0, "step": step, "train_loss_step": 0.5, "train_nfe_forward_step": 20.0 + step}
            if backward:
                row["train_nfe_backward_step"] = 30.0 + step
            writer.writerow(row)
        writer.writerow({"epoch": 0, "step": steps - 1, "val_acc": 0.9})  # a row without NFE
    return path


def test_read_nfe_skips_empty_cells_and_accepts_run_folders(tmp_path):
    path = write_metrics(tmp_path / "run" / "metrics.csv", steps=4)
    series = read_nfe(tmp_path / "run")
    assert series["forward"] == ([0, 1, 2, 3], [20.0, 21.0, 22.0, 23.0])
    assert series["backward"] == ([0, 1, 2, 3], [30.0, 31.0, 32.0, 33.0])
    assert "backward" not in read_nfe(write_metrics(tmp_path / "f.csv", steps=2, backward=False))
    path.write_text("epoch,step,train_loss_step\n0,0,1.0\n")
    with pytest.raises(ValueError, match="no NFE"):
        read_nfe(path)


def test_plot_nfe_one_line_per_run_plus_backward(tmp_path):
    runs = {
        "NODE": write_metrics(tmp_path / "node.csv", steps=5),
        "ANODE": write_metrics(tmp_path / "anode.csv", steps=3, backward=False),
    }
    (axes,) = plot_nfe(runs).axes
    lines = {line.get_label(): line for line in axes.lines}
    assert sorted(lines) == ["ANODE forward", "NODE backward", "NODE forward"]
    assert lines["NODE forward"].get_linestyle() == "-" and lines["NODE backward"].get_linestyle() == "--"
    assert list(lines["ANODE forward"].get_xdata()) == [0, 1, 2]
    assert lines["NODE forward"].get_color() == lines["NODE backward"].get_color()
    out = save_nfe_plot(runs, tmp_path / "plots" / "nfe.png")
    assert out == tmp_path / "plots" / "nfe.png"
    assert_png(out)
    with pytest.raises(ValueError, match="at least one run"):
        plot_nfe({})


def fit(model, datamodule, tmp_path, callback):
    trainer = lightning.Trainer(
        max_steps=2, limit_val_batches=1, logger=CSVLogger(tmp_path), enable_progress_bar=False,
        enable_checkpointing=False, enable_model_summary=False, accelerator="cpu", devices=1,
        callbacks=[callback],
    )
    trainer.fit(model, datamodule=datamodule)
    return trainer


def test_callback_writes_pictures_under_the_log_dir(tmp_path):
    model = toy_model(2)
    trainer = fit(model, spheres(2, batch_size=40), tmp_path, FlowPictures(every_n_epochs=1, resolution=20))
    pictures = tmp_path / "lightning_logs" / "version_0" / "pictures"
    assert pictures.parent.samefile(trainer.log_dir)
    assert sorted(p.name for p in pictures.iterdir()) == [
        "decision_regions.png", "flow-epoch=000.png", "flow.png"
    ]
    for path in pictures.iterdir():
        assert_png(path)
    assert model.training  # left as the trainer set it


def test_callback_does_nothing_for_3d_toys(tmp_path):
    trainer = fit(toy_model(3), spheres(3, batch_size=40), tmp_path, FlowPictures(every_n_epochs=1))
    assert not (tmp_path / "lightning_logs" / "version_0" / "pictures").exists()
    assert trainer.global_step == 2


class RandomImages(lightning.LightningDataModule):
    """Not a toy data module: tiny random images."""

    def _loader(self):
        generator = torch.Generator().manual_seed(0)
        images = torch.randn(8, 1, 4, 4, generator=generator)
        return DataLoader(TensorDataset(images, torch.arange(8) % 2), batch_size=4)

    def train_dataloader(self):
        return self._loader()

    def val_dataloader(self):
        return self._loader()


def test_callback_does_nothing_for_other_data(tmp_path):
    torch.manual_seed(0)
    model = ANODE(input_shape=(1, 4, 4), num_classes=2, augment_dim=1,
                  dynamics={"name": "anode_conv", "hidden_dims": [4]}, solver=FAST_SOLVER)
    trainer = fit(model, RandomImages(), tmp_path, FlowPictures(every_n_epochs=1))
    assert trainer.global_step == 2
    assert not (tmp_path / "lightning_logs" / "version_0" / "pictures").exists()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"every_n_epochs": -1}, "every_n_epochs"),
    ({"every_n_epochs": True}, "every_n_epochs"),
    ({"resolution": 1}, "resolution"),
])
def test_callback_checks_its_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FlowPictures(**kwargs)

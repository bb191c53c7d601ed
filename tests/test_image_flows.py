"""The image flows of the FFJORD family: multiscale bookkeeping, pixels of Fashion-MNIST, the recipes."""

import csv
import math

import numpy as np
import pytest
import torch

from zoo.data import FashionMNISTPixelsDataModule
from zoo.errors import SettingError
from zoo.models.ffjord import FFJORD
from zoo.models.flow_nets import squeeze, unsqueeze
from zoo.ode import DYNAMICS, SolverSettings
from zoo.ode.cnf import standard_normal_log_prob

TIGHT = SolverSettings(method="dopri5", rtol=1e-7, atol=1e-7)
TINY_CONV = {"name": "concat_squash_conv", "hidden_dims": [4]}


def test_squeeze_moves_each_2x2_patch_into_channels_and_back():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    squeezed = squeeze(x)
    assert squeezed.shape == (2, 12, 2, 3)
    patch = x[1, 2, 2:4, 4:6].flatten()  # channel 2, the patch at row 1, column 2
    assert torch.equal(squeezed[1, 8:12, 1, 2], patch)
    assert torch.equal(unsqueeze(squeezed), x)


def multiscale_flow(shape=(1, 4, 4), scales=3, seed=0):
    torch.manual_seed(seed)
    model = FFJORD(input_shape=shape, dynamics=TINY_CONV, flow={"scales": scales, "end_time": 0.7},
                   test_solver=TIGHT, test_divergence="exact")
    for parameter in model.parameters():  # a flow that moves the points visibly
        parameter.data.mul_(3)
    return model.eval()


def test_the_multiscale_log_density_is_the_change_of_variables_of_the_whole_flow():
    # float64: at rtol 1e-7 a float32 solve of the batch and one of a single image round apart by 1e-4
    model = multiscale_flow().double()
    x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        log_p = model.log_prob(x)
    for i in range(len(x)):
        def flat_flow(flat, i=i):
            return model.net(flat.reshape(1, 1, 4, 4), TIGHT, "exact")[0].flatten()
        jacobian = torch.autograd.functional.jacobian(flat_flow, x[i].flatten())
        z = flat_flow(x[i].flatten())
        expected = standard_normal_log_prob(z[None]) + torch.linalg.slogdet(jacobian)[1]
        assert log_p[i].item() == pytest.approx(expected.item(), abs=1e-5)


def test_the_multiscale_flow_inverts_and_samples_the_data_shape():
    model = multiscale_flow(shape=(2, 8, 8))
    x = torch.randn(4, 2, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        z = model.net(x, TIGHT, "exact")[0]
        back = model.net.inverse(z, TIGHT)
    assert z.shape == x.shape and (z - x).abs().max() > 0.1
    assert torch.allclose(back, x, atol=1e-4)
    assert model.sample(3).shape == (3, 2, 8, 8)


def test_hutchinson_estimates_the_image_log_density_without_bias():
    model = multiscale_flow(scales=2)
    x = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(3)).expand(400, -1, -1, -1)
    with torch.no_grad():
        exact = model.log_prob(x[:1]).item()
        model.test_divergence = "hutchinson"
        estimates = model.log_prob(x)
    bound = 4 * estimates.std().item() / math.sqrt(len(x))
    assert abs(estimates.mean().item() - exact) < bound, (estimates.mean().item(), exact, bound)


def test_images_default_to_hutchinson_and_ffjords_ten_block_multiscale_flow():
    model = FFJORD(input_shape=(1, 28, 28), flow={"scales": 3, "num_blocks": 2})
    assert (model.training_settings.divergence, model.test_divergence) == ("hutchinson", "hutchinson")
    assert len(model.net.end_times) == 10  # 2 + 2 blocks at two scales, 2 at the last (odenvp)
    assert model.hparams["dynamics"]["name"] == "concat_conv"
    assert FFJORD(input_shape=(2,)).training_settings.divergence == "exact"


def test_hutchinson_gradients_are_the_same_through_the_adjoint_and_direct_backprop():
    grads = []
    for adjoint in (False, True):
        model = multiscale_flow(scales=2)
        model.solver = SolverSettings(method="dopri5", rtol=1e-8, atol=1e-8, adjoint=adjoint)
        torch.manual_seed(5)  # the same probes both times
        x = torch.rand(3, 1, 4, 4)
        z, delta, *_ = model.net(x, model.solver, "hutchinson")
        (standard_normal_log_prob(z) - delta).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    # measured: 3e-5 apart at most (3e-4 relative); another probe in the adjoint would be O(1) apart
    assert grads[0].abs().max() > 0 and torch.allclose(grads[0], grads[1], rtol=1e-3, atol=1e-4)


def test_too_many_scales_and_image_settings_on_vectors_fail_in_one_line():
    with pytest.raises(SettingError, match="does not halve; use fewer scales"):
        FFJORD(input_shape=(1, 28, 28), dynamics=TINY_CONV, flow={"scales": 4})
    with pytest.raises(SettingError, match=r"flow\.scales > 1 is for images"):
        FFJORD(input_shape=(2,), flow={"scales": 2})
    with pytest.raises(SettingError, match=r"flow\.scales: 1"):
        FFJORD(input_shape=(1, 28, 28), flow={"scales": 3, "learn_end_time": False},
               training={"trainer": "flow_matching"})


@pytest.mark.parametrize("name", ["concat_conv", "concat_squash_conv"])
def test_the_conv_fields_start_at_zero_when_asked_and_take_one_time_per_image(name):
    field = DYNAMICS.get(name)(3, [8], zero_last=True)
    assert field(torch.tensor(0.5), torch.randn(2, 3, 6, 6)).abs().max() == 0
    field = DYNAMICS.get(name)(3, [8])
    y = torch.randn(2, 3, 6, 6)
    both = field(torch.tensor([[0.1], [0.9]]), y)
    assert torch.allclose(both[1], field(torch.tensor(0.9), y[1:])[0], atol=1e-6)
    assert not torch.allclose(both[0], field(torch.tensor(0.9), y[:1])[0], atol=1e-3)  # time matters


def test_fashion_mnist_pixels_are_the_real_integer_images(fmnist_data_dir):
    dm = FashionMNISTPixelsDataModule(data_dir=str(fmnist_data_dir), val_size=500, test_size=300)
    dm.prepare_data()
    dm.setup("fit")
    (x,) = next(iter(dm.train_dataloader()))
    assert x.shape == (64, 1, 28, 28) and torch.equal(x, x.round()) and x.max() == 255 and x.min() == 0
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (59_500, 500, 300)
    train, val = dm.train_set.tensors[0], dm.val_set.tensors[0]
    assert not any(torch.equal(val[0], image) for image in train[:: 50])  # held out, not copied
    with pytest.raises(SettingError, match="test_size must be a positive integer"):
        FashionMNISTPixelsDataModule(test_size=0)


SMALL_IMAGES = ("--model.init_args.dynamics.hidden_dims", "[4]", "--data.init_args.batch_size", "8",
                "--data.init_args.val_size", "16", "--data.init_args.test_size", "16",
                "--trainer.limit_val_batches", "1", "--model.init_args.test_solver.rtol", "1e-3",
                "--model.init_args.test_solver.atol", "1e-3", "--trainer.enable_progress_bar", "false")


@pytest.mark.parametrize("recipe", ["ffjord-fmnist", "cfm-ot-fmnist"])
def test_the_fashion_mnist_recipes_fit_draw_samples_and_predict(run_zoo, tmp_path, recipe):
    from tests.conftest import CONFIGS

    config = CONFIGS / f"{recipe}.yaml"
    solver = ("--model.init_args.solver.rtol", "1e-3", "--model.init_args.solver.atol", "1e-3")
    run_zoo("fit", "--config", config, *SMALL_IMAGES, *(solver if recipe.startswith("ffjord") else ()),
            "--trainer.limit_train_batches", "2", "--trainer.max_epochs", "1")
    run = tmp_path / f"runs/{recipe}/version_0"
    with open(run / "metrics.csv") as file:
        (bpd,) = [float(row["val_bpd"]) for row in csv.DictReader(file) if row.get("val_bpd")]
    assert 0 < bpd < 16, bpd  # an untrained flow on 8-bit pixels: a few bits, finite
    assert (run / "pictures/samples.png").stat().st_size > 5_000
    run_zoo("predict", "--config", config, *SMALL_IMAGES, "--ckpt_path", run / "checkpoints/last.ckpt")
    (batch, *_) = sorted((tmp_path / f"runs/{recipe}/version_1/predictions").glob("*.npz"))
    arrays = np.load(batch)
    assert arrays["samples"].shape == (8, 1, 28, 28) and np.isfinite(arrays["log_prob"]).all()
    assert arrays["samples"].min() >= 0 and arrays["samples"].max() <= 255

"""The zoo's entries: card schema, bundled weights, export -> load through the CLI, fine-tuning.

Bundled weights are checked against their cards: the file's sha256, a strict load, and the
test accuracy on a fixed slice of the real Fashion-MNIST test split.
"""

import csv
import dataclasses
import hashlib
import inspect
import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch.utils.data import DataLoader, Subset

import zoo
from tests.conftest import CONFIGS, REPO
from tests.test_cli import SLICE
from tests.test_data_images import cifar_md5, write_cifar
from zoo.families import datamodule_class, model_class
from zoo.hub import ModelCard, WeightsMismatchError, WeightsNotTrainedError
from zoo.models import Classifier

BUNDLED_DIR = REPO / "checkpoints"
BUNDLED = sorted(path.stem for path in BUNDLED_DIR.glob("*.json"))
RECIPES = sorted(path.stem for path in CONFIGS.glob("*.yaml"))
# The test accuracy on the first SLICE_SIZE test images must be within TOLERANCE of the card's
# accuracy on all 10,000: at p ~ 0.9 one binomial standard deviation on 2,000 images is 0.0067,
# so 0.025 is almost four of them, while a wrong or damaged model misses by far more.
SLICE_SIZE = 2000
TOLERANCE = 0.025
# The ANODE image entries solve dopri5 on full-size feature maps, about 45 s per 1,000 images
# here: they are checked on 500, where one standard deviation at p ~ 0.83 is 0.017 and 0.06 is
# more than three of them.
SMALLER_SLICES = {"anode-fmnist": (500, 0.06), "node-fmnist": (500, 0.06)}
RESNET = CONFIGS / "resnet-fmnist.yaml"
TINY_RESNET = ("--model.init_args.width", "8", "--model.init_args.num_blocks", "1")


def test_every_lightning_module_takes_weights():
    from lightning import LightningModule

    classes = [getattr(zoo.models, name) for name in zoo.models.__all__]
    modules = [cls for cls in classes if issubclass(cls, LightningModule) and cls is not Classifier]
    assert modules
    for cls in modules:
        assert inspect.signature(cls).parameters["weights"].default is None, cls


def test_the_shipped_weights_are_bundled():
    assert {"odenet-fmnist", "resnet-fmnist", "anode-spheres2d", "node-spheres2d"} <= set(BUNDLED)
    assert set(zoo.list_models(pretrained=True)) == set(BUNDLED)
    assert set(zoo.list_models()) == set(BUNDLED) | set(RECIPES)
    assert zoo.list_models("resnet-*") == ["resnet-fmnist"]


@pytest.mark.parametrize("name", sorted(set(BUNDLED) | set(RECIPES)))
def test_card_schema(name):
    card = zoo.info(name)
    saved = {f.name for f in dataclasses.fields(ModelCard)} - {"source", "path"}
    assert set(card.as_dict()) == saved
    model = model_class(card.model)(**card.init_args)
    assert sum(p.numel() for p in model.parameters()) == card.num_params
    assert dict(model.hparams) == card.init_args  # every constructor argument is on the card
    recipe = yaml.safe_load((REPO / card.recipe).read_text())
    assert recipe["model"]["class_path"] == card.model
    assert recipe["data"]["class_path"] == card.datamodule
    assert_contains(card.init_args, recipe["model"].get("init_args") or {})
    datamodule = datamodule_class(card.datamodule)(**recipe["data"].get("init_args", {}))
    assert (datamodule.display_name, datamodule.preprocessing) == (card.dataset, card.preprocessing)
    assert card.init_args["input_shape"] == list(datamodule.input_shape)
    if card.trained:
        assert card.source == "bundled"
        if is_series(card):  # a Gaussian likelihood's loss may be below 0; its MSE and calibration may not
            assert card.metrics["test_mse"] >= 0 and 0 <= card.metrics["test_coverage90"] <= 1
            assert card.metrics["test_crps"] >= 0
        elif is_density(card):
            assert math.isfinite(card.metrics["test_nll"]) and card.metrics["test_nfe_forward"] > 0
        else:
            assert 0.0 < card.metrics["test_acc"] <= 1.0 and card.metrics["test_loss"] > 0
        assert card.metrics_command == f"zoo test --config {card.recipe} --model.init_args.weights {name}"
        assert card.recipe_command.startswith(f"zoo fit --config {card.recipe}")
        assert {"epoch", "global_step", "best_score"} <= card.training.keys()
    else:
        assert card.source == "recipe" and card.metrics == {} and card.sha256 is None


def is_series(card: ModelCard) -> bool:
    """A card of the Latent ODE family: metrics of predictions (MSE, calibration), not only accuracy."""
    return "test_mse" in card.metrics


def is_density(card: ModelCard) -> bool:
    """A card of the FFJORD family: a test negative log-likelihood (and bits/dim for pixels)."""
    return "test_nll" in card.metrics


def headline_metrics(card: ModelCard) -> list[str]:
    """The metrics a reproduction must match: accuracy, MSE and calibration, or the likelihood."""
    keys = ["test_mse", "test_coverage90", "test_crps", "test_elbo", "test_nll", "test_bpd", "test_acc"]
    return [key for key in keys if key in card.metrics]


def assert_contains(full: dict, partial: dict, where: str = "init_args") -> None:
    """Every value the recipe sets is the card's (the card also has the defaults)."""
    for key, value in partial.items():
        if isinstance(value, dict):
            assert_contains(full[key], value, f"{where}.{key}")
        else:
            assert full[key] == value, f"{where}.{key}"


def slice_accuracy(model, card: ModelCard, data_dir: Path, slice_size: int = SLICE_SIZE) -> float:
    """Accuracy on the first ``slice_size`` test points, with the recipe's data settings."""
    recipe = yaml.safe_load((REPO / card.recipe).read_text())
    data_class = datamodule_class(card.datamodule)
    kwargs = {**recipe["data"].get("init_args", {}), "num_workers": 0}
    if "data_dir" in inspect.signature(data_class).parameters:  # image data: the real files
        kwargs.update(data_dir=str(data_dir), download=False)
    datamodule = data_class(**kwargs)
    datamodule.setup("test")
    size = min(slice_size, len(datamodule.test_set))
    loader = DataLoader(Subset(datamodule.test_set, range(size)), batch_size=datamodule.batch_size)
    correct = 0
    with torch.no_grad():
        for points, labels in loader:
            correct += (model(points).argmax(dim=-1) == labels).sum().item()
    return correct / size


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_weights_match_their_card(name, fmnist_data_dir):
    card = zoo.info(name)
    path = BUNDLED_DIR / card.weights
    assert hashlib.sha256(path.read_bytes()).hexdigest() == card.sha256
    assert path.name == f"{name}-{card.sha256[:8]}.safetensors"
    model = zoo.load(name)
    assert not model.training and model.card == card
    stored = load_file(path)
    assert stored.keys() == model.state_dict().keys()
    assert all(torch.equal(stored[k], v) for k, v in model.state_dict().items())
    if is_density(card):
        assert_density_slice_matches(model, card)
        return
    if is_series(card):  # their test sets are small: the metrics command below runs all of it
        return
    slice_size, tolerance = SMALLER_SLICES.get(name, (SLICE_SIZE, TOLERANCE))
    accuracy = slice_accuracy(model, card, fmnist_data_dir, slice_size)
    assert abs(accuracy - card.metrics["test_acc"]) <= tolerance, (accuracy, card.metrics)


def assert_density_slice_matches(model, card: ModelCard) -> None:
    """The NLL on the first SLICE_SIZE test points is within 4 standard errors of the card's."""
    recipe = yaml.safe_load((REPO / card.recipe).read_text())
    datamodule = datamodule_class(card.datamodule)(**recipe["data"].get("init_args", {}))
    datamodule.setup("test")
    (points,) = datamodule.test_set.tensors
    with torch.no_grad():
        nll = -model.log_prob(points[:SLICE_SIZE])
    error = nll.std().item() / math.sqrt(len(nll))
    assert abs(nll.mean().item() - card.metrics["test_nll"]) <= 4 * error + 1e-3, (nll.mean(), card.metrics)


def logged_test_metrics(tmp_path: Path) -> dict[str, float]:
    (metrics,) = tmp_path.glob("runs/*/version_0/metrics.csv")
    with open(metrics) as file:
        rows = list(csv.DictReader(file))
    (row,) = [row for row in rows if any(key.startswith("test_") and value for key, value in row.items())]
    return {key: float(value) for key, value in row.items() if value}


# The ANODE image entries solve dopri5 on full-size feature maps, and the 2-D flows solve the exact
# log-likelihood of 100,000 test points: their card's test run takes minutes on 2 CPU cores, so it
# is left to `pytest -m slow`; their weights, hash and metric on a 2,000-point slice are still
# checked in CI above.
FLOW_2D_ENTRIES = {name for name in BUNDLED if is_density(zoo.info(name)) and not name.endswith("-digits")}
# Of the digits flows, one runs its card's test command in CI (each takes about 12 s); the slices of
# all four are checked above.
DIGITS_SLOW = {name for name in BUNDLED if name.endswith("-digits") and name != "cfm-ot-digits"}
FULL_TEST_SLOW = {"anode-fmnist", "node-fmnist"} | FLOW_2D_ENTRIES | DIGITS_SLOW


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=pytest.mark.slow if name in FULL_TEST_SLOW else ()) for name in BUNDLED]
)
def test_card_metrics_command_reproduces_the_card(name, run_zoo, tmp_path):
    """The card's own ``metrics_command``, run as written, gives the card's test metrics.

    Series models draw their predictive samples from a fixed seed in test, so their MSE, ELBO,
    coverage and CRPS are reproduced to the card's six digits.
    """
    card = zoo.info(name)
    command = card.metrics_command.split()
    assert command[:2] == ["zoo", "test"]
    config = command.index("--config") + 1
    command[config] = str(REPO / command[config])
    run_zoo(*command[1:], "--trainer.enable_progress_bar", "false", "--data.init_args.num_workers", "0")
    logged = logged_test_metrics(tmp_path)
    for key in headline_metrics(card):
        assert logged[key] == pytest.approx(card.metrics[key], rel=1e-4, abs=2e-4), key


def test_export_then_load_through_the_cli(run_zoo, tmp_path, isolated_zoo_home, fmnist_data_dir):
    run_zoo("fit", "--config", RESNET, *TINY_RESNET, "--trainer.max_steps", "4", *SLICE)
    last = next(tmp_path.glob("runs/resnet-fmnist/version_0/checkpoints/last.ckpt"))
    exported = run_zoo("export", last, "--name", "resnet-fmnist", "--notes", "a test export")
    registry = isolated_zoo_home / "registry"
    card = json.loads((registry / "resnet-fmnist.json").read_text())
    weights = registry / card["weights"]
    assert str(weights) in exported.stdout
    assert weights.name == f"resnet-fmnist-{card['sha256'][:8]}.safetensors"
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == card["sha256"]
    assert card["init_args"]["width"] == 8 and card["training"]["global_step"] == 4
    assert card["recipe"] == "configs/resnet-fmnist.yaml" and card["notes"] == "a test export"
    assert sorted(p.name for p in registry.iterdir()) == sorted([weights.name, "resnet-fmnist.json"])

    listing = run_zoo("list", "--pretrained").stdout
    rows = [line.split() for line in listing.splitlines()]
    assert any(row[0] == "resnet-fmnist" and row[-1] == "user" for row in rows)
    assert json.loads(run_zoo("info", "resnet-fmnist").stdout)["sha256"] == card["sha256"]

    model = zoo.load("resnet-fmnist")  # the user's export overrides the bundled entry
    assert model.card.source == "user"
    trained = torch.load(last, weights_only=True)["state_dict"]
    assert all(torch.equal(trained[k], v) for k, v in model.state_dict().items())
    datamodule = datamodule_class(card["datamodule"])(data_dir=str(fmnist_data_dir), num_workers=0)
    datamodule.setup("test")
    correct = 0
    with torch.no_grad():
        for images, labels in DataLoader(datamodule.test_set, batch_size=1000):
            correct += (model(images).argmax(-1) == labels).sum().item()
    assert correct / len(datamodule.test_set) == pytest.approx(card["metrics"]["test_acc"], abs=1e-4)


def test_untrained_entry_until_exported(run_zoo, tmp_path):
    """CIFAR-10 cannot be had here: the entry says how to train it, and loads once exported.

    The run below trains on a few images the test writes in CIFAR-10's real on-disk format into
    a temporary ``$ZOO_HOME``; it shows the registration works, not a CIFAR-10 result.
    """
    with pytest.raises(WeightsNotTrainedError) as error:
        zoo.load("odenet-cifar10")
    message = str(error.value)
    assert "zoo fit --config configs/odenet-cifar10.yaml" in message and "zoo export" in message
    assert zoo.load("odenet-cifar10", pretrained=False).card.source == "recipe"

    data_dir = tmp_path / "cifar"
    write_cifar(data_dir / "cifar-10-batches-py")
    checksums = json.dumps(cifar_md5(data_dir / "cifar-10-batches-py"))  # files made here: their own md5
    tiny = ("--data.init_args.checksums", checksums, "--model.init_args.width", "8",
            "--model.init_args.dynamics.hidden_dims", "[8]",
            "--data.init_args.data_dir", data_dir, "--data.init_args.val_size", "4",
            "--data.init_args.batch_size", "4", "--data.init_args.num_workers", "0")
    run_zoo("fit", "--config", CONFIGS / "odenet-cifar10.yaml", *tiny, "--trainer.max_steps", "2")
    last = next(tmp_path.glob("runs/odenet-cifar10/version_0/checkpoints/last.ckpt"))
    run_zoo("export", last, "--name", "odenet-cifar10", "--data-dir", data_dir)
    model = zoo.load("odenet-cifar10")
    assert model.card.source == "user" and model.card.dataset == "CIFAR-10"
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(("name", "input_shape", "num_params"), [
    ("anode-mnist", (1, 28, 28), 85_462),
    ("anode-cifar10", (3, 32, 32), 172_452),
])
def test_anode_entries_without_data_here_are_architectures_only(name, input_shape, num_params):
    """MNIST and CIFAR-10 cannot be had here: their ANODE entries say how to train them."""
    with pytest.raises(WeightsNotTrainedError, match=f"zoo fit --config configs/{name}.yaml"):
        zoo.load(name)
    model = zoo.load(name, pretrained=False)
    assert model.card.source == "recipe" and model.card.num_params == num_params
    assert sum(p.numel() for p in model.parameters()) == num_params
    with torch.no_grad():
        assert model(torch.randn(2, *input_shape)).shape == (2, 10)


def test_fine_tune_from_a_zoo_name_with_other_classes(run_zoo, tmp_path):
    """With lr 0, everything but the re-initialized 3-class head must stay the zoo's weights."""
    fit = run_zoo("fit", "--config", RESNET, "--model.init_args.weights", "resnet-fmnist",
                  "--data.init_args.classes", "[9, 5, 7]", "--optimizer.init_args.lr", "0",
                  "--trainer.max_steps", "3", *SLICE, env={"PYTHONWARNINGS": "default"})
    assert "classification head of 'resnet-fmnist' has another number of classes" in fit.stderr
    tuned = torch.load(next(tmp_path.glob("runs/*/version_0/checkpoints/last.ckpt")), weights_only=True)
    assert tuned["state_dict"]["net.head.4.weight"].shape == (3, 64)
    assert "weights" not in tuned["hyper_parameters"]
    zoo_weights = zoo.load("resnet-fmnist").state_dict()
    body = [k for k in zoo_weights if not k.startswith("net.head.4.")]
    assert all(torch.equal(tuned["state_dict"][k], zoo_weights[k]) for k in body)


def test_fine_tune_with_weights_that_do_not_fit(run_zoo):
    failed = run_zoo("fit", "--config", RESNET, "--model.init_args.weights", "resnet-fmnist",
                     "--model.init_args.width", "32", "--trainer.max_steps", "1", *SLICE, check=False)
    assert failed.returncode != 0
    assert "zoo: error: the weights 'resnet-fmnist' do not fit ResNet" in failed.stderr
    assert "Traceback" not in failed.stderr
    with pytest.raises(WeightsMismatchError, match=r"net\.body\.0\.conv1\.weight"):
        zoo.models.ResNet(width=32, weights="resnet-fmnist")


def test_fine_tune_a_series_entry_on_other_data(run_zoo, tmp_path):
    """A Latent ODE entry fine-tunes on 30% dropped values; with lr 0 its weights stay the zoo's."""
    run_zoo("fit", "--config", CONFIGS / "latent-ode-japanesevowels.yaml",
            "--model.init_args.weights", "latent-ode-japanesevowels", "--data.init_args.drop", "0.3",
            "--optimizer.init_args.lr", "0", "--trainer.max_steps", "2",
            "--trainer.enable_progress_bar", "false")
    tuned = torch.load(next(tmp_path.glob("runs/*/version_0/checkpoints/last.ckpt")), weights_only=True)
    assert tuned["datamodule_hyper_parameters"]["drop"] == 0.3
    zoo_weights = zoo.load("latent-ode-japanesevowels").state_dict()
    assert tuned["state_dict"].keys() == zoo_weights.keys()
    assert all(torch.equal(tuned["state_dict"][k], zoo_weights[k]) for k in zoo_weights)

"""No code runs from a weights file, checkpoint or card; every hash is whole; writes are atomic.

Each finding of issue 11 is a regression test here: a checkpoint naming ``os.system`` makes
``zoo export`` run a command; a card naming a foreign class reaches the same import in
``zoo.load``; an empty or short sha256 weakens the check; a weights path may leave the card's
folder; concurrent exports of one name may leave a card pointing at deleted weights.
"""

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import zoo
from tests.conftest import REPO
from zoo.families import ForeignClassError, datamodule_class, model_class
from zoo.hub import CardError, WeightsVerificationError
from zoo.hub.files import sha256_of

BUNDLED_CARD = REPO / "checkpoints" / "odenet-fmnist.json"


def user_entry(home, entry="odenet-mine", **changes):
    """A user-registry copy of the bundled odenet-fmnist entry, with some card fields changed."""
    folder = home / "registry"
    folder.mkdir(parents=True, exist_ok=True)
    card = json.loads(BUNDLED_CARD.read_text()) | {"name": entry}
    shutil.copy(REPO / "checkpoints" / card["weights"], folder / card["weights"])
    card.update(changes)
    (folder / f"{entry}.json").write_text(json.dumps(card))
    return folder, card


def evil_checkpoint(path, marker, class_path="os.system"):
    """A checkpoint that ``torch.load(weights_only=True)`` reads, naming a callable to run."""
    hparams = {"_class_path": class_path, "command": f"touch {marker}"}
    torch.save({"state_dict": {}, "hyper_parameters": hparams}, path)
    return path


@pytest.mark.parametrize("class_path", ["os.system", "subprocess.getoutput", "zoo.models.odenet.os.system"])
def test_export_never_runs_what_a_checkpoint_names(run_zoo, tmp_path, class_path):
    marker = tmp_path / "pwned"
    checkpoint = evil_checkpoint(tmp_path / "x.ckpt", marker, class_path)
    failed = run_zoo("export", checkpoint, "--name", "odenet-evil", "--out", tmp_path / "out", check=False)
    assert not marker.exists(), "the command named by the checkpoint ran"
    assert failed.returncode == 2
    (line,) = failed.stderr.strip().splitlines()
    assert line.startswith("zoo: error: ") and class_path in line and "zoo.models.ODENet" in line
    assert not (tmp_path / "out" / "odenet-evil.json").exists()


def test_a_registered_class_with_foreign_arguments_is_one_error(run_zoo, tmp_path):
    marker = tmp_path / "pwned"
    checkpoint = evil_checkpoint(tmp_path / "x.ckpt", marker, "zoo.models.ODENet")
    failed = run_zoo("export", checkpoint, "--name", "odenet-fmnist", "--out", tmp_path / "out", check=False)
    assert failed.returncode == 2 and not marker.exists()
    (line,) = failed.stderr.strip().splitlines()
    assert "do not fit ODENet" in line and "command" in line


@pytest.mark.parametrize("field", ["model", "datamodule"])
@pytest.mark.parametrize("class_path", ["os.system", "subprocess.Popen", "builtins.exec"])
def test_a_card_naming_a_foreign_class_is_refused(isolated_zoo_home, field, class_path):
    user_entry(isolated_zoo_home, **{field: class_path})
    with pytest.raises(CardError, match=f"unknown {'model' if field == 'model' else 'data module'} class"):
        zoo.load("odenet-mine")
    with pytest.raises(CardError):
        zoo.info("odenet-mine")


def test_the_registry_accepts_only_its_own_classes():
    from zoo.models import ODENet

    assert (
        model_class("ODENet") is model_class("zoo.models.ODENet") is model_class("zoo.models.odenet.ODENet")
    )
    assert model_class("zoo.models.ODENet") is ODENet
    assert datamodule_class("zoo.data.FashionMNISTDataModule").__name__ == "FashionMNISTDataModule"
    for foreign in (
        "os.system",
        "zoo.models.Classifier",
        "zoo.models.base.ZooModule",
        "lightning.LightningModule",
        "other.ODENet",
        "zoo.data.FashionMNISTDataModule",
        "",
        3,
    ):
        with pytest.raises(ForeignClassError):
            model_class(foreign)


@pytest.mark.parametrize(
    "sha256",
    [
        "",
        "a",
        "a4f2631d",
        "A4F2631D61B4BE19E186796D2AEF57AE46FE1D0808DBCA8EF80A63B4D52A59B3",
        "a4f2631d61b4be19e186796d2aef57ae46fe1d0808dbca8ef80a63b4d52a59b3ff",
        12,
    ],
)
def test_a_card_with_an_empty_short_or_malformed_hash_is_refused(isolated_zoo_home, sha256):
    folder, card = user_entry(isolated_zoo_home, sha256=sha256)
    (folder / card["weights"]).write_bytes(b"tampered")  # what a weak check would let through
    with pytest.raises(CardError, match="sha256"):
        zoo.load("odenet-mine")


def test_a_tampered_file_under_a_full_hash_is_refused(isolated_zoo_home):
    folder, card = user_entry(isolated_zoo_home)
    assert zoo.load("odenet-mine").card.sha256 == sha256_of(folder / card["weights"])
    with open(folder / card["weights"], "r+b") as file:
        file.seek(200)
        file.write(b"\x01")
    with pytest.raises(WeightsVerificationError, match="expected"):
        zoo.load("odenet-mine")


@pytest.mark.parametrize(
    "weights",
    [
        "../odenet-fmnist-a4f2631d.safetensors",
        "/etc/passwd",
        "sub/../../x.safetensors",
        "",
        "C:\\x.safetensors",
        "..\\x.safetensors",
    ],
)
def test_a_weights_path_must_stay_in_the_cards_folder(isolated_zoo_home, weights):
    user_entry(isolated_zoo_home, weights=weights)
    with pytest.raises(CardError, match="inside the card's folder"):
        zoo.load("odenet-mine")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_params", "208266"),
        ("num_params", True),
        ("init_args", []),
        ("metrics", {"test_acc": "high"}),
        ("notes", None),
        ("version", 2),
        ("name", 7),
        ("training", "a lot"),
        ("recipe", 3),
    ],
)
def test_card_fields_have_their_types(isolated_zoo_home, field, value):
    user_entry(isolated_zoo_home, **{field: value})
    with pytest.raises(CardError, match=field if field != "name" else "name"):
        zoo.info("odenet-mine")


def test_listing_builds_no_model(monkeypatch, capsys):
    from zoo.cli import main

    def refuse(*args, **kwargs):
        raise AssertionError("zoo list built a model")

    for name in ("ODENet", "ResNet", "ANODE", "VectorODEClassifier"):
        monkeypatch.setattr(model_class(name), "__init__", refuse)
    main(["list"])
    table = capsys.readouterr().out
    assert "odenet-fmnist" in table and "odenet-cifar10" in table and "208,266" in table
    assert zoo.list_models(pretrained=True)


def export_process(checkpoint, out, name):
    command = [
        sys.executable,
        "-m",
        "zoo",
        "export",
        str(checkpoint),
        "--name",
        name,
        "--out",
        str(out),
        "--no-test",
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_concurrent_exports_of_one_name_leave_one_whole_entry(tmp_path):
    card = zoo.info("anode-spheres2d")
    checkpoints = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = model_class(card.model)(**card.init_args)
        hparams = {"_class_path": card.model, **card.init_args}
        torch.save({"state_dict": model.state_dict(), "hyper_parameters": hparams}, tmp_path / f"{seed}.ckpt")
        checkpoints.append(tmp_path / f"{seed}.ckpt")
    out = tmp_path / "registry"
    with ThreadPoolExecutor(len(checkpoints)) as pool:
        results = list(pool.map(lambda path: export_process(path, out, "anode-spheres2d"), checkpoints))
    assert all(result.returncode == 0 for result in results), [result.stderr[-2000:] for result in results]
    written = json.loads((out / "anode-spheres2d.json").read_text())
    weights = sorted(path.name for path in out.glob("anode-spheres2d-*.safetensors"))
    assert weights == [written["weights"]]
    assert sha256_of(out / written["weights"]) == written["sha256"]
    assert sorted(path.name for path in out.iterdir()) == sorted(["anode-spheres2d.json", written["weights"]])


def test_transforms_give_the_model_input_from_pil_arrays_and_tensors(fmnist_data_dir):
    import numpy as np
    from torchvision.datasets import FashionMNIST

    image, _ = FashionMNIST(fmnist_data_dir, train=False)[0]
    preprocess = zoo.transforms("odenet-fmnist")
    assert "normalize(mean=[0.286], std=[0.353])" in repr(preprocess)
    from_pil = preprocess(image)
    pixels = np.array(image)
    assert from_pil.shape == (1, 28, 28) and from_pil.dtype == torch.float32
    torch.testing.assert_close(from_pil, (torch.from_numpy(pixels).float()[None] / 255 - 0.286) / 0.353)
    torch.testing.assert_close(preprocess(pixels), from_pil)
    torch.testing.assert_close(preprocess(torch.from_numpy(pixels)), from_pil)
    torch.testing.assert_close(preprocess(torch.from_numpy(pixels).float() / 255), from_pil)
    batch = torch.from_numpy(pixels)[None, None].repeat(3, 1, 1, 1)
    torch.testing.assert_close(preprocess(batch), from_pil.expand(3, 1, 28, 28))
    assert zoo.load("odenet-fmnist").card.transforms().mean == preprocess.mean
    toy = zoo.transforms("anode-spheres2d")
    torch.testing.assert_close(toy(np.array([0.5, -1.0])), torch.tensor([0.5, -1.0]))


def test_readmes_first_example_classifies_a_real_test_image(fmnist_data_dir, tmp_path):
    """README's first Python block, run as it is: a real Fashion-MNIST test image, classified."""
    readme = (REPO / "README.md").read_text()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert "zoo.load(" in code and "zoo.transforms(" in code
    env = {"ZOO_DATA": str(fmnist_data_dir), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    first = done.stdout.splitlines()[0]
    predicted, true = first.split(" (")[0], first.split("true: ")[1]
    assert predicted == true == "Ankle boot"  # the first test image; the model gets it right

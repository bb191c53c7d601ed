"""A non-editable install carries the bundled entries and recipes, and the registry finds them.

The wheel is built (``pip wheel . --no-deps --no-build-isolation``) from a copy of the source
tree, so that setuptools' ``build/`` and ``*.egg-info`` folders never land in the checkout and
no stale ``build/`` of an earlier run can leak into the wheel. It is then installed into a new,
empty virtual environment (``pip --python``: the test's own environment is never touched) and
used from outside the repository.
"""

import hashlib
import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import torch

import zoo
from tests.conftest import REPO
from zoo.hub import registry
from zoo.ode.registry import UnknownNameError

DATA_PREFIX = "neural_ode_zoo-0.1.0.data/data/share/neural-ode-zoo/"
# What the installed bundle must hold: every card, weights file and recipe, and the README.
BUNDLE_FILES = sorted(
    path.relative_to(REPO).as_posix()
    for path in [
        REPO / "checkpoints" / "README.md",
        *(REPO / "checkpoints").glob("*.json"),
        *(REPO / "checkpoints").glob("*.safetensors"),
        *(REPO / "configs").rglob("*.yaml"),
    ]
)
# Top-level folders of a working checkout that are not sources.
NOT_SOURCES = {".venv", ".git", "runs", "build", "data", "lightning_logs", "wandb"}
SCRIPT = """
import json, torch, zoo
from zoo.hub import registry
model = zoo.load("odenet-fmnist")
with torch.no_grad():
    logits = model(torch.load("input.pt")).tolist()
print(json.dumps({
    "zoo": zoo.__file__, "bundle": str(registry.bundle_root()), "card": str(model.card.path),
    "training": model.training, "names": zoo.list_models(), "pretrained": zoo.list_models(pretrained=True),
    "recipe": zoo.info("odenet-mnist").recipe, "logits": logits,
}))
"""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ignore_non_sources(folder: str, names: list[str]) -> set[str]:
    top = Path(folder).resolve() == REPO
    return {name for name in names
            if (top and name in NOT_SOURCES) or name == "__pycache__"
            or name.endswith((".egg-info", "_cache"))}


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    args = [str(arg) for arg in args]
    process = subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)
    output = f"{process.stdout[-2000:]}\n{process.stderr[-4000:]}"
    assert process.returncode == 0, f"{' '.join(args)} failed:\n{output}"
    return process


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("source") / "neural-ode-zoo"
    shutil.copytree(REPO, source, ignore=ignore_non_sources)
    out = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "--no-index",
        "-w", out, cwd=source)
    (built,) = out.glob("neural_ode_zoo-*.whl")
    return built


def test_bundle_files_exist():
    """The list the wheel is checked against is not empty by accident."""
    expected = {"checkpoints/odenet-fmnist.json", "configs/odenet-fmnist.yaml", "configs/logger/wandb.yaml"}
    assert expected <= set(BUNDLE_FILES)
    assert sum(name.endswith(".safetensors") for name in BUNDLE_FILES) >= 4


def test_wheel_holds_the_bundle_and_not_the_training_runs(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        data = {name.removeprefix(DATA_PREFIX): sha256(archive.read(name))
                for name in names if name.startswith(DATA_PREFIX)}
    assert sorted(data) == BUNDLE_FILES  # every card, weight and recipe, at its place; nothing else
    for name, digest in data.items():
        assert digest == sha256((REPO / name).read_bytes()), name
    assert not [name for name in names if "training" in name or name.endswith(".ckpt")]
    assert "zoo/hub/registry.py" in names and "zoo/cli.py" in names
    metadata = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel) as archive:
        assert "zoo = zoo.launch:main" in archive.read(metadata).decode()


def test_installed_package_loads_bundled_weights_outside_the_checkout(wheel, tmp_path):
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel)
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout.strip())
    assert (venv / "bin" / "zoo").is_file()
    # The dependencies (torch, Lightning, ...) come from the test's environment, appended after the new
    # environment's own site-packages; a .pth line adds a folder without running the .pth files in it,
    # so an editable install of the checkout there stays inactive.
    (site / "test-dependencies.pth").write_text(
        "\n".join(dict.fromkeys(sysconfig.get_path(key) for key in ("purelib", "platlib"))) + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    torch.manual_seed(0)
    image = torch.randn(2, 1, 28, 28)
    torch.save(image, work / "input.pt")

    result = json.loads(run(python, "-c", SCRIPT, cwd=work).stdout.splitlines()[-1])

    bundle = (venv / "share" / "neural-ode-zoo").resolve()
    assert Path(result["zoo"]).is_relative_to(site)
    assert Path(result["bundle"]) == bundle
    assert Path(result["card"]) == bundle / "checkpoints" / "odenet-fmnist.json"
    assert result["training"] is False
    assert result["names"] == zoo.list_models() and result["pretrained"] == zoo.list_models(pretrained=True)
    assert result["recipe"] == "configs/odenet-mnist.yaml"
    with torch.no_grad():
        expected = zoo.load("odenet-fmnist")(image)
    assert torch.equal(torch.tensor(result["logits"]), expected)


def test_zoo_bundle_overrides_the_checkout(wheel, tmp_path, monkeypatch):
    assert registry.bundle_root() == REPO  # in a source checkout, the checkout's own files
    checkout_names = zoo.list_models()
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path, [name for name in archive.namelist() if name.startswith(DATA_PREFIX)])
    bundle = (tmp_path / DATA_PREFIX).resolve()
    monkeypatch.setenv("ZOO_BUNDLE", str(bundle))
    assert registry.bundle_root() == bundle
    recipes = registry.recipe_dir()  # where zoo.hub.export looks for a recipe
    assert recipes == bundle / "configs"
    model = zoo.load("odenet-fmnist")
    assert model.card.path == bundle / "checkpoints" / "odenet-fmnist.json"
    assert zoo.info("odenet-mnist").recipe == "configs/odenet-mnist.yaml"
    assert zoo.list_models() == checkout_names


def test_a_zoo_bundle_without_the_files_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_BUNDLE", str(tmp_path / "nowhere"))
    with pytest.raises(UnknownNameError, match=r"ZOO_BUNDLE \(.*nowhere\) has no checkpoints/ or configs/"):
        zoo.load("odenet-fmnist")

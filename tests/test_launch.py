"""``zoo`` starts itself under jemalloc where the system has it; results are the same either way."""

import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import CONFIGS
from zoo import launch

needs_jemalloc = pytest.mark.skipif(launch.find_jemalloc() is None, reason="libjemalloc.so.2 is not "
                                    "installed (Debian: apt-get install libjemalloc2)")
FIT = ("fit", "--config", CONFIGS / "odenet-fmnist.yaml", "--trainer.max_steps", "3",
       "--trainer.limit_val_batches", "0", "--data.init_args.batch_size", "32",
       "--data.init_args.num_workers", "0")


def without_jemalloc() -> dict[str, str]:
    """This environment with no preload (tests/conftest.py preloads jemalloc where it is installed)."""
    environ = {k: v for k, v in os.environ.items() if k != "ZOO_ALLOCATOR"}
    return {**environ, "LD_PRELOAD": "", "MALLOC_CONF": ""}


def test_an_unknown_choice_is_one_line_naming_the_choices(run_zoo):
    result = run_zoo("list", check=False, env={"ZOO_ALLOCATOR": "tcmalloc"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "zoo: error: ZOO_ALLOCATOR='tcmalloc' is not one of auto, jemalloc, system"]


@pytest.fixture
def plain_process(monkeypatch):
    """As if this process ran on the system's allocator (the xdist workers start under jemalloc)."""
    monkeypatch.setattr(launch, "allocator_in_use", lambda: "system")


def test_jemalloc_asked_for_but_missing_is_an_error(monkeypatch, plain_process):
    monkeypatch.setattr(launch, "LIBRARY_DIRS", ("/nonexistent",))
    with pytest.raises(ValueError, match="apt-get install libjemalloc2"):
        launch.relaunch_environment({"ZOO_ALLOCATOR": "jemalloc"})
    assert launch.relaunch_environment({"ZOO_ALLOCATOR": "auto"}) is None  # auto goes on without it


def test_system_never_relaunches():
    assert launch.relaunch_environment({"ZOO_ALLOCATOR": "system"}) is None


@needs_jemalloc
def test_a_preload_that_names_jemalloc_is_not_started_again(plain_process):
    """Where /proc is missing (a bare chroot), the preload itself tells that the relaunch happened."""
    assert launch.relaunch_environment({"LD_PRELOAD": str(launch.find_jemalloc())}) is None


@needs_jemalloc
def test_the_relaunch_environment_loads_jemalloc_and_keeps_other_preloads(plain_process):
    environ = launch.relaunch_environment({**without_jemalloc(), "LD_PRELOAD": "libm.so.6"})
    assert environ["LD_PRELOAD"].split() == [str(launch.find_jemalloc()), "libm.so.6"]
    assert environ["MALLOC_CONF"] == launch.MALLOC_CONF
    which = "from zoo.launch import allocator_in_use as a; print(a())"
    assert python(which, environ) == "jemalloc\n" and python(which, without_jemalloc()) == "system\n"
    # a process that runs under jemalloc already is not started again
    assert python("import os; from zoo.launch import relaunch_environment as r; print(r(os.environ))",
                  environ) == "None\n"


def python(code: str, environ: dict[str, str]) -> str:
    return subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True,
                          check=True).stdout


@needs_jemalloc
@pytest.mark.parametrize("allocator, loaded", [("auto", True), ("jemalloc", True), ("system", False)])
def test_the_command_starts_again_under_jemalloc(run_zoo, allocator, loaded):
    # the dynamic loader names every library it opens, in the first process and in the relaunched one
    result = run_zoo("list", env={**without_jemalloc(), "ZOO_ALLOCATOR": allocator, "LD_DEBUG": "files"})
    assert ("libjemalloc.so.2" in result.stderr) == loaded
    assert "odenet-fmnist" in result.stdout


@needs_jemalloc
def test_training_under_jemalloc_gives_the_same_weights(run_zoo, tmp_path):
    for allocator in ("system", "jemalloc"):
        run_zoo(*FIT, env={**without_jemalloc(), "ZOO_ALLOCATOR": allocator})
    first, second = (torch.load(path, weights_only=False)["state_dict"] for path in
                     sorted((tmp_path / "runs" / "odenet-fmnist").glob("version_*/checkpoints/last.ckpt")))
    assert first.keys() == second.keys()
    for key in first:  # the same arithmetic; only where the buffers live differs
        torch.testing.assert_close(second[key], first[key], rtol=0, atol=1e-6, msg=key)

"""Shared fixtures: the real Fashion-MNIST, prepared once per session, and running the CLI."""

import logging
import os
import subprocess
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

import pytest

from zoo import launch

if not os.environ.get("PYTEST_XDIST_WORKER"):
    # The xdist workers and every subprocess start under jemalloc, as the `zoo` command does
    # (zoo/launch.py), where it is installed and $ZOO_ALLOCATOR does not say `system`.
    os.environ.update(launch.relaunch_environment(os.environ) or {})
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `pytest -n 2` on two cores: one thread per worker and per subprocess it starts, so that the
    # workers' thread pools do not spin against each other.
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


@pytest.fixture(autouse=True)
def isolated_zoo_home(tmp_path_factory, monkeypatch):
    """A fresh, empty ``$ZOO_HOME`` per test: no user registry or download cache leaks in or out."""
    home = tmp_path_factory.mktemp("zoo-home")
    monkeypatch.setenv("ZOO_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def fmnist_data_dir(tmp_path_factory):
    """A ZOO_DATA folder holding the real Fashion-MNIST (from the Debian package)."""
    from zoo.data import FashionMNISTDataModule

    data_dir = tmp_path_factory.mktemp("zoo-data")
    FashionMNISTDataModule(data_dir=str(data_dir), download=False).prepare_data()
    return data_dir


@pytest.fixture
def run_zoo(fmnist_data_dir, tmp_path):
    """Runs ``python -m zoo ARGS`` in a subprocess inside tmp_path; returns the finished process."""

    def run(*args, check: bool = True, timeout: float = 600, env: dict | None = None):
        args = [str(arg) for arg in args]
        env = {**os.environ, "ZOO_DATA": str(fmnist_data_dir), "PYTHONWARNINGS": "ignore", **(env or {})}
        process = subprocess.run(
            [sys.executable, "-m", "zoo", *args],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout,
        )
        if check and process.returncode != 0:
            raise AssertionError(f"zoo {' '.join(args)} failed:\n{process.stderr[-4000:]}")
        return process

    return run


@pytest.fixture
def fork_zoo(fmnist_data_dir, tmp_path):
    """Like ``run_zoo``, but each run is a child forked from this process, its imports already done.

    The child runs ``zoo.cli.main`` (what ``python -m zoo`` runs) with its own working folder,
    environment, stdout and stderr, and exits with its exit code; only the seconds of importing
    torch and Lightning are saved. For tables of many short runs.
    """
    import zoo.cli  # noqa: F401  (imported before forking, once)

    def run(*args) -> subprocess.CompletedProcess:
        args = [str(arg) for arg in args]
        env = {**os.environ, "ZOO_DATA": str(fmnist_data_dir), "PYTHONWARNINGS": "ignore"}
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            pid = os.fork()
            if pid == 0:
                _forked_main(args, tmp_path, env, out.fileno(), err.fileno())
            _, status = os.waitpid(pid, 0)
            out.seek(0), err.seek(0)
            return subprocess.CompletedProcess(["zoo", *args], os.waitstatus_to_exitcode(status),
                                               out.read().decode(), err.read().decode())

    return run


def _forked_main(args: list[str], cwd: Path, env: dict, out: int, err: int) -> None:
    """The child of ``fork_zoo``: never returns."""
    code = 1
    try:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        os.dup2(out, 1), os.dup2(err, 2)
        sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)  # noqa: SIM115
        for logger in [logging.root, *logging.root.manager.loggerDict.values()]:  # they hold pytest's streams
            for each in list(getattr(logger, "handlers", [])):
                if type(each).__module__.startswith("_pytest"):  # pytest's log capture: not the program's
                    logger.removeHandler(each)
                elif isinstance(each, logging.StreamHandler):
                    each.setStream(sys.stderr)
        warnings.simplefilter("ignore")
        sys.argv = ["zoo", *args]
        from zoo.cli import main

        main(args)
        code = 0
    except SystemExit as error:
        if isinstance(error.code, int) or error.code is None:
            code = error.code or 0
        else:
            print(error.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush(), sys.stderr.flush()
        os._exit(code)

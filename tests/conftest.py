"""Shared fixtures: the real Fashion-MNIST, prepared once per session, and running the CLI."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

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

"""The repository's Dockerfile built with podman and its entrypoint run, as the image configures it.

``scripts/build-image.sh`` builds the image on a local Debian base (debootstrap) where no
registry can be reached. The image's entrypoint, user, working folder and environment are read
from the image (``podman image inspect``), not restated here, and each command runs with
``podman run`` where that works; where it does not (this sandbox: ``crun`` may not set resource
limits), from the image's file system: a container is created and mounted, ``/proc``, ``/dev``,
``/sys`` and a tmpfs ``/tmp`` are bound in, and the entrypoint runs there under ``chroot`` as the
image's numeric user. The real Fashion-MNIST is mounted read-only on ``/data``.

Slow (a first build takes minutes, a cached one seconds) and root-only: ``pytest -m slow
tests/test_docker_image.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

TAG = "localhost/neural-ode-zoo:test"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (shutil.which("podman") and shutil.which("debootstrap")),
                       reason="podman and debootstrap are not installed (apt-get install podman "
                              "debootstrap)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="building and mounting images here needs root"),
]


@pytest.fixture(scope="module")
def image() -> dict:
    """The built image's configuration (entrypoint, user, working folder, environment)."""
    subprocess.run(["bash", str(REPO / "scripts" / "build-image.sh"), TAG], check=True, capture_output=True)
    inspected = subprocess.run(["podman", "image", "inspect", TAG], check=True, capture_output=True,
                               text=True)
    return json.loads(inspected.stdout)[0]["Config"]


def run_in_image(config: dict, args: list[str], mounts: dict[str, tuple[Path, bool]],
                 entrypoint: list[str] | None = None) -> subprocess.CompletedProcess:
    """Runs ``args`` after the image's entrypoint (or ``entrypoint``), as the image's user.

    ``mounts`` maps a path in the container to (host folder, read-only).
    """
    command = [*(entrypoint or config["Entrypoint"]), *args]
    volumes = [f"-v{host}:{inside}{':ro' if read_only else ''}"
               for inside, (host, read_only) in mounts.items()]
    ran = subprocess.run(["podman", "run", "--rm", "--entrypoint", json.dumps(command[:1]), *volumes, TAG,
                          *command[1:]], capture_output=True, text=True)
    if "OCI" not in ran.stderr:
        return ran
    return run_from_file_system(config, command, mounts)


def run_from_file_system(config: dict, command: list[str], mounts: dict) -> subprocess.CompletedProcess:
    container = subprocess.run(["podman", "create", TAG], check=True, capture_output=True,
                               text=True).stdout.strip()
    root = Path(subprocess.run(["podman", "mount", container], check=True, capture_output=True,
                               text=True).stdout.strip())
    bound = []
    try:
        for inside, host, options in [("proc", "/proc", []), ("dev", "/dev", []), ("sys", "/sys", []),
                                      *((inside.strip("/"), str(host), ["-o", "ro"] if read_only else [])
                                        for inside, (host, read_only) in mounts.items())]:
            subprocess.run(["mount", "--bind", host, str(root / inside)], check=True)
            bound.append(root / inside)
            if options:
                subprocess.run(["mount", "-o", "remount,bind,ro", str(root / inside)], check=True)
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(root / "tmp")], check=True)
        bound.append(root / "tmp")
        user = config["User"] if ":" in config["User"] else f"{config['User']}:0"
        script = 'cd "$0" && exec "$@"'
        return subprocess.run(["chroot", f"--userspec={user}", str(root), "/usr/bin/env", "-i",
                               *config["Env"], "/bin/sh", "-c", script, config["WorkingDir"], *command],
                              capture_output=True, text=True, timeout=600)
    finally:
        for path in reversed(bound):
            subprocess.run(["umount", str(path)], check=False)
        subprocess.run(["podman", "umount", container], check=False, capture_output=True)
        subprocess.run(["podman", "rm", container], check=False, capture_output=True)


@pytest.fixture
def data(tmp_path, fmnist_data_dir) -> Path:
    """The real Fashion-MNIST in a folder the image's user may read (pytest's own are 0700)."""
    folder = tmp_path / "data"
    shutil.copytree(fmnist_data_dir / "FashionMNIST", folder / "FashionMNIST")
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


@pytest.fixture
def checkpoints(tmp_path, image) -> Path:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    os.chown(folder, int(image["User"].split(":")[0]), 0)
    return folder


def test_the_image_runs_as_a_numeric_non_root_user_with_zoo_as_entrypoint(image):
    assert image["Entrypoint"] == ["zoo"] and image["User"].split(":")[0].isdigit()
    assert int(image["User"].split(":")[0]) != 0


def test_zoo_list_in_the_image(image):
    listed = run_in_image(image, ["list"], {})
    assert listed.returncode == 0, listed.stderr
    assert "odenet-fmnist" in listed.stdout and "anode-fmnist" in listed.stdout


def test_the_bundled_weights_load_and_verify_in_the_image(image):
    code = ("import zoo, torch; m = zoo.load('odenet-fmnist'); "
            "print(m.card.sha256, sum(p.numel() for p in m.parameters()))")
    loaded = run_in_image(image, ["-c", code], {}, entrypoint=["python"])
    assert loaded.returncode == 0, loaded.stderr
    sha256, count = loaded.stdout.split()
    card = json.loads((REPO / "checkpoints" / "odenet-fmnist.json").read_text())
    assert sha256 == card["sha256"] and int(count) == card["num_params"]


def test_a_one_batch_fit_on_read_only_data_writes_checkpoints_as_the_user(image, data, checkpoints):
    fit = run_in_image(image, ["fit", "--config", "configs/odenet-fmnist.yaml", "--trainer.max_steps", "1",
                               "--trainer.limit_val_batches", "1", "--data.init_args.num_workers", "0",
                               "--trainer.logger.init_args.save_dir", "/checkpoints/runs"],
                       {"/data": (data, True), "/checkpoints": (checkpoints, False)})
    assert fit.returncode == 0, fit.stderr[-3000:]
    last = checkpoints / "runs" / "odenet-fmnist" / "version_0" / "checkpoints" / "last.ckpt"
    assert last.is_file()
    assert last.stat().st_uid == int(image["User"].split(":")[0])


def test_a_missing_data_mount_is_one_line_and_help_is_usage(image, checkpoints):
    fit = run_in_image(image, ["fit", "--config", "configs/odenet-fmnist.yaml", "--trainer.max_steps", "1",
                               "--data.init_args.download", "false"], {"/checkpoints": (checkpoints, False)})
    errors = [line for line in fit.stderr.splitlines() if "error" in line.lower()]
    assert fit.returncode == 2 and len(errors) == 1 and errors[0].startswith("zoo: error: ")
    assert "/data" in errors[0] and "Traceback" not in fit.stderr
    shown = run_in_image(image, ["--help"], {})
    assert shown.returncode == 0 and shown.stdout.startswith("usage: ")
    assert "error" not in shown.stderr.lower()

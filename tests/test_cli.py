"""The Lightning CLI in subprocesses, on the real configs and a slice of the real Fashion-MNIST."""

import csv
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from tests.conftest import CONFIGS

ODENET = CONFIGS / "odenet-fmnist.yaml"
# A slice: 4 training batches of 32 real images, 2 validation and 2 test batches, no workers.
SLICE = (
    "--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "2",
    "--trainer.limit_test_batches", "2", "--trainer.limit_predict_batches", "2",
    "--data.init_args.batch_size", "32", "--data.init_args.num_workers", "0",
)


def run_dir(tmp_path: Path) -> Path:
    (version,) = (tmp_path / "runs" / "odenet-fmnist").iterdir()
    return version


def metrics(version: Path) -> list[dict[str, str]]:
    with open(version / "metrics.csv") as file:
        return list(csv.DictReader(file))


def test_fit_checkpoints_test_and_resume(run_zoo, tmp_path):
    fit = run_zoo("fit", "--config", ODENET, "--trainer.max_epochs", "1", *SLICE)
    assert "Epoch 0" in fit.stdout + fit.stderr  # the progress bar
    version = run_dir(tmp_path)
    checkpoints = sorted(p.name for p in (version / "checkpoints").iterdir())
    assert "last.ckpt" in checkpoints
    assert any(name.startswith("best-epoch=000-val_acc=") for name in checkpoints)
    logged = metrics(version)
    columns = set().union(*(row.keys() for row in logged))
    assert {"train_loss_epoch", "train_acc_epoch", "val_acc", "val_loss", "val_nfe_forward",
            "train_nfe_forward_epoch", "train_nfe_backward_epoch"} <= columns
    nfe = [float(r["train_nfe_forward_epoch"]) for r in logged if r.get("train_nfe_forward_epoch")]
    assert nfe and all(n >= 6 for n in nfe)  # dopri5: at least one step of six evaluations
    last = version / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 4

    test = run_zoo("test", "--config", ODENET, "--ckpt_path", last, *SLICE)
    assert "test_acc" in test.stdout and "test_nfe_forward" in test.stdout

    run_zoo("fit", "--config", ODENET, "--trainer.max_epochs", "2", "--ckpt_path", last, *SLICE)
    newest = max(version.parent.glob("version_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    assert newest != last
    resumed = torch.load(newest, weights_only=False)
    assert resumed["global_step"] == 8 and resumed["epoch"] == 1  # 4 steps more, not from 0


def test_validate_predict_and_test_with_another_solver(run_zoo, tmp_path):
    run_zoo("fit", "--config", ODENET, "--trainer.max_steps", "2", *SLICE)
    last = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    validate = run_zoo("validate", "--config", ODENET, "--ckpt_path", last, *SLICE)
    assert "val_acc" in validate.stdout
    run_zoo("predict", "--config", ODENET, "--ckpt_path", last, *SLICE)
    # The speed/accuracy trade-off at test time: rk4 with two steps is 8 evaluations.
    test = run_zoo("test", "--config", ODENET, "--ckpt_path", last, "--model.init_args.solver.method",
                   "rk4", "--model.init_args.solver.step_size", "0.5", *SLICE)
    assert float(test.stdout.split("test_nfe_forward")[1].split()[0]) == 8.0


def test_a_failed_solve_leaves_the_checkpoints_intact(run_zoo, tmp_path):
    run_zoo("fit", "--config", ODENET, "--trainer.max_epochs", "1", *SLICE)
    folder = run_dir(tmp_path) / "checkpoints"
    before = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in folder.iterdir()}
    failed = run_zoo("fit", "--config", ODENET, "--trainer.max_epochs", "2", "--ckpt_path",
                     folder / "last.ckpt", "--model.init_args.solver.max_steps", "1", *SLICE, check=False)
    assert failed.returncode != 0
    assert "zoo: error: " in failed.stderr and "Traceback" not in failed.stderr
    after = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in folder.iterdir()}
    assert after == before


def test_print_config_shows_every_solver_and_dynamics_setting(run_zoo):
    printed = run_zoo("fit", "--config", ODENET, "--print_config").stdout
    for key in ("method: dopri5", "rtol:", "atol:", "step_size:", "max_steps:", "adjoint: false",
                "seminorm:", "adjoint_method:", "integration_time:", "name: odenet_conv",
                "hidden_dims:", "milestones:"):
        assert key in printed, key


def test_solver_settings_from_the_command_line(run_zoo):
    printed = run_zoo("fit", "--config", ODENET, "--model.init_args.solver.method", "rk4",
                      "--model.init_args.solver.step_size", "0.25", "--print_config").stdout
    assert "method: rk4" in printed and "step_size: 0.25" in printed


def test_bad_solver_name_fails_with_the_valid_names(run_zoo):
    failed = run_zoo("fit", "--config", ODENET, "--model.init_args.solver.method", "dopri6",
                     "--trainer.max_steps", "1", *SLICE, check=False)
    assert failed.returncode != 0
    assert "unknown solver 'dopri6'" in failed.stderr
    assert "Valid names: adaptive_heun, bosh3, dopri5" in failed.stderr
    assert "torchdiffeq" not in failed.stderr


def test_bad_dynamics_option_fails_with_the_valid_options(run_zoo):
    failed = run_zoo("fit", "--config", ODENET, "--model.init_args.dynamics.options",
                     "{grups: 8}", "--trainer.max_steps", "1", *SLICE, check=False)
    assert failed.returncode != 0
    assert "has no option(s) ['grups']; its options are ['groups']" in failed.stderr


def test_console_script_and_module_are_the_same_program():
    script = shutil.which("zoo", path=str(Path(sys.executable).parent))
    assert script, "the zoo console script is not installed next to this Python"
    for command in ([script], [sys.executable, "-m", "zoo"]):
        help_text = subprocess.run([*command, "--help"], capture_output=True, text=True,
                                   check=True).stdout
        assert "{fit,validate,test,predict}" in help_text


def test_missing_data_ends_with_one_clear_message(tmp_path, monkeypatch, capsys):
    import pytest

    import zoo.data.images
    from zoo.cli import main

    monkeypatch.setattr(zoo.data.images, "DEBIAN_FASHION_MNIST_DIR", str(tmp_path / "no-debian"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--config", str(ODENET), "--data.init_args.data_dir", str(tmp_path / "empty"),
              "--data.init_args.download", "false", "--trainer.max_steps", "1"])
    assert stop.value.code == 2
    (message,) = capsys.readouterr().err.splitlines()[-1:]
    assert message.startswith("zoo: error: ")
    assert str(tmp_path / "empty") in message and "train-images-idx3-ubyte" in message


def test_a_failed_adjoint_solve_ends_with_one_line(run_zoo, tmp_path):
    spheres = CONFIGS / "anode-spheres2d.yaml"
    failed = run_zoo("fit", "--config", spheres, "--trainer.max_steps", "1", "--trainer.callbacks", "[]",
                     "--model.init_args.solver.max_steps", "30", "--model.init_args.solver.adjoint_rtol",
                     "1e-12", "--model.init_args.solver.adjoint_atol", "1e-12", check=False)
    assert failed.returncode != 0
    assert "Traceback" not in failed.stderr
    (line,) = [text for text in failed.stderr.splitlines() if text.startswith("zoo: error: ")]
    assert "ODE adjoint solve failed" in line and "backward function evaluations" in line

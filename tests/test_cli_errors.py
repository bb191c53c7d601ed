"""Every bad input to the real ``zoo`` command ends with one line ``zoo: error: ...``, exit code 2.

A table of bad config values, unknown names and missing files, each run as its own ``zoo``
process (forked from the test's own once the imports are done, see ``fork_zoo``); the line
must name the bad key and the value given. Lightning's own log lines before it (``Seed set to
0``) are allowed; tracebacks and nested messages are not.
"""

import pytest

from tests.conftest import CONFIGS

ODENET = ("fit", "--config", CONFIGS / "odenet-fmnist.yaml")
SPHERES = ("fit", "--config", CONFIGS / "anode-spheres2d.yaml")
MNIST = ("fit", "--config", CONFIGS / "odenet-mnist.yaml")

#: (command line, what the error line must contain: the key, the value, what is wrong)
BAD_INPUTS = [
    ((*ODENET, "--model.init_args.solver.rtol", "-1"), ("solver.rtol", "-1", "positive")),
    ((*ODENET, "--model.init_args.solver.max_steps", "-5"), ("solver.max_steps", "-5")),
    ((*ODENET, "--model.init_args.solver.method", "nope"), ("solver", "'nope'", "dopri5")),
    (
        (*ODENET, "--model.init_args.solver.adjoint", "maybe"),
        ("model.init_args.solver.adjoint", "'maybe'", "bool"),
    ),
    ((*ODENET, "--model.init_args.solver.foo", "1"), ("model.init_args.solver.foo", "'1'", "no argument")),
    ((*ODENET, "--model.init_args.dynamics.name", "nope"), ("dynamics", "'nope'", "odenet_conv")),
    ((*ODENET, "--model.init_args.foo", "1"), ("model.init_args.foo", "'1'", "zoo.models.ODENet")),
    ((*ODENET, "--model.init_args.weights", "odenet-nope"), ("zoo model", "'odenet-nope'", "odenet-fmnist")),
    (
        (*ODENET, "--model.init_args.weights", "missing/w.safetensors"),
        ("weights file", "missing/w.safetensors"),
    ),
    ((*ODENET, "--model.class_path", "os.system"), ("model.class_path", "os.system")),
    ((*ODENET, "--data.class_path", "zoo.data.Nope"), ("data.class_path", "Nope")),
    ((*ODENET, "--data.init_args.batch_size", "0"), ("batch_size", "0")),
    ((*ODENET, "--data.init_args.val_size", "-1"), ("val_size", "-1")),
    ((*ODENET, "--data.init_args.classes", "[11]"), ("classes", "[11]", "out of range")),
    ((*ODENET, "--trainer.max_epochs", "abc"), ("trainer.max_epochs", "'abc'", "int")),
    ((*ODENET, "--trainer.foo", "1"), ("--trainer.foo", "1", "unrecognized")),
    ((*ODENET, "--optimizer.init_args.lr", "abc"), ("optimizer.init_args.lr", "'abc'", "float")),
    ((*ODENET, "--optimizer.init_args.foo", "3"), ("optimizer.init_args.foo", "'3'", "torch.optim.SGD")),
    ((*ODENET, "--ckpt_path", "missing/last.ckpt"), ("ckpt_path", "missing/last.ckpt")),
    (("fit", "--config", "missing.yaml"), ("config", "missing.yaml", "does not exist")),
    ((*SPHERES, "--data.init_args.dim", "0"), ("dim", "0")),
    (
        (*MNIST, "--data.init_args.data_dir", "empty", "--data.init_args.download", "false"),
        ("MNIST not found", "empty", "download"),
    ),
    (("export", "missing.ckpt", "--name", "odenet-x"), ("missing.ckpt", "No such file")),
    (("export", "missing.ckpt"), ("--name", "required")),
    (("info", "odenet-nope"), ("zoo model", "'odenet-nope'", "odenet-fmnist")),
    (("list", "--bogus"), ("unrecognized arguments", "--bogus")),
    (("nfe-plot", "x"), ("LABEL=RUN_DIR", "'x'")),
]


def test_the_table_is_large_enough():
    assert len(BAD_INPUTS) >= 20


def test_every_bad_input_gets_one_line_naming_it(fork_zoo, tmp_path):
    (tmp_path / "empty").mkdir()
    results = [fork_zoo(*args) for args, _ in BAD_INPUTS]
    failures = []
    for (args, needles), result in zip(BAD_INPUTS, results, strict=True):
        lines = result.stderr.strip().splitlines()
        errors = [line for line in lines if "error" in line.lower()]
        line = lines[-1] if lines else ""
        good = (
            result.returncode == 2
            and line.startswith("zoo: error: ")
            and errors == [line]
            and "Traceback" not in result.stderr
            and all(needle in line for needle in needles)
        )
        if not good:
            failures.append(
                f"zoo {' '.join(map(str, args))}: exit {result.returncode}, stderr:\n{result.stderr[-1500:]}"
            )
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("args", [("--help",), ("fit", "--help"), ("export", "--help")])
def test_help_is_unchanged(run_zoo, args):
    shown = run_zoo(*args)
    assert shown.stdout.startswith("usage: ") and "error" not in shown.stderr

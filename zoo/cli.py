"""The ``zoo`` command (also ``python -m zoo``): the Lightning CLI over the zoo's models and data.

``zoo fit|validate|test|predict --config configs/<name>.yaml`` are LightningCLI subcommands;
the DataModule's ``input_shape`` and ``num_classes`` are linked into the model.
``zoo list``, ``zoo info NAME`` and ``zoo export CKPT --name NAME`` work on the pretrained
registry (see :mod:`zoo.commands`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from lightning import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger

import zoo.models  # noqa: F401  (registers the classes so configs may name them briefly)
from zoo import commands
from zoo.cli_messages import error_line
from zoo.errors import SettingError

#: Names that Lightning's ``ckpt_path`` takes instead of a file.
LIGHTNING_CKPT_NAMES = ("last", "best", "hpc", "registry")


class LoggedConfig(SaveConfigCallback):
    """Saves the resolved config as ``config.yaml`` in the log folder, and gives it to the run's loggers.

    Every logger but a ``CSVLogger`` (whose folder holds ``config.yaml`` already), such as a
    ``WandbLogger`` or ``TensorBoardLogger``, gets the whole config (trainer, model, data,
    optimizer, seed) as the hyperparameter ``config``; Lightning itself logs only the model's
    and the data module's arguments. Runs on global rank zero only, with no collective call.
    """

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in trainer.loggers:
            if not isinstance(logger, CSVLogger):
                logger.log_hyperparams({"config": config})


class ZooCLI(LightningCLI):
    """LightningCLI with the data shapes linked into the model.

    The config and the command line say what runs, also with ``--ckpt_path``: Lightning's
    default of replacing the model's arguments with the checkpoint's hyperparameters would
    silently drop ``--model.init_args.solver.*`` overrides, such as testing a trained model at
    another tolerance. A checkpoint whose weights do not fit the configured model fails to load
    with the mismatched keys named.
    """

    def _parse_ckpt_path(self) -> None:
        """Keeps the configured model arguments (see the class docstring)."""

    def before_instantiate_classes(self) -> None:
        """Fails before anything is built if a ``--ckpt_path`` file does not exist."""
        ckpt_path = self.config[self.subcommand].get("ckpt_path") if self.subcommand else None
        if isinstance(ckpt_path, str) and ckpt_path not in LIGHTNING_CKPT_NAMES and "://" not in ckpt_path \
                and not Path(ckpt_path).is_file():
            raise SettingError(f"ckpt_path: no checkpoint file {ckpt_path!r}; give the path of a .ckpt file, "
                               "such as <log dir>/checkpoints/last.ckpt")

    def add_arguments_to_parser(self, parser) -> None:
        for name in ("input_shape", "num_classes"):
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")


def main(args: list[str] | None = None) -> None:
    """Runs the command line ``args`` (default: the process's own arguments).

    Bad input (a config value, an unknown name, a missing file, a failed solve, bad weights)
    ends the program with one line ``zoo: error: ...`` on stderr and exit code 2, not a
    traceback; anything else is a bug and keeps its traceback.
    """
    command = sys.argv[1:] if args is None else list(args)
    try:
        if command and command[0] in commands.COMMANDS:
            commands.run(command)
        else:
            _run(args)
    except Exception as error:
        message = error_line(error)
        if message is None:
            raise
        print(f"zoo: error: {message}", file=sys.stderr)
        raise SystemExit(2) from None


def _run(args: list[str] | None) -> None:
    ZooCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=LoggedConfig,
        save_config_kwargs={"overwrite": True},
        parser_kwargs=_raising_parsers(),
        args=args,
    )


def _raising_parsers() -> dict:
    """Parser arguments that make jsonargparse raise its errors (for :func:`error_line`)."""
    return {"exit_on_error": False, **{name: {"exit_on_error": False} for name in ZooCLI.subcommands()}}


"""The ``zoo`` command (also ``python -m zoo``): the Lightning CLI over the zoo's models and data.

``zoo fit|validate|test|predict --config configs/<name>.yaml`` are LightningCLI subcommands;
the DataModule's ``input_shape`` and ``num_classes`` are linked into the model.
"""

from __future__ import annotations

from lightning import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI

import zoo.models  # noqa: F401  (registers the classes so configs may name them briefly)
from zoo.data import DataNotFoundError
from zoo.ode import ODESolveError


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

    def add_arguments_to_parser(self, parser) -> None:
        for name in ("input_shape", "num_classes"):
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")


def main(args: list[str] | None = None) -> None:
    """Runs the command line ``args`` (default: the process's own arguments).

    Missing data and failed solves end the program with their message, not a traceback.
    """
    try:
        _run(args)
    except (DataNotFoundError, ODESolveError) as error:
        raise SystemExit(f"zoo: error: {error}") from error


def _run(args: list[str] | None) -> None:
    ZooCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
    )

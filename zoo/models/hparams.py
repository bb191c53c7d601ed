"""Saving a model's constructor arguments as plain data."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from lightning import LightningModule


def save_plain_hyperparameters(module: LightningModule, ignore: tuple[str, ...] = ("weights",)) -> None:
    """``save_hyperparameters`` for the caller's ``__init__``, with settings objects as dicts.

    ``weights`` (where pretrained weights came from) is not saved: a checkpoint or exported
    card holds the weights themselves, and reloading it must not fetch the old ones again.

    Checkpoints and model cards then hold lists and dicts only, and the model is rebuilt from
    them (the constructors coerce dicts back into settings objects). Under the Lightning CLI the
    hyperparameters keep its ``_class_path``, so ``--ckpt_path`` finds the model class.
    """
    module.save_hyperparameters(ignore=list(ignore), frame=inspect.currentframe().f_back)
    for name, value in list(module.hparams.items()):
        module.hparams[name] = _plain(value)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, tuple):
        return list(value)
    return value

"""Saving a model's constructor arguments as plain data."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from lightning import LightningModule
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters


def save_plain_hyperparameters(module: LightningModule, values: Mapping[str, Any]) -> None:
    """Saves ``values``, a model's resolved constructor arguments, as its hyperparameters.

    Settings objects become dicts and tuples lists, so checkpoints and model cards hold plain
    data, and the model is rebuilt from them (the constructors coerce dicts back into settings
    objects). ``weights`` (where pretrained weights came from) is never among them: a checkpoint
    or exported card holds the weights themselves, and reloading it must not fetch the old ones
    again. Under the Lightning CLI the hyperparameters also keep its ``_class_path``, which
    ``zoo export`` reads to find the model class.
    """
    hparams = {name: _plain(value) for name, value in values.items() if name != "weights"}
    given = _given_hyperparameters.get()
    if given and "_class_path" in given:
        hparams = {"_class_path": given["_class_path"], **hparams}
    module.save_hyperparameters(hparams)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, tuple):
        return list(value)
    return value

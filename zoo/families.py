"""The zoo's own model and data classes: the only ones a card, checkpoint or recipe can name.

Each family file registers its LightningModules with :func:`register_model` and each data file
its LightningDataModules with :func:`register_datamodule`, beside their definitions (as timm's
``@register_model``). A class named by a string that comes from a file (a card's ``model``, a
checkpoint's ``_class_path``, a recipe's ``class_path``) is looked up here and never imported:
a string naming anything else, such as ``os.system``, is refused with :class:`ForeignClassError`
before any code runs.

A registered class may be named by its class name (``ODENet``), its public path
(``zoo.models.ODENet``) or its defining module's path (``zoo.models.odenet.ODENet``).
"""

from __future__ import annotations

import importlib
from typing import TypeVar

from zoo.ode.registry import Registry, UnknownNameError, unknown_name_message

T = TypeVar("T", bound=type)

MODELS: Registry[type] = Registry("zoo model class")
DATAMODULES: Registry[type] = Registry("zoo data module class")

#: The packages whose import registers every class, and the public path of their classes.
_PACKAGES = {"model": ("zoo.models", MODELS), "data module": ("zoo.data", DATAMODULES)}


class ForeignClassError(UnknownNameError):
    """A class path, read from a card, checkpoint or recipe, that is not one of the zoo's classes."""


def register_model(cls: T) -> T:
    """Class decorator: makes a LightningModule a model family that cards and checkpoints may name."""
    return MODELS.register(cls.__name__)(cls)


def register_datamodule(cls: T) -> T:
    """Class decorator: makes a LightningDataModule one that cards and checkpoints may name."""
    return DATAMODULES.register(cls.__name__)(cls)


def model_class(path: str) -> type:
    """The registered model class that ``path`` names.

    Raises:
        ForeignClassError: ``path`` names no registered model class; nothing was imported.
    """
    return _lookup("model", path)


def datamodule_class(path: str) -> type:
    """The registered data module class that ``path`` names.

    Raises:
        ForeignClassError: ``path`` names no registered data module class; nothing was imported.
    """
    return _lookup("data module", path)


def public_path(cls: type) -> str:
    """The path under which cards name a registered class, e.g. ``zoo.models.ODENet``."""
    for package, registry in _PACKAGES.values():
        if cls.__name__ in registry and registry.get(cls.__name__) is cls:
            return f"{package}.{cls.__name__}"
    raise ForeignClassError(f"{cls.__module__}.{cls.__qualname__} is not a registered zoo class")


def _lookup(kind: str, path: str) -> type:
    package, registry = _PACKAGES[kind]
    importlib.import_module(package)  # a fixed name: registers the zoo's own classes
    if isinstance(path, str):
        module, _, name = path.rpartition(".")
        if name in registry:
            cls = registry.get(name)
            if module in ("", package, cls.__module__):
                return cls
    valid = [f"{package}.{name}" for name in registry.names()]
    raise ForeignClassError(
        unknown_name_message(f"{kind} class", path, valid)
        + " The zoo builds only its own registered classes from cards, checkpoints and recipes."
    )

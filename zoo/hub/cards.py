"""Model cards: what a zoo entry is, how it was trained and what it measured.

A card is a JSON file (``<name>.json``) beside its weights file. An entry whose weights were
never trained has a card built from its recipe (``configs/<name>.yaml``) with no weights and no
metrics.
"""

from __future__ import annotations

import dataclasses
import json
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import yaml

from zoo.families import ForeignClassError, datamodule_class, model_class

CARD_VERSION = 1
_NAME = re.compile(r"^[a-z0-9]+(?:[a-z0-9_]*[a-z0-9])?-[a-z0-9][a-z0-9_-]*$")


class CardError(ValueError):
    """A model card or recipe that cannot be read, or that lacks a field."""


@dataclass
class ModelCard:
    """One zoo entry.

    Attributes:
        name: ``<family>-<dataset>``, e.g. ``odenet-fmnist``.
        model: Import path of the LightningModule class, e.g. ``zoo.models.ODENet``.
        init_args: The class's constructor arguments (without ``weights``).
        datamodule: Import path of the LightningDataModule the entry was trained and tested on.
        dataset: The data set's name, e.g. ``Fashion-MNIST``.
        preprocessing: Evaluation-time input preprocessing (normalization, size).
        num_params: Number of parameters of the model.
        recipe: The config that trains the entry, relative to the repository root.
        recipe_command: The command that trained the weights.
        weights: The weights file (relative to the card's folder) or URL; ``None`` if untrained.
        sha256: Hex sha256 of the weights file; ``None`` if untrained.
        metrics: Test metrics measured on the weights, e.g. ``{"test_acc": 0.915}``.
        metrics_command: The command that measured ``metrics``.
        training: Facts of the training run taken from its checkpoint (epoch, steps, best val).
        notes: Comparison with published numbers and anything else a user should know.
        version: Card format version.
        source: Where the card was found: ``bundled``, ``user`` or ``recipe`` (not saved).
        path: The card file (not saved).
    """

    name: str
    model: str
    init_args: dict[str, Any]
    datamodule: str
    dataset: str
    preprocessing: dict[str, Any]
    num_params: int
    recipe: str | None
    recipe_command: str | None
    weights: str | None = None
    sha256: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_command: str | None = None
    training: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    version: int = CARD_VERSION
    source: str = field(default="bundled", compare=False)
    path: Path | None = field(default=None, compare=False)

    @property
    def trained(self) -> bool:
        """Whether the entry has weights."""
        return self.weights is not None

    def as_dict(self) -> dict[str, Any]:
        """The card's saved fields, as plain JSON data."""
        data = dataclasses.asdict(self)
        del data["source"], data["path"]
        return data

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "bundled", path: Path | None = None) -> ModelCard:
        """Reads and validates a card's fields.

        Raises:
            CardError: A field is missing, unknown or of the wrong type; the sha256 is not 64 hex
                digits; the weights path leaves the card's folder; the model or data module is
                not one of the zoo's registered classes.
        """
        where = path or (data.get("name") if isinstance(data, dict) else None) or "a card"
        if not isinstance(data, dict):
            raise CardError(f"model card {where} must be a JSON object, not {type(data).__name__}")
        saved = {f.name for f in dataclasses.fields(cls)} - {"source", "path"}
        required = {f.name for f in dataclasses.fields(cls) if _required(f)}
        if missing := sorted(required - data.keys()):
            raise CardError(f"model card {where} lacks the fields {missing}")
        if unknown := sorted(data.keys() - saved):
            raise CardError(f"model card {where} has unknown fields {unknown}")
        for key, value in data.items():
            _check_field(where, key, value)
        card = cls(**data, source=source, path=path)
        check_name(card.name)
        if (card.weights is None) != (card.sha256 is None):
            raise CardError(f"model card {where} must give both weights and sha256, or neither")
        if card.version != CARD_VERSION:
            raise CardError(f"model card {where} has format version {card.version}; this zoo reads "
                            f"{CARD_VERSION}")
        _check_weights_location(where, card.weights)
        for lookup, class_path in ((model_class, card.model), (datamodule_class, card.datamodule)):
            try:
                lookup(class_path)
            except ForeignClassError as error:
                raise CardError(f"model card {where}: {error}") from None
        return card

    @classmethod
    def read(cls, path: Path, source: str = "bundled") -> ModelCard:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise CardError(f"cannot read the model card {path}: {error}") from error
        return cls.from_dict(data, source=source, path=path)

    def transforms(self):
        """The evaluation preprocessing as a callable (:class:`~zoo.hub.transforms.EvalTransform`)."""
        from zoo.hub.transforms import EvalTransform

        return EvalTransform(self.preprocessing)

    def weights_location(self) -> str | None:
        """The weights as a URL, or as a path resolved against the card's folder."""
        if self.weights is None or "://" in self.weights or self.path is None:
            return self.weights
        return str(self.path.parent / self.weights)


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def check_name(name: str) -> None:
    """Fails unless ``name`` has the form ``<family>-<dataset>`` in lower case."""
    if not _NAME.match(name):
        raise CardError(
            f"zoo name {name!r} is not of the form '<family>-<dataset>' (lower case letters, "
            "digits and '_', e.g. 'odenet-fmnist')"
        )


def card_from_recipe(config: Path, root: Path) -> ModelCard:
    """The architecture-only card of the recipe ``config`` (``configs/<name>.yaml``).

    The model is built once to record its full constructor arguments and parameter count.
    """
    try:
        recipe = yaml.safe_load(config.read_text())
        model_cls = model_class(recipe["model"]["class_path"])
        data_cls = datamodule_class(recipe["data"]["class_path"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ForeignClassError) as error:
        raise CardError(f"cannot read the recipe {config}: {error}") from error
    datamodule = data_cls(**recipe["data"].get("init_args", {}))
    init_args = dict(recipe["model"].get("init_args") or {})
    init_args.update(input_shape=list(datamodule.input_shape), num_classes=datamodule.num_classes)
    model = model_cls(**init_args)
    relative = config.resolve().relative_to(root.resolve()).as_posix()
    return ModelCard(
        name=config.stem,
        model=recipe["model"]["class_path"],
        init_args=dict(model.hparams),
        datamodule=recipe["data"]["class_path"],
        dataset=datamodule.display_name,
        preprocessing=datamodule.preprocessing,
        num_params=count_parameters(model),
        recipe=relative,
        recipe_command=f"zoo fit --config {relative}",
        source="recipe",
        path=None,
    )


def recipe_dataset(config: Path) -> str:
    """The data set a recipe trains on, from its data module alone (no model is built)."""
    try:
        recipe = yaml.safe_load(config.read_text())
        data_cls = datamodule_class(recipe["data"]["class_path"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ForeignClassError) as error:
        raise CardError(f"cannot read the recipe {config}: {error}") from error
    try:
        return data_cls(**recipe["data"].get("init_args", {})).display_name
    except FileNotFoundError:  # a data module that reads its files when built (zoo.data.uea)
        return f"{data_cls.__name__} (its files are not here)"


def count_parameters(model) -> int:
    """Number of parameters of a module."""
    return sum(parameter.numel() for parameter in model.parameters())


def _check_field(where: object, key: str, value: Any) -> None:
    kinds, optional = _FIELD_TYPES[key]
    if value is None and optional:
        return
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        names = " or ".join(kind.__name__ for kind in kinds) + (" or null" if optional else "")
        raise CardError(f"model card {where}: field {key!r} must be {names}, not {value!r:.80}")
    if key == "sha256" and not _SHA256.fullmatch(value):
        raise CardError(
            f"model card {where}: sha256 must be the full hex digest, 64 digits 0-9a-f, not {value!r:.80}; "
            "a shorter or empty hash would check fewer bits of the weights or none"
        )
    if key == "metrics":
        bad = [k for k, v in value.items() if isinstance(v, bool) or not isinstance(v, int | float)]
        if bad:
            raise CardError(f"model card {where}: metrics {bad} must be numbers")


def _check_weights_location(where: object, weights: str | None) -> None:
    """A URL, or a plain relative path that stays inside the card's folder."""
    if weights is None or urllib.parse.urlsplit(weights).scheme in ("http", "https", "file"):
        return
    relative = PurePosixPath(weights)
    if (not weights or relative.is_absolute() or PureWindowsPath(weights).is_absolute() or "\\" in weights
            or ":" in weights or any(part in ("..", ".") for part in relative.parts)):
        raise CardError(
            f"model card {where}: weights {weights!r} must be an http(s)/file URL or a file name inside "
            "the card's folder (no absolute path, no '..')"
        )


#: Saved field -> (accepted types, whether null is allowed).
_FIELD_TYPES: dict[str, tuple[tuple[type, ...], bool]] = {
    "name": ((str,), False),
    "model": ((str,), False),
    "init_args": ((dict,), False),
    "datamodule": ((str,), False),
    "dataset": ((str,), False),
    "preprocessing": ((dict,), False),
    "num_params": ((int,), False),
    "recipe": ((str,), True),
    "recipe_command": ((str,), True),
    "weights": ((str,), True),
    "sha256": ((str,), True),
    "metrics": ((dict,), False),
    "metrics_command": ((str,), True),
    "training": ((dict,), False),
    "notes": ((str,), False),
    "version": ((int,), False),
}
_SHA256 = re.compile(r"[0-9a-f]{64}")

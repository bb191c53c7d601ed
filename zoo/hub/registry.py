"""Where zoo entries come from: recipes, bundled cards and the user's own exports.

Three layers, later ones overriding earlier ones by name:

1. recipes: every ``configs/<name>.yaml`` of the bundle is an entry, with no weights until exported;
2. bundled: the cards and weights in the bundle's ``checkpoints/`` folder;
3. user: cards written by ``zoo export`` into ``$ZOO_HOME/registry``.

The bundle is the folder holding ``checkpoints/`` and ``configs/`` (:func:`bundle_root`): the
source checkout, or the copy a non-editable ``pip install`` puts under
``<prefix>/share/neural-ode-zoo``, or ``$ZOO_BUNDLE``. It is looked up on every call, as
``$ZOO_HOME`` is. ``checkpoints/training/`` is not part of an installed bundle.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib.metadata
import os
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePath

from zoo.hub.cards import CardError, ModelCard, card_from_recipe, recipe_dataset
from zoo.hub.files import zoo_home
from zoo.ode.registry import UnknownNameError, unknown_name_message

#: Environment variable naming a bundle folder (holding ``checkpoints/`` and ``configs/``).
BUNDLE_ENV = "ZOO_BUNDLE"
#: Where an installed bundle lies under its installation's data prefix (pyproject's data-files).
INSTALLED_BUNDLE = Path("share", "neural-ode-zoo")
DISTRIBUTION = "neural-ode-zoo"
#: The folder above the ``zoo`` package: a source checkout's root, or an installation's site-packages.
SOURCE_ROOT = Path(__file__).resolve().parents[2]


def bundle_root() -> Path:
    """The folder whose ``checkpoints/`` and ``configs/`` hold the bundled entries and recipes.

    In order: ``$ZOO_BUNDLE`` if set (taken as it is); the source checkout this package is
    imported from, if it has both folders; the first of :func:`installed_bundles` that has
    both. Where none has them, the source checkout's place, whose missing folders make an empty
    bundle.
    """
    if override := os.environ.get(BUNDLE_ENV):
        return Path(override).expanduser().resolve()
    if (SOURCE_ROOT / "pyproject.toml").is_file() and _has_bundle(SOURCE_ROOT):
        return SOURCE_ROOT
    return next((root for root in installed_bundles() if _has_bundle(root)), SOURCE_ROOT)


@functools.cache
def installed_bundles() -> tuple[Path, ...]:
    """The places where an installation of the package may have put the bundle, most specific first.

    1. The folder that the installation record (``RECORD``) of the distribution installed
       beside this very package names: right for every install scheme (a virtual environment,
       ``--prefix``, ``--user``).
    2. ``share/neural-ode-zoo`` beside the package, where ``pip install --target`` puts it.
    3. The interpreter's data path, ``sysconfig.get_path("data")/share/neural-ode-zoo``.
    """
    recorded = [
        Path(distribution.locate_file(folder))
        for distribution in importlib.metadata.distributions(name=DISTRIBUTION, path=[str(SOURCE_ROOT)])
        for folder in _bundle_folders(distribution.files or ())
    ]
    data_path = Path(sysconfig.get_path("data"))
    candidates = [*recorded, SOURCE_ROOT / INSTALLED_BUNDLE, data_path / INSTALLED_BUNDLE]
    return tuple(dict.fromkeys(path.resolve() for path in candidates))


def _bundle_folders(files: Iterable[PurePath]) -> list[PurePath]:
    """The ``.../share/neural-ode-zoo`` folders that the recorded file paths lie in."""
    size = len(INSTALLED_BUNDLE.parts)
    folders = []
    for file in files:
        parts = file.parts
        starts = [i for i in range(len(parts) - size) if parts[i:i + size] == INSTALLED_BUNDLE.parts]
        if starts and (folder := PurePath(*parts[:starts[0] + size])) not in folders:
            folders.append(folder)
    return folders


def _has_bundle(root: Path) -> bool:
    return (root / "checkpoints").is_dir() and (root / "configs").is_dir()


def bundled_dir() -> Path:
    """The folder of bundled cards and weights: ``<bundle>/checkpoints``."""
    return bundle_root() / "checkpoints"


def recipe_dir() -> Path:
    """The folder of recipes: ``<bundle>/configs``."""
    return bundle_root() / "configs"


def user_registry_dir() -> Path:
    """The folder of user-exported entries: ``$ZOO_HOME/registry``."""
    return zoo_home() / "registry"


def _card_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def _recipe_names(root: Path) -> list[str]:
    folder = root / "configs"
    return sorted(path.stem for path in folder.glob("*.yaml")) if folder.is_dir() else []


@functools.cache
def _recipe_card(root: Path, name: str) -> ModelCard:
    return card_from_recipe(root / "configs" / f"{name}.yaml", root)


def _sources(root: Path) -> dict[str, tuple[str, Path | None]]:
    """Every entry's name, with the layer and card file that define it, for the bundle at ``root``."""
    found: dict[str, tuple[str, Path | None]] = {name: ("recipe", None) for name in _recipe_names(root)}
    for layer, folder in (("bundled", root / "checkpoints"), ("user", user_registry_dir())):
        for path in _card_files(folder):
            found[path.stem] = (layer, path)
    return found


def names(pattern: str | None = None, pretrained: bool = False) -> list[str]:
    """Sorted names of the entries, optionally filtered.

    Args:
        pattern: Shell-style pattern such as ``"odenet-*"``.
        pretrained: Keep only the entries that have weights.
    """
    selected = sorted(_sources(bundle_root()))
    if pattern:
        selected = [name for name in selected if fnmatch.fnmatchcase(name, pattern)]
    if pretrained:
        selected = [name for name in selected if summary(name).trained]
    return selected


@dataclass(frozen=True)
class EntrySummary:
    """What ``zoo list`` shows of an entry, read from its card or recipe without building a model.

    Attributes:
        name: The zoo name.
        trained: Whether the entry has weights.
        metrics: The card's test metrics (none for a recipe).
        num_params: The card's parameter count; ``None`` for a recipe (counting means building).
        dataset: The data set's name.
        source: ``recipe``, ``bundled`` or ``user``.
    """

    name: str
    trained: bool
    metrics: dict[str, float]
    num_params: int | None
    dataset: str
    source: str


def summary(name: str) -> EntrySummary:
    """The listing of the entry ``name``: its card as it is, or its recipe's data set."""
    root = bundle_root()
    sources = _sources(root)
    if name not in sources:
        raise UnknownNameError(unknown_name_message("zoo model", name, sorted(sources)))
    layer, path = sources[name]
    if path is not None:
        card = get(name)
        return EntrySummary(name, card.trained, card.metrics, card.num_params, card.dataset, layer)
    dataset = recipe_dataset(root / "configs" / f"{name}.yaml")
    return EntrySummary(name, False, {}, None, dataset, layer)


def get(name: str) -> ModelCard:
    """The card of the entry ``name``.

    Raises:
        UnknownNameError: No entry has that name (the error lists the closest ones).
        CardError: The card file is broken.
    """
    root = bundle_root()
    sources = _sources(root)
    if name not in sources:
        message = unknown_name_message("zoo model", name, sorted(sources))
        raise UnknownNameError(message + _missing_bundle(root))
    layer, path = sources[name]
    if path is None:
        return _recipe_card(root, name)
    card = ModelCard.read(path, source=layer)
    if card.name != name:
        raise CardError(f"the model card {path} is named {card.name!r}; its file name says {name!r}")
    return card


def _missing_bundle(root: Path) -> str:
    """What to do, for an error message, when the bundle has neither recipes nor bundled entries."""
    if (root / "checkpoints").is_dir() or (root / "configs").is_dir():
        return ""
    if os.environ.get(BUNDLE_ENV):
        return (f" The zoo's bundled entries and recipes were not found: ${BUNDLE_ENV} ({root}) has no "
                f"checkpoints/ or configs/ folder. Point ${BUNDLE_ENV} at a folder holding them, or "
                "unset it.")
    searched = ", ".join(str(path) for path in (SOURCE_ROOT, *installed_bundles()))
    return (f" The zoo's bundled entries and recipes were not found: none of {searched} has checkpoints/ "
            f"and configs/ folders. Install the package with `pip install .`, or set ${BUNDLE_ENV} to a "
            "folder holding them.")

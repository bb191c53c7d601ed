"""Where zoo entries come from: recipes, bundled cards and the user's own exports.

Three layers, later ones overriding earlier ones by name:

1. recipes: every ``configs/<name>.yaml`` is an entry, with no weights until exported;
2. bundled: the cards and weights in the repository's ``checkpoints/`` folder;
3. user: cards written by ``zoo export`` into ``$ZOO_HOME/registry``.
"""

from __future__ import annotations

import fnmatch
import functools
from pathlib import Path

from zoo.hub.cards import CardError, ModelCard, card_from_recipe
from zoo.hub.files import zoo_home
from zoo.ode.registry import UnknownNameError, unknown_name_message

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_DIR = REPO_ROOT / "checkpoints"
RECIPE_DIR = REPO_ROOT / "configs"


def user_registry_dir() -> Path:
    """The folder of user-exported entries: ``$ZOO_HOME/registry``."""
    return zoo_home() / "registry"


def _card_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def _recipe_names() -> list[str]:
    return sorted(path.stem for path in RECIPE_DIR.glob("*.yaml")) if RECIPE_DIR.is_dir() else []


@functools.cache
def _recipe_card(name: str) -> ModelCard:
    return card_from_recipe(RECIPE_DIR / f"{name}.yaml", REPO_ROOT)


def _sources() -> dict[str, tuple[str, Path | None]]:
    """Every entry's name, with the layer and card file that define it."""
    found: dict[str, tuple[str, Path | None]] = {name: ("recipe", None) for name in _recipe_names()}
    for layer, folder in (("bundled", BUNDLED_DIR), ("user", user_registry_dir())):
        for path in _card_files(folder):
            found[path.stem] = (layer, path)
    return found


def names(pattern: str | None = None, pretrained: bool = False) -> list[str]:
    """Sorted names of the entries, optionally filtered.

    Args:
        pattern: Shell-style pattern such as ``"odenet-*"``.
        pretrained: Keep only the entries that have weights.
    """
    selected = sorted(_sources())
    if pattern:
        selected = [name for name in selected if fnmatch.fnmatchcase(name, pattern)]
    if pretrained:
        selected = [name for name in selected if get(name).trained]
    return selected


def get(name: str) -> ModelCard:
    """The card of the entry ``name``.

    Raises:
        UnknownNameError: No entry has that name (the error lists the closest ones).
        CardError: The card file is broken.
    """
    sources = _sources()
    if name not in sources:
        raise UnknownNameError(unknown_name_message("zoo model", name, sorted(sources)))
    layer, path = sources[name]
    if path is None:
        return _recipe_card(name)
    card = ModelCard.read(path, source=layer)
    if card.name != name:
        raise CardError(f"the model card {path} is named {card.name!r}; its file name says {name!r}")
    return card

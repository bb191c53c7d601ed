"""Reading weights from a zoo name, a path or a URL, and fitting them into a model."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from zoo.hub import registry
from zoo.hub.cards import ModelCard
from zoo.hub.files import WeightsSourceError, fetch, is_url, verify

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")


class WeightsNotTrainedError(RuntimeError):
    """A zoo entry whose architecture is registered but whose weights were never trained."""


class WeightsMismatchError(ValueError):
    """Weights whose keys or shapes do not fit the model."""


def card_weights_file(card: ModelCard) -> Path:
    """The verified local weights file of a card (downloaded into the cache for a URL).

    Raises:
        WeightsNotTrainedError: The entry has no weights; the message says how to make them.
        WeightsSourceError: The card's file is missing or its URL cannot be read.
        WeightsVerificationError: The file's sha256 is not the card's.
    """
    location = card.weights_location()
    if location is None:
        raise WeightsNotTrainedError(_untrained_message(card))
    if is_url(location):
        return fetch(location, card.sha256)
    path = Path(location)
    if not path.is_file():
        raise WeightsSourceError(f"the card {card.path} names the weights file {path}, which is missing")
    verify(path, card.sha256, f"zoo model {card.name!r}")
    return path


def _untrained_message(card: ModelCard) -> str:
    recipe = card.recipe_command or f"zoo fit --config configs/{card.name}.yaml"
    return (
        f"zoo model {card.name!r} has no trained weights: its architecture is registered, but "
        f"no weights trained on {card.dataset} were ever exported to the zoo. Train them with "
        f"`{recipe}`, then register the best checkpoint with `zoo export "
        f"runs/{card.name}/version_0/checkpoints/<best>.ckpt --name {card.name}`; after that, "
        f"zoo.load({card.name!r}) loads them. For the untrained architecture, use "
        f"zoo.load({card.name!r}, pretrained=False)."
    )


def resolve(source: str) -> tuple[Path, ModelCard | None]:
    """The verified local weights file named by ``source``, and its card if it has one.

    Args:
        source: A zoo name (``odenet-fmnist``), a path to a safetensors file, or an http(s) or
            file URL (see :func:`zoo.hub.files.fetch` for how a URL's hash is given).
    """
    if is_url(source):
        return fetch(source), None
    path = Path(source).expanduser()
    if path.is_file():
        _refuse_pickle(path)
        return path, None
    if path.suffix or "/" in source or "\\" in source:
        raise WeightsSourceError(f"no weights file {path} (neither a file, a URL nor a zoo name)")
    card = registry.get(source)
    return card_weights_file(card), card


def _refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise WeightsSourceError(
            f"{path} looks like a pickled checkpoint; the zoo loads safetensors only. Turn a "
            f"Lightning checkpoint into zoo weights with `zoo export {path} --name <family>-<dataset>` "
            "and pass that name (or the .safetensors file it writes)."
        )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file."""
    _refuse_pickle(path)
    try:
        return load_file(path)
    except (SafetensorError, OSError) as error:
        raise WeightsSourceError(f"{path} is not a readable safetensors file: {error}") from error


def load_state(
    module: nn.Module, state: dict[str, torch.Tensor], what: str, new_head: Iterable[str] = ()
) -> list[str]:
    """Copies ``state`` into ``module``, strictly except for a classification head.

    Args:
        module: The model.
        state: The weights.
        what: How the weights are named in messages.
        new_head: Keys that may differ in shape (a head for another number of classes); those
            keep the module's fresh initialization, with a warning.

    Returns:
        The keys that were left at their initialization.

    Raises:
        WeightsMismatchError: Keys are missing or unexpected, or shapes differ outside
            ``new_head``; the message names them.
    """
    own = module.state_dict()
    missing = sorted(own.keys() - state.keys())
    unexpected = sorted(state.keys() - own.keys())
    mismatched = sorted(k for k in own.keys() & state.keys() if own[k].shape != state[k].shape)
    head = set(new_head)
    if missing or unexpected or set(mismatched) - head:
        message = _mismatch_message(module, what, missing, unexpected, mismatched, own, state)
        raise WeightsMismatchError(message)
    if mismatched:
        shapes = ", ".join(f"{k} {tuple(state[k].shape)} -> {tuple(own[k].shape)}" for k in mismatched)
        warnings.warn(
            f"{type(module).__name__}: the classification head of {what} has another number of "
            f"classes and was re-initialized ({shapes}); train it before use.",
            stacklevel=3,
        )
        state = {k: v for k, v in state.items() if k not in mismatched}
    module.load_state_dict(state, strict=not mismatched)
    return mismatched


def _mismatch_message(module, what, missing, unexpected, mismatched, own, state) -> str:
    parts = []
    if missing:
        parts.append(f"missing keys {_first(missing)}")
    if unexpected:
        parts.append(f"unexpected keys {_first(unexpected)}")
    if mismatched:
        shapes = [f"{k}: weights {tuple(state[k].shape)}, model {tuple(own[k].shape)}" for k in mismatched]
        parts.append(f"shape mismatches {_first(shapes)}")
    return (
        f"the weights {what} do not fit {type(module).__name__}: {', '.join(parts)}. Build the "
        "model with the arguments the weights were trained with (see `zoo info <name>`)."
    )


def _first(items: list[str], count: int = 8) -> str:
    shown = "; ".join(items[:count])
    return f"[{shown}; and {len(items) - count} more]" if len(items) > count else f"[{shown}]"

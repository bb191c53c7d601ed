"""The pretrained registry: ``zoo.list_models``, ``zoo.info`` and ``zoo.load``.

Entries are named ``<family>-<dataset>``. Each has a model card (:class:`ModelCard`) and, once
trained, a safetensors weights file whose sha256 the card holds and which is checked on every
load. Bundled weights load offline; weights at a URL are downloaded into ``$ZOO_HOME`` once.
"""

from __future__ import annotations

from lightning import LightningModule

from zoo.families import model_class
from zoo.hub import registry
from zoo.hub.cards import CardError, ModelCard
from zoo.hub.files import WeightsSourceError, WeightsVerificationError, zoo_home
from zoo.hub.transforms import EvalTransform
from zoo.hub.weights import (
    WeightsMismatchError,
    WeightsNotTrainedError,
    card_weights_file,
    load_state,
    read_state_dict,
    resolve,
)

__all__ = [
    "CardError",
    "ModelCard",
    "WeightsMismatchError",
    "WeightsNotTrainedError",
    "WeightsSourceError",
    "WeightsVerificationError",
    "info",
    "list_models",
    "load",
    "transforms",
    "zoo_home",
]


def list_models(pattern: str | None = None, pretrained: bool = False) -> list[str]:
    """Names of the zoo's entries, sorted.

    Args:
        pattern: Shell-style filter such as ``"odenet-*"``.
        pretrained: Keep only the entries that have trained weights.
    """
    return registry.names(pattern, pretrained)


def info(name: str) -> ModelCard:
    """The model card of ``name``: metrics, parameters, data set, preprocessing, recipe, sha256."""
    return registry.get(name)


def load(name: str, pretrained: bool = True, weights: str | None = None) -> LightningModule:
    """The model ``name``, in eval mode, with verified weights.

    Args:
        name: A zoo name (see :func:`list_models`).
        pretrained: Load the entry's own weights; ``False`` gives the untrained architecture.
        weights: Other weights for the same architecture instead: a zoo name, a safetensors
            path or a URL. They must fit the architecture exactly.

    Returns:
        The LightningModule, with its card as ``model.card``.

    Raises:
        UnknownNameError: No entry is called ``name`` (the message gives the closest names).
        WeightsNotTrainedError: The entry has no weights yet; the message gives the commands
            that train and register them.
        WeightsVerificationError: The weights file is not the one the card names.
    """
    card = registry.get(name)
    model = model_class(card.model)(**card.init_args)
    if weights is not None:
        path, _ = resolve(weights)
        what = weights
    elif pretrained:
        path, what = card_weights_file(card), f"zoo model {name!r}"
    else:
        path = None
    if path is not None:
        load_state(model, read_state_dict(path), what)
    model.card = card
    return model.eval()


def transforms(name: str) -> EvalTransform:
    """The evaluation preprocessing of ``name`` as a callable on PIL images, arrays and tensors.

    As torchvision's ``weights.transforms()``: ``model(zoo.transforms(name)(image).unsqueeze(0))``.
    """
    return EvalTransform(registry.get(name).preprocessing)

"""``zoo export``: a Lightning training checkpoint -> safetensors weights + model card.

The checkpoint's hyperparameters rebuild the model, its weights must load strictly, and the
test split of its data set is run through ``Trainer.test`` (what ``zoo test`` runs), so the
card's metrics are measured on the exported weights, never typed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning import LightningDataModule, LightningModule, Trainer
from safetensors.torch import save_file

from zoo.families import ForeignClassError, datamodule_class, model_class, public_path
from zoo.hub import registry
from zoo.hub.cards import CardError, ModelCard, check_name, count_parameters
from zoo.hub.files import (
    WeightsSourceError,
    atomic_path,
    commit,
    folder_lock,
    hash_prefix_in_name,
    hashed_name,
    sha256_of,
    sync_folder,
    temporary_beside,
)
from zoo.hub.weights import load_state


@dataclass
class ExportSettings:
    """What ``zoo export`` writes, and how it measures.

    Attributes:
        out_dir: Folder of the card and weights; default the user registry, ``$ZOO_HOME/registry``.
        recipe: The config that trained the checkpoint; default ``configs/<name>.yaml`` if it exists.
        recipe_command: The training command; default ``zoo fit --config <recipe>``.
        run_test: Measure the test metrics (``False`` writes a card without metrics).
        data_dir: Where the test data is; default the DataModule's own default.
        notes: Free text for the card, such as how the metrics compare with published ones.
    """

    out_dir: Path | None = None
    recipe: Path | None = None
    recipe_command: str | None = None
    run_test: bool = True
    data_dir: str | None = None
    notes: str = ""
    data_overrides: dict[str, Any] = field(default_factory=dict)


def export_checkpoint(checkpoint: Path, name: str, settings: ExportSettings | None = None) -> ModelCard:
    """Writes ``<name>-<sha256 prefix>.safetensors`` and ``<name>.json`` from a checkpoint.

    Returns:
        The written card.
    """
    settings = settings or ExportSettings()
    check_name(name)
    stored = _read_checkpoint(checkpoint)
    recipe_path = settings.recipe or _default_recipe(name)
    recipe = yaml.safe_load(recipe_path.read_text()) if recipe_path else {}
    model_hparams = dict(stored.get("hyper_parameters") or {})
    data_hparams = dict(stored.get("datamodule_hyper_parameters") or {})
    model_cls = _registered(model_class, model_hparams, recipe, "model", checkpoint)
    data_cls = _registered(datamodule_class, data_hparams, recipe, "data", checkpoint)
    init_args = {k: v for k, v in model_hparams.items() if not k.startswith("_") and k != "weights"}
    model = _build(model_cls, init_args, checkpoint)
    load_state(model, stored["state_dict"], f"in {checkpoint}")
    data_args = _plain_args(data_hparams) or dict(recipe.get("data", {}).get("init_args") or {})
    data_args.update(settings.data_overrides)
    if settings.data_dir is not None:
        data_args["data_dir"] = settings.data_dir
    datamodule = _build(data_cls, data_args, checkpoint)
    recipe_name = _repo_relative(recipe_path) if recipe_path else None
    recipe_command = settings.recipe_command or (f"zoo fit --config {recipe_name}" if recipe_name else None)
    card = ModelCard(
        name=name,
        model=public_path(model_cls),
        init_args=dict(model.hparams),
        datamodule=public_path(data_cls),
        dataset=datamodule.display_name,
        preprocessing=datamodule.preprocessing,
        num_params=count_parameters(model),
        recipe=recipe_name,
        recipe_command=recipe_command,
        metrics=_test_metrics(model, datamodule) if settings.run_test else {},
        metrics_command=_metrics_command(name, recipe_name) if settings.run_test else None,
        training=_training_facts(stored, checkpoint),
        notes=settings.notes,
        source="user",
    )
    return _write(model, card, settings.out_dir or registry.user_registry_dir())


def _read_checkpoint(checkpoint: Path) -> dict[str, Any]:
    try:
        stored = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a bad or unsafe file
        raise WeightsSourceError(f"cannot read the Lightning checkpoint {checkpoint}: {error}") from error
    if not isinstance(stored, dict) or "state_dict" not in stored:
        raise WeightsSourceError(f"{checkpoint} is not a Lightning checkpoint (no 'state_dict')")
    return stored


def _default_recipe(name: str) -> Path | None:
    path = registry.recipe_dir() / f"{name}.yaml"
    return path if path.is_file() else None


def _registered(lookup, hparams: dict[str, Any], recipe: dict[str, Any], key: str, checkpoint: Path) -> type:
    """The zoo class that the checkpoint's hyperparameters (or else the recipe) name; never imported."""
    class_path = hparams.get("_class_path") or (recipe.get(key) or {}).get("class_path")
    if not class_path:
        raise CardError(
            f"cannot tell which {key} class made {checkpoint}: its hyperparameters do not say and "
            "no recipe was found; pass the training config with --recipe"
        )
    try:
        return lookup(class_path)
    except ForeignClassError as error:
        raise CardError(f"{checkpoint} names a {key} class the zoo does not build: {error}") from None


def _build(cls: type, arguments: dict[str, Any], checkpoint: Path) -> Any:
    try:
        return cls(**arguments)
    except TypeError as error:
        raise CardError(
            f"the hyperparameters stored in {checkpoint} do not fit {cls.__name__}: {error}"
        ) from error


def _plain_args(hparams: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in hparams.items() if not k.startswith("_")}


def _repo_relative(path: Path) -> str:
    try:
        return path.resolve().relative_to(registry.bundle_root()).as_posix()
    except ValueError:
        return str(path)


def _test_metrics(model: LightningModule, datamodule: LightningDataModule) -> dict[str, float]:
    trainer = Trainer(
        accelerator="auto",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    (results,) = trainer.test(model, datamodule=datamodule, verbose=False)
    return {key: round(float(value), 6) for key, value in sorted(results.items())}


def _metrics_command(name: str, recipe: str | None) -> str:
    config = f"--config {recipe} " if recipe else ""
    return f"zoo test {config}--model.init_args.weights {name}"


def _training_facts(stored: dict[str, Any], checkpoint: Path) -> dict[str, Any]:
    facts: dict[str, Any] = {"checkpoint": checkpoint.name}
    for key in ("epoch", "global_step"):
        if key in stored:
            facts[key] = int(stored[key])
    for state_key, state in (stored.get("callbacks") or {}).items():
        if state_key.startswith("ModelCheckpoint") and state.get("best_model_score") is not None:
            facts["monitor"] = state_key.split("'monitor': '")[-1].split("'")[0]
            facts["best_score"] = round(float(state["best_model_score"]), 6)
    return facts


def _write(model: LightningModule, card: ModelCard, out_dir: Path) -> ModelCard:
    """Weights first (named after their hash), then the card, each atomically and durably.

    The entry's lock is held throughout, so concurrent exports of one name leave the card and
    weights of one of them, and no other weights file of that name.
    """
    state = {key: value.detach().contiguous().cpu() for key, value in model.state_dict().items()}
    with folder_lock(out_dir):
        with temporary_beside(out_dir / f"{card.name}.safetensors") as tmp:
            save_file(state, str(tmp), metadata={"zoo_name": card.name, "model": card.model})
            card.sha256 = sha256_of(tmp)
            card.weights = hashed_name(card.name, card.sha256)
            commit(tmp, out_dir / card.weights)
        card_path = out_dir / f"{card.name}.json"
        with atomic_path(card_path) as tmp_card:
            tmp_card.write_text(card.to_json())
        card.path = card_path
        for old in out_dir.glob(f"{card.name}-*.safetensors"):
            replaced = hash_prefix_in_name(old.name) and old.stem.rsplit("-", 1)[0] == card.name
            if replaced and old.name != card.weights:
                old.unlink()
        sync_folder(out_dir)
    return card

"""Weight files: verified downloads into the cache, weight sources, fitting state dicts, user cards.

No network: every URL is a ``file://`` URL of a file written into tmp_path, and every expected
hash is computed here with hashlib, not with the code under test.
"""

import dataclasses
import hashlib
import json
import os
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import zoo
from zoo.hub import CardError, WeightsMismatchError, WeightsSourceError, WeightsVerificationError
from zoo.hub.cards import check_name
from zoo.hub.files import fetch
from zoo.hub.weights import load_state, read_state_dict, resolve
from zoo.models import ResNet
from zoo.ode.registry import UnknownNameError

SMALL = {"width": 8, "num_blocks": 1}
OTHER_HASH = hashlib.sha256(b"some other file").hexdigest()


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """$ZOO_HOME in tmp_path, so that no test reads or writes the user's cache."""
    home = tmp_path / "home"
    monkeypatch.setenv("ZOO_HOME", str(home))
    return home


@pytest.fixture
def cache(home):
    return home / "weights"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model(seed: int = 0, **kwargs) -> ResNet:
    torch.manual_seed(seed)
    return ResNet(**kwargs)


def save(module, folder: Path, stem: str = "weights", hashed: bool = True) -> Path:
    """``module``'s state dict as ``folder/stem-<sha256 prefix>.safetensors`` (or ``stem.safetensors``)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.safetensors"
    save_file(module.state_dict(), path)
    return path.rename(folder / f"{stem}-{sha256(path)[:8]}.safetensors") if hashed else path


def listing(folder: Path) -> list[str]:
    """Every entry of ``folder``, dotfiles included; empty if the folder does not exist."""
    return sorted(os.listdir(folder)) if folder.exists() else []


def assert_state_equal(module, state, keys=None):
    own = module.state_dict()
    keys = own.keys() if keys is None else keys
    assert own.keys() == state.keys()
    for key in keys:
        assert torch.equal(own[key], state[key]), key


@pytest.fixture
def small(tmp_path):
    """A small ResNet and its hash-named safetensors file."""
    module = model(**SMALL)
    return module, save(module, tmp_path / "src")


# --- fetch -----------------------------------------------------------------------------------


@pytest.mark.parametrize("then", ["delete", "change"])
def test_fetch_downloads_once_then_serves_the_cache(small, cache, then):
    _, source = small
    original = source.read_bytes()
    got = fetch(source.as_uri())
    assert got == cache / source.name
    assert got.read_bytes() == original
    if then == "delete":
        source.unlink()
    else:
        source.write_bytes(b"not the published file")
    again = fetch(source.as_uri())
    assert again == got
    assert again.read_bytes() == original
    assert listing(cache) == [source.name]


@pytest.mark.parametrize("case", [str.lower, str.upper])
def test_fetch_fragment_hash_names_the_cached_copy(tmp_path, case):
    source = save(model(**SMALL), tmp_path / "src", stem="plain", hashed=False)
    digest = sha256(source)
    got = fetch(f"{source.as_uri()}#sha256={case(digest)}", cache_dir=tmp_path / "c")
    assert got == tmp_path / "c" / f"plain-{digest[:8]}.safetensors"
    assert got.read_bytes() == source.read_bytes()


@pytest.mark.parametrize("damage", ["truncated", "wrong hash"])
def test_fetch_rejects_a_bad_download_and_writes_nothing(small, cache, damage):
    _, source = small
    url = source.as_uri()
    if damage == "truncated":
        data = source.read_bytes()
        source.write_bytes(data[: len(data) // 2])
    else:
        url += f"#sha256={OTHER_HASH}"
    with pytest.raises(WeightsVerificationError, match="Nothing was written to the cache") as error:
        fetch(url)
    assert "truncated or is not the published file" in str(error.value)
    assert listing(cache) == []


def test_fetch_refuses_a_url_without_a_hash(tmp_path, cache):
    source = save(model(**SMALL), tmp_path / "src", hashed=False)
    with pytest.raises(WeightsSourceError, match="#sha256="):
        fetch(source.as_uri())
    assert listing(cache) == []


def test_fetch_of_a_missing_file_fails_and_writes_nothing(tmp_path, cache):
    missing = tmp_path / f"gone-{OTHER_HASH[:8]}.safetensors"
    with pytest.raises(WeightsSourceError, match="could not download"):
        fetch(missing.as_uri())
    assert listing(cache) == []


def test_fetch_replaces_a_damaged_cached_copy(small):
    _, source = small
    cached = fetch(source.as_uri())
    cached.write_bytes(b"bit rot")
    with pytest.warns(UserWarning, match="damaged"):
        again = fetch(source.as_uri())
    assert again == cached
    assert again.read_bytes() == source.read_bytes()


def test_fetch_refuses_a_too_short_hash(small):
    _, source = small
    with pytest.raises(WeightsSourceError, match="at least 8"):
        fetch(f"{source.as_uri()}#sha256={sha256(source)[:1]}")


# --- resolve and read_state_dict -------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".ckpt", ".pt"])
def test_resolve_refuses_a_pickled_checkpoint(tmp_path, suffix):
    path = tmp_path / f"last{suffix}"
    torch.save({"state_dict": model(**SMALL).state_dict()}, path)
    with pytest.raises(WeightsSourceError, match="zoo export"):
        resolve(str(path))


def test_resolve_a_missing_path(tmp_path):
    with pytest.raises(WeightsSourceError, match="no weights file"):
        resolve(str(tmp_path / "nowhere.safetensors"))


def test_resolve_an_unknown_name_lists_close_names():
    with pytest.raises(UnknownNameError, match="Did you mean 'resnet-fmnist'"):
        resolve("resnet-fmnst")


def test_resolve_a_url_fetches_it(small, cache):
    _, source = small
    path, card = resolve(source.as_uri())
    assert (path, card) == (cache / source.name, None)
    assert path.read_bytes() == source.read_bytes()


def test_read_state_dict_refuses_a_file_that_is_not_safetensors(tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(random.Random(0).randbytes(4096))
    with pytest.raises(WeightsSourceError, match="not a readable safetensors file"):
        read_state_dict(path)


# --- load_state ------------------------------------------------------------------------------


def test_load_state_copies_an_exact_fit():
    source, target = model(0, **SMALL), model(1, **SMALL)
    state = source.state_dict()
    assert not torch.equal(target.state_dict()["net.stem.0.weight"], state["net.stem.0.weight"])
    assert load_state(target, state, "w") == []
    assert_state_equal(target, state)


def test_load_state_reinitializes_a_listed_head():
    state = model(0, **SMALL).state_dict()
    target = model(1, **SMALL, num_classes=3)
    head = target.head_parameter_names()
    fresh = {key: value.clone() for key, value in target.state_dict().items() if key in head}
    with pytest.warns(UserWarning, match="re-initialized"):
        assert load_state(target, state, "w", new_head=head) == sorted(head)
    own = target.state_dict()
    for key in head:
        assert torch.equal(own[key], fresh[key]), key
    assert_state_equal(target, {**state, **fresh}, keys=own.keys() - set(head))


def test_load_state_names_a_shape_mismatch_outside_the_head():
    target = model(1, **SMALL)
    before = {key: value.clone() for key, value in target.state_dict().items()}
    state = model(0, **SMALL).state_dict()
    key = "net.stem.0.weight"
    shape = tuple(state[key].shape)
    state[key] = torch.zeros(5, *shape[1:])
    with pytest.raises(WeightsMismatchError) as error:
        load_state(target, state, "w", new_head=target.head_parameter_names())
    assert f"{key}: weights {(5, *shape[1:])}, model {shape}" in str(error.value)
    assert_state_equal(target, before)


def test_load_state_names_missing_and_unexpected_keys():
    target = model(1, **SMALL)
    state = model(0, **SMALL).state_dict()
    del state["net.stem.0.bias"]
    state["net.extra.weight"] = torch.zeros(1)
    with pytest.raises(WeightsMismatchError) as error:
        load_state(target, state, "w")
    message = str(error.value)
    assert "missing keys [net.stem.0.bias]" in message
    assert "unexpected keys [net.extra.weight]" in message


# --- zoo.load and model constructors ---------------------------------------------------------


def test_zoo_load_with_weights_from_a_url(tmp_path, cache):
    assert dict(ResNet().hparams) == zoo.info("resnet-fmnist").init_args
    source = model(3)
    path = save(source, tmp_path / "src", stem="resnet-fmnist")
    loaded = zoo.load("resnet-fmnist", weights=path.as_uri())
    assert not any(module.training for module in loaded.modules())
    assert loaded.card.name == "resnet-fmnist"
    assert_state_equal(loaded, source.state_dict())
    assert listing(cache) == [path.name]


@pytest.fixture
def wide(tmp_path):
    """A one-block, 64-wide, 10-class ResNet and its weights file."""
    module = model(0, num_blocks=1)
    return module, save(module, tmp_path / "src")


def test_constructor_weights_for_other_classes_reinitialize_the_head(wide):
    source, path = wide
    fresh = model(7, num_blocks=1, num_classes=3).state_dict()
    with pytest.warns(UserWarning, match="re-initialized"):
        target = model(7, num_blocks=1, num_classes=3, weights=str(path))
    head = target.head_parameter_names()
    assert_state_equal(target, {**source.state_dict(), **{key: fresh[key] for key in head}})
    assert tuple(target.state_dict()["net.head.4.weight"].shape) == (3, 64)


def test_constructor_weights_of_another_width_fail(wide):
    _, path = wide
    with pytest.raises(WeightsMismatchError) as error:
        ResNet(num_blocks=1, width=16, weights=str(path))
    assert "net.body.0.conv1.weight: weights (64, 64, 3, 3), model (16, 16, 3, 3)" in str(error.value)


# --- the user registry -----------------------------------------------------------------------


def register(home: Path, name: str, sha: str | None = None) -> tuple[ResNet, Path]:
    """A user entry ``name`` with resnet-fmnist's architecture; returns its model and card file."""
    folder = home / "registry"
    source = model(5)
    path = save(source, folder, stem=name)
    card = dataclasses.replace(zoo.info("resnet-fmnist"), name=name, weights=path.name,
                               sha256=sha or sha256(path))
    card_file = folder / f"{name}.json"
    card_file.write_text(card.to_json())
    return source, card_file


def test_user_card_is_listed_and_loads(home):
    source, _ = register(home, "resnet-mine")
    assert "resnet-mine" in zoo.list_models(pretrained=True)
    card = zoo.info("resnet-mine")
    assert card.source == "user"
    assert card.trained
    loaded = zoo.load("resnet-mine")
    assert not loaded.training
    assert_state_equal(loaded, source.state_dict())


def test_user_card_with_a_wrong_sha256_fails_to_load(home):
    register(home, "resnet-mine", sha=OTHER_HASH)
    with pytest.raises(WeightsVerificationError, match=OTHER_HASH):
        zoo.load("resnet-mine")


def test_user_card_lacking_a_field_is_named(home):
    _, card_file = register(home, "resnet-mine")
    data = json.loads(card_file.read_text())
    del data["datamodule"]
    card_file.write_text(json.dumps(data))
    with pytest.raises(CardError, match="lacks the fields \\['datamodule'\\]"):
        zoo.info("resnet-mine")


@pytest.mark.parametrize("name", ["resnet-fmnist_v1.5", "ResNet-fmnist", "resnet", "-fmnist", "a b-c"])
def test_malformed_zoo_names_are_refused(name):
    with pytest.raises(CardError, match="<family>-<dataset>"):
        check_name(name)

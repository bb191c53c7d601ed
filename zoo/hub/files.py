"""Weight files: hashes, hash-prefixed names, atomic, durable writes and the download cache.

Every weights file is a safetensors file. A file named by a model card is checked against the
card's full sha256 whenever it is read. A download is checked against the hash its card gives,
or a ``#sha256=<hex>`` fragment of its URL, or the prefix its file name carries (``-<hex>``, at
least 8 hex digits of its sha256, as in torchvision's ``resnet18-f37072fd.pth``), and lands in
the cache only if it checks out. A local file given by path has no published hash to check.
"""

from __future__ import annotations

import fcntl
import hashlib
import http.client
import os
import re
import secrets
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HASH_PREFIX_LENGTH = 8
URL_SCHEMES = ("http", "https", "file")
_HASH_SUFFIX = re.compile(r"-([0-9a-f]{8,64})$")
_CHUNK = 1 << 20


class WeightsVerificationError(RuntimeError):
    """A weights file or download whose sha256 is not the one it must have."""


class WeightsSourceError(ValueError):
    """A weights source that cannot be read: missing file, pickle, unreachable URL."""


def zoo_home() -> Path:
    """The zoo's folder for the download cache and user-exported entries.

    ``$ZOO_HOME`` if set, else ``~/.cache/neural-ode-zoo``.
    """
    return Path(os.environ.get("ZOO_HOME") or Path.home() / ".cache" / "neural-ode-zoo")


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's contents."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hash_prefix_in_name(name: str) -> str | None:
    """The sha256 prefix a file name carries (``odenet-fmnist-1a2b3c4d.safetensors``), if any."""
    match = _HASH_SUFFIX.search(Path(name).stem)
    return match.group(1) if match else None


def hashed_name(stem: str, sha256: str, suffix: str = ".safetensors") -> str:
    """``<stem>-<first 8 hex digits>.<suffix>``: the name a weights file is stored under."""
    return f"{stem}-{sha256[:HASH_PREFIX_LENGTH]}{suffix}"


def verify(path: Path, sha256: str | None, what: str) -> str:
    """Checks a file against a full sha256, or against the hash prefix in its name.

    Args:
        path: The file.
        sha256: The expected full hex digest; ``None`` to check the name's prefix only.
        what: How the file is named in the error (a zoo name, a URL).

    Returns:
        The file's sha256.

    Raises:
        WeightsVerificationError: The contents are not what the hash says.
    """
    actual = sha256_of(path)
    expected = sha256 or hash_prefix_in_name(path.name)
    if expected and not actual.startswith(expected.lower()):
        raise WeightsVerificationError(
            f"the weights of {what} at {path} have sha256 {actual}, expected "
            f"{expected}: the file is damaged or is not the one published. Delete it and load "
            "again, or export the checkpoint anew with `zoo export`."
        )
    return actual


@contextmanager
def atomic_path(destination: Path) -> Iterator[Path]:
    """A temporary path beside ``destination``, moved onto it durably only if the block succeeds.

    See :func:`temporary_beside` and :func:`commit`: a reader sees the old file or the whole new
    one, and after a crash or power loss the folder holds one of the two, never a torn file.
    """
    with temporary_beside(destination) as tmp:
        yield tmp
        commit(tmp, destination)


@contextmanager
def temporary_beside(destination: Path) -> Iterator[Path]:
    """A new, empty, uniquely named hidden file in ``destination``'s folder, removed at the end.

    It is created with the permissions of an ordinary new file (``0o666`` less the umask), so a
    committed file is as readable as one written in place.
    """
    folder = destination.parent
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{destination.name}.{secrets.token_hex(8)}.part"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def commit(tmp: Path, destination: Path) -> None:
    """Flushes ``tmp`` to disk, renames it onto ``destination`` and flushes the folder's entry."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, destination)
    sync_folder(destination.parent)


def sync_folder(folder: Path) -> None:
    """Flushes a folder's entries (a rename or unlink in it) to disk."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Holds an exclusive lock on a registry or cache folder while its entries are written.

    Writers (two ``zoo export --name X`` at once, say) take turns, so an entry they leave is
    the whole of one of them. The lock is ``flock`` on the folder itself (no lock file is
    left behind), released by the kernel if the process dies.
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def is_url(source: str) -> bool:
    """Whether ``source`` is an http(s) or file URL rather than a path or a zoo name."""
    return urllib.parse.urlsplit(source).scheme in URL_SCHEMES


def fetch(url: str, sha256: str | None = None, cache_dir: Path | None = None) -> Path:
    """A verified local copy of the file at ``url``, downloaded into the cache if not there.

    The download goes to a temporary file in the cache folder, is hashed, and is renamed into
    place only if the hash checks out, so a broken or tampered download never lands in the
    cache. A cached copy is checked again on every call; a damaged one is replaced.

    Args:
        url: http(s) or file URL. A ``#sha256=<hex>`` fragment gives the expected hash.
        sha256: The expected hex sha256 (full, or a prefix of at least 8 digits). Without it
            and without a fragment, the URL's file name must carry a hash prefix.
        cache_dir: Default ``$ZOO_HOME/weights``.

    Raises:
        WeightsSourceError: The URL cannot be read or nothing says which hash to expect.
        WeightsVerificationError: The download is not the file the hash names.
    """
    parts = urllib.parse.urlsplit(url)
    expected = sha256 or _fragment_hash(parts.fragment) or hash_prefix_in_name(Path(parts.path).name)
    if not expected:
        raise WeightsSourceError(
            f"cannot verify the weights at {url}: give the expected hash as '#sha256=<hex>' at "
            "the end of the URL, or use a file name that carries it (name-<sha256 prefix>"
            ".safetensors, as `zoo export` writes)."
        )
    if not re.fullmatch(rf"[0-9a-f]{{{HASH_PREFIX_LENGTH},64}}", expected.lower()):
        raise WeightsSourceError(
            f"the expected sha256 of {url} must be hex digits, at least {HASH_PREFIX_LENGTH} of them; "
            f"got {expected!r}"
        )
    cache_dir = cache_dir or zoo_home() / "weights"
    cached = cache_dir / _cache_name(Path(parts.path).name, expected)
    if cached.is_file():
        try:
            verify(cached, expected, url)
            return cached
        except WeightsVerificationError:
            warnings.warn(f"the cached copy {cached} of {url} is damaged; downloading it again",
                          stacklevel=2)
            cached.unlink()
    _download(urllib.parse.urlunsplit(parts._replace(fragment="")), cached, expected)
    return cached


def _fragment_hash(fragment: str) -> str | None:
    key, _, value = fragment.partition("=")
    return value.lower() if key == "sha256" and value else None


def _cache_name(name: str, sha256: str) -> str:
    if hash_prefix_in_name(name):
        return name
    path = Path(name or "weights.safetensors")
    return hashed_name(path.stem, sha256, path.suffix or ".safetensors")


def _download(url: str, destination: Path, expected: str) -> None:
    with folder_lock(destination.parent), atomic_path(destination) as tmp:
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
                while chunk := response.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            raise WeightsSourceError(f"could not download the weights at {url}: {error}") from error
        actual = digest.hexdigest()
        if not actual.startswith(expected.lower()):
            raise WeightsVerificationError(
                f"the download from {url} has sha256 {actual}, expected {expected}: it is "
                "truncated or is not the published file. Nothing was written to the cache."
            )

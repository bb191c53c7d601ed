"""A small name -> object registry whose lookups fail with the valid names."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError):
    """A name that no registry entry carries."""


def unknown_name_message(kind: str, name: object, valid: list[str]) -> str:
    """The error text for an unknown ``name`` of a ``kind``: closest matches, then all of ``valid``."""
    close = difflib.get_close_matches(str(name), valid, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    return f"unknown {kind} {name!r}.{hint} Valid names: {', '.join(valid)}."


class Registry(Generic[T]):
    """Maps names to objects (solvers, dynamics builders, zoo entries).

    Args:
        kind: What the entries are, for error messages ("solver", "dynamics").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Returns a decorator that registers its argument under ``name``."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered already")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        """Returns the entry called ``name``.

        Raises:
            UnknownNameError: No entry is called ``name``; the message lists the valid names.
        """
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        """The error text for an unknown ``name``: closest matches first, then every valid name."""
        return unknown_name_message(self.kind, name, self.names())

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

"""One line of text for an error caused by bad input, for ``zoo: error: ...``.

Two kinds of error are bad input rather than bugs: the zoo's own (:data:`USER_ERRORS`: a bad
setting, an unknown name, missing data or weights, a failed solve), also when jsonargparse
wrapped them while building the config's classes; and jsonargparse's parse errors (a value of the
wrong type, an unknown option, a missing config file). Their messages span many lines of nested
union alternatives; here they become the bad key, the value given and what is wrong.
"""

from __future__ import annotations

import argparse
import re

from zoo.data import DataNotFoundError
from zoo.errors import SettingError
from zoo.hub import (
    CardError,
    WeightsMismatchError,
    WeightsNotTrainedError,
    WeightsSourceError,
    WeightsVerificationError,
)
from zoo.ode import ODESolveError
from zoo.ode.registry import UnknownNameError

#: Errors that end the program with their message alone: bad input, not bugs.
USER_ERRORS = (
    DataNotFoundError,
    ODESolveError,
    SettingError,
    CardError,
    UnknownNameError,
    WeightsMismatchError,
    WeightsNotTrainedError,
    WeightsSourceError,
    WeightsVerificationError,
)

_PARSER_KEY = re.compile(r'Parser key "([^"]+)"')
_CLASS_PATH = re.compile(r"Problem with given class_path '([^']+)'")
_NESTED_ARG = re.compile(r"Given value: NestedArg\(key='([^']*)', val=(.*)\)\s*$", re.M)
_GIVEN_VALUE = re.compile(r"^\s*Given value: (.*)$", re.M)
_CLASS_NAME = re.compile(r"<class '(?:[\w.]+\.)?(\w+)'>")
_EXPECTED = re.compile(r"Expected an? (.+?)\. Got value: (.*)$")


class UsageError(Exception):
    """A command line that the zoo's own argparse subcommands cannot parse."""


def error_line(error: BaseException) -> str | None:
    """The one-line message of a bad-input ``error``, or ``None`` if ``error`` is a bug."""
    chain = _chain(error)
    for link in chain:
        if isinstance(link, USER_ERRORS):
            return _one_line(str(link))
    if isinstance(error, UsageError):
        return _one_line(str(error))
    if any(isinstance(link, argparse.ArgumentError) for link in chain):
        return _parse_error_line(chain)
    return None


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and its causes, outermost first."""
    chain: list[BaseException] = []
    while error is not None and all(error is not seen for seen in chain):
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def _parse_error_line(chain: list[BaseException]) -> str:
    """``<key>: <what is wrong>`` from jsonargparse's nested messages (outermost first)."""
    texts = [str(link) for link in chain]
    key = _dotted_key(texts)
    detail = _innermost_detail(texts)
    nested = next((m for text in texts if (m := _NESTED_ARG.search(text))), None)
    if nested and key:
        name, value = nested.groups()
        if name in ("class_path", "init_args"):
            key = key.removesuffix(".init_args")
        if not (key == name or key.endswith(f".{name}")):
            key = f"{key}.{name}"
        if "is not accepted" in detail:
            owners = [m.group(1) for text in texts for m in _CLASS_PATH.finditer(text)]
            owner = owners[-1] if owners else "this group"
            return _one_line(f"{key}: {owner} has no argument {name!r} (given {value})")
        return _one_line(f"{key}: {detail}")
    given = next((m.group(1) for text in texts if (m := _GIVEN_VALUE.search(text))), None)
    if given and "got " not in detail:
        detail = f"{detail} (given {given})"
    return _one_line(f"{key}: {detail}" if key else detail)


def _dotted_key(texts: list[str]) -> str | None:
    """The option's dotted name, from the ``Parser key`` of each nesting level.

    A top-level group that takes a class (``model``, ``data``, ``optimizer``) gets its
    ``init_args``, as the option is spelled on the command line.
    """
    parts: list[str] = []
    for text in texts:
        first = text.strip().splitlines()[0]
        if (match := _PARSER_KEY.match(first)) and (not parts or parts[-1] != match.group(1)):
            parts.append(match.group(1))
        elif first.startswith("Problem with given class_path") and len(parts) == 1:
            parts.append("init_args")
    return ".".join(parts) or None


def _innermost_detail(texts: list[str]) -> str:
    """The deepest message, without jsonargparse's ``Parser key`` prefix and union scaffolding."""
    for text in reversed(texts):
        line = _PARSER_KEY.sub("", text.strip().splitlines()[0]).strip(" :")
        if line and not line.startswith(("Does not validate", "Problem with given class_path")):
            return _tidy(line)
    return _tidy(texts[-1].strip().splitlines()[0])


def _tidy(line: str) -> str:
    """``Expected a <class 'int'>. Got value: abc`` -> ``expected int, got 'abc'``."""
    line = _CLASS_NAME.sub(r"\1", line)
    if match := _EXPECTED.search(line):
        line = f"expected {match.group(1)}, got {match.group(2)!r}"
    return line


def _one_line(text: str) -> str:
    return " ".join(text.split())

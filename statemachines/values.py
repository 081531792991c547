"""The one rule that makes a value storable as JSON, wherever a value enters an instance.

What an expression yields (`assign`, task `input`, `foreach` items and input), what a handler
returns, an instance's start data and an event's payload all go through `storable`, so what is
stored, what `simulate` shows and what the caller is handed back are the same value.
"""

from __future__ import annotations

import copy
import datetime
import math
from typing import Any

from .errors import ValueNotStorable

MAX_DEPTH = 64  # levels of nested lists and objects, as in definition documents
MAX_INTEGER_BITS = 14_000  # about 4,200 digits; Python reads back at most 4,300


_PLAIN = frozenset({bool, type(None)})  # stored as they are


class _Refused(Exception):
    """Raised inside the walk; the keys and indexes are collected on the way out."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.parts: list[str | int] = []


def storable(value: Any, path: str = "value") -> Any:
    """`value` as it is stored: plain JSON data (a new copy of every list and object), or
    ValueNotStorable naming where (`path` is the name of the whole, e.g. `context.due`,
    giving `context.due[2].at`) and what is wrong.

    The rule:
    - strings, booleans, None, integers (below 2**14000) and finite floats stay as they are;
      subclasses of them (enums) become the plain type; text holding a NUL character or a
      lone surrogate is refused (PostgreSQL cannot store either; SQLite would, so both
      databases are held to the one rule);
    - objects with string keys and lists keep their shape; tuples become lists;
    - a `datetime` becomes its ISO-8601 text (`now` gives '2026-01-01T00:00:00+00:00'; a naive
      one has no offset), a `date` or `time` its ISO text, a `timedelta` its seconds as a float;
    - refused: `nan` and infinities, sets, bytes, objects with a key that is not a string (so
      `{1: 'a', '1': 'b'}` is never collapsed to one key), anything else that is not JSON,
      and nesting of lists and objects deeper than MAX_DEPTH (64) levels.
    """
    try:
        return _convert(value, 0)
    except _Refused as exc:
        raise ValueNotStorable(_located(path, exc.parts), exc.reason) from None


def _convert(value: Any, depth: int) -> Any:
    kind = type(value)
    if kind is str:
        return _text(value)
    if kind is bool or value is None:
        return value
    if kind is int:
        if value.bit_length() > MAX_INTEGER_BITS:
            raise _Refused(f"is an integer of more than {MAX_INTEGER_BITS} bits")
        return value
    if kind is float:
        if not math.isfinite(value):
            raise _Refused(f"is the float {value!r}; JSON holds finite numbers only")
        return value
    if isinstance(value, dict | list | tuple):
        if depth >= MAX_DEPTH:
            raise _Refused(f"is nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            return _object(value, depth + 1)
        converted = []
        for index, item in enumerate(value):
            if type(item) in _PLAIN:  # no call for them
                converted.append(item)
                continue
            if type(item) is str:
                try:
                    converted.append(_text(item))
                except _Refused as exc:
                    exc.parts.append(index)
                    raise
                continue
            try:
                converted.append(_convert(item, depth + 1))
            except _Refused as exc:
                exc.parts.append(index)
                raise
        return converted
    return _scalar(value)


def _object(value: dict[Any, Any], depth: int) -> dict[str, Any]:
    converted: dict[str, Any] = {}
    for key, item in value.items():
        if type(key) is not str:
            if not isinstance(key, str):
                raise _Refused(
                    f"has the key {_short(repr(key))} of type {type(key).__name__}; "
                    "keys must be strings"
                )
            key = str.__str__(key)
        _text(key, "has a key that ")
        if type(item) in _PLAIN:
            converted[key] = item
            continue
        try:
            converted[key] = _text(item) if type(item) is str else _convert(item, depth)
        except _Refused as exc:
            exc.parts.append(key)
            raise
    return converted


def _text(value: str, what: str = "") -> str:
    """`value` itself, or refused when a database cannot store it as text."""
    if "\x00" in value:
        raise _Refused(f"{what}holds a NUL character, which the databases cannot store as text")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _Refused(f"{what}holds a lone surrogate, which is not UTF-8 text") from None
    return value


def _scalar(value: Any) -> Any:
    if isinstance(value, str):
        return _text(str.__str__(value))
    if isinstance(value, int):
        return _convert(int(value), 0)
    if isinstance(value, float):
        return _convert(float(value), 0)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, set | frozenset):
        raise _Refused(f"is a {type(value).__name__}, which JSON cannot hold (make it a list)")
    if isinstance(value, bytes | bytearray):
        raise _Refused(f"is {type(value).__name__}, which JSON cannot hold (decode it first)")
    raise _Refused(f"is of type {type(value).__name__}, which JSON cannot hold")


def _located(path: str, parts: list[str | int]) -> str:
    # Ten steps locate a value well enough; a message 64 levels long would not be read.
    steps = parts[::-1]
    for part in steps[:10]:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.isidentifier():
            path += f".{_short(part)}"
        else:
            path += f"[{_short(repr(part))}]"
    return path + ("…" if len(steps) > 10 else "")


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:39] + "…"


def copy_json(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts and lists of scalars); several times faster
    than `copy.deepcopy`, which matters because every operation copies the instance."""
    kind = type(value)
    if kind is dict:
        return {key: copy_json(item) for key, item in value.items()}
    if kind is list:
        return [copy_json(item) for item in value]
    if kind in (str, int, float, bool) or value is None:
        return value
    return copy.deepcopy(value)

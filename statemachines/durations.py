"""Durations of the definition language: `500ms`, `30s`, `1h30m`, `7d`, or ISO 8601 (`PT30S`).

Compact forms are read here; ISO 8601 forms are handed to pydantic's duration parser, imported
only when a definition spells one (pydantic takes longer to import than the rest of the
language, and `turnout validate` should start quickly).
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import TypeAdapter

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_COMPACT = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
MAX_DURATION = timedelta(days=3650)


def parse_duration(text: str | int | float) -> timedelta:
    """Return the timedelta that `text` spells; raise ValueError with a readable message."""
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a duration")
    if isinstance(text, int | float):
        # A bare number is ambiguous in a definition; ask for a unit.
        raise ValueError(f"duration {text!r} needs a unit, such as '{text}s' or '{text}m'")
    if not isinstance(text, str):
        raise ValueError(f"a duration is text such as '30s', not {type(text).__name__}")
    value = text.strip()
    if _COMPACT.match(value):
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(value))
        if seconds > MAX_DURATION.total_seconds():
            raise ValueError(f"duration {text!r} is longer than 10 years")
        result = timedelta(seconds=seconds)
    elif value[:1] in ("P", "p"):
        from pydantic import ValidationError

        try:
            result = _iso().validate_python(value.upper())
        except ValidationError:
            raise ValueError(f"{text!r} is not a valid ISO 8601 duration") from None
    else:
        raise ValueError(
            f"{text!r} is not a duration; write e.g. '500ms', '30s', '5m', '1h30m', '2d' or 'PT30S'"
        )
    if result <= timedelta(0):
        raise ValueError(f"duration {text!r} must be positive")
    if result > MAX_DURATION:
        raise ValueError(f"duration {text!r} is longer than 10 years")
    return result


@cache
def _iso() -> TypeAdapter[timedelta]:
    from pydantic import TypeAdapter

    return TypeAdapter(timedelta)


def format_duration(delta: timedelta) -> str:
    """The compact spelling of `delta` (`1h30m`, `500ms`)."""
    left = round(delta.total_seconds() * 1000)  # milliseconds
    if left == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)

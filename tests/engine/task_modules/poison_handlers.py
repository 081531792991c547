"""Task handlers for the poison property test, one per outcome, offered to `turnout worker`.

A definition picks an outcome by naming its task (`poison.datetime`, `poison.hang`, ...), so the
outcome is part of the generated definition and shows in a failing example.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

# Longer than any `timeout` the property test writes, and short enough to end by itself.
HANG_SECONDS = 1.5


class PoisonHandlerError(Exception):
    """What `poison.raise` raises; a traceback naming it is an expected, logged failure."""


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def _hang(value: Any) -> dict[str, Any]:
    time.sleep(HANG_SECONDS)
    return {"late": True}


def _raise(value: Any) -> Any:
    raise PoisonHandlerError(f"refusing {str(value)[:40]}")


HANDLERS = {
    "poison.json": lambda value: {"ok": True, "n": 3, "nested": [1, {"a": None}]},
    "poison.echo": lambda value: value,
    "poison.scalar": lambda value: 7,
    "poison.none": lambda value: None,
    "poison.tuple": lambda value: (1, 2),
    "poison.set": lambda value: {1, 2},
    "poison.datetime": lambda value: datetime.now(UTC),
    "poison.nan": lambda value: {"x": float("nan"), "y": float("inf")},
    "poison.keys": lambda value: {1: "a", "1": "b"},
    "poison.deep": lambda value: _nested(900),
    "poison.bigint": lambda value: {"big": 10**400},
    "poison.object": lambda value: object(),
    "poison.huge": lambda value: "x" * 1_100_000,
    "poison.raise": _raise,
    "poison.hang": _hang,
}
OUTCOMES = sorted(HANDLERS)

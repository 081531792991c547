"""When a timer read from data is due: `after: {EXPR: ...}` gives a delay, `at: {EXPR: ...}`
an instant (moved by an offset, `at: {context.starts - 2d: ...}`), each evaluated when the
state is entered. A value that cannot be one is a `ValueError` whose message names the
timer, the expression and the value; the state then fails with `TimerError`.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from .durations import MAX_DURATION, parse_duration
from .errors import ExpressionError
from .expressions import NAMES, Expression

DATA_NAMES = frozenset({"context", "event", "result"})
# `EXPR - DURATION` or `EXPR + DURATION` at the end of an `at` key: a duration literal is no
# expression (`2d` does not parse), so the offset is split off before the expression is read.
_OFFSET = re.compile(r"^(?P<instant>.*\S)\s*(?P<sign>[-+])\s*(?P<duration>[0-9][0-9a-z.]*|P\w+)$")
_ZERO = re.compile(r"^\s*(?:0+(?:\.0+)?(?:ms|s|m|h|d|w))+\s*$")
EXAMPLE_INSTANT = "2026-03-01T09:00:00Z"
_SHOWN = 80  # characters of a value quoted in a message


def split_offset(text: str) -> tuple[str, timedelta]:
    """An `at` key as (the instant's expression, the offset added to it): `context.starts -
    2d` gives ('context.starts', -2 days); a key with no duration at its end, (key, 0)."""
    match = _OFFSET.match(text)
    if match is not None:
        try:
            offset = parse_duration(match["duration"])
        except ValueError:
            return text, timedelta(0)
        return match["instant"], -offset if match["sign"] == "-" else offset
    return text, timedelta(0)


def names_read(expression: Expression) -> set[str]:
    """The names `expression` reads (`context`, `event`, `result`, `now`), functions aside."""
    tree = ast.parse(expression.text.strip(), mode="eval")
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)} & set(NAMES)


def delay_of(value: Any) -> timedelta:
    """A delay given as data: a number of seconds, or a duration's text (`90m`, `PT30S`); zero
    or less is no delay. ValueError saying why for anything else."""
    if isinstance(value, bool) or value is None:
        raise ValueError("is no number of seconds nor a duration")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("is no finite number of seconds")
        if value > MAX_DURATION.total_seconds():
            raise ValueError("is longer than 10 years")
        return timedelta(seconds=max(value, 0))
    if isinstance(value, str):
        if _ZERO.match(value):
            return timedelta(0)
        try:
            return parse_duration(value)
        except ValueError as exc:
            if "10 years" in str(exc):
                raise ValueError("is longer than 10 years") from None
            raise ValueError("is no duration such as '90m', '2d' or 'PT30S'") from None
    raise ValueError("is no number of seconds nor a duration")


def instant_of(value: Any) -> datetime:
    """An instant given as data: an ISO-8601 timestamp's text (`2026-03-01T09:00:00Z`; one
    without an offset is UTC, a date alone its midnight UTC) or a datetime, in UTC."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"is no ISO-8601 timestamp such as {EXAMPLE_INSTANT!r}") from None
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise ValueError(f"is no ISO-8601 timestamp such as {EXAMPLE_INSTANT!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def due_at(
    name: str,
    kind: str,
    expression: Expression,
    offset: timedelta,
    names: Mapping[str, Any],
    now: datetime,
) -> datetime:
    """When the timer `name` entered at `now` is due: `now` plus the delay `expression` gives
    (kind 'after'), or the instant it gives plus `offset` (kind 'at'); `now` itself when that
    is past, at most 10 years ahead. ValueError naming the timer and the value otherwise."""
    text = expression.text.strip()
    try:
        value = expression.evaluate(names)
    except ExpressionError as exc:
        raise ValueError(f"timer {name!r}: {exc}") from None
    if value is None:
        raise ValueError(f"timer {name!r}: {text} has no value")
    try:
        if kind == "after":
            due = now + delay_of(value)
        else:
            instant = instant_of(value)
            try:
                due = max(instant + offset, now)
            except OverflowError:  # past the calendar's ends: long past, or never
                due = now if offset < timedelta(0) else datetime.max.replace(tzinfo=UTC)
            if due - now > MAX_DURATION:
                raise ValueError("is more than 10 years away")
    except ValueError as exc:
        raise ValueError(f"timer {name!r}: {text} gave {_shown(value)}, which {exc}") from None
    return due


def _shown(value: Any) -> str:
    text = repr(value.isoformat() if isinstance(value, date) else value)
    return text if len(text) <= _SHOWN else f"{text[: _SHOWN - 3]}..."

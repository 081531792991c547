"""`turnout send --file events.jsonl`: one event per line, sent with `Engine.send_many`.

A line is a JSON object: `{"id": ID, "event": NAME}` or `{"definition": NAME, "key": KEY,
"event": NAME}`, with `data` and `idempotency_key` optional. A line that is not such an
object is reported with its number and not sent; every other line is. The exit status:
0 when every line's event has been taken (applied now, or before under its idempotency key),
2 when a line was malformed, else 1 when an event was rejected, for no instance or invalid.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from engine import Engine, EventOutcome
from statemachines.errors import UsageError

from .common import out, print_json, print_table

FIELDS = {"id", "definition", "key", "event", "data", "idempotency_key"}
MALFORMED = "malformed"


@dataclass
class Line:
    """A line of the file: its number, and the event it sends or why it sends none."""

    number: int
    event: tuple[Any, ...] | None = None
    problem: str = ""


def read_lines(path: Path) -> list[Line]:
    """Every non-blank line of `path`, each read on its own: one bad line spoils no other."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise UsageError(f"cannot read {path}: {reason}") from None
    return [_line(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


def _line(number: int, text: str) -> Line:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return Line(number, problem=f"not JSON: {exc.msg} at column {exc.colno}")
    if not isinstance(value, dict):
        return Line(number, problem="a line must be a JSON object")
    unknown = sorted(set(value) - FIELDS)
    if unknown:
        return Line(
            number,
            problem=f"unknown field(s) {', '.join(unknown)}; known: id, "
            "definition, key, event, data, idempotency_key",
        )
    if not isinstance(value.get("event"), str) or not value["event"]:
        return Line(number, problem='"event" must be the name of an event')
    if ("id" in value) == ("key" in value or "definition" in value):
        return Line(number, problem='give "id", or "definition" and "key", not both')
    if "id" in value:
        target: Any = value["id"]
    elif "definition" in value and "key" in value:
        target = (value["definition"], value["key"])
    else:
        return Line(number, problem='"key" needs "definition", and "definition" needs "key"')
    event = (target, value["event"], value.get("data"), value.get("idempotency_key"))
    return Line(number, event)


def send_file(engine: Engine, path: Path, json_output: bool) -> None:
    """Send every well-formed line of `path`, print an outcome per line, exit as the module
    says."""
    lines = read_lines(path)
    sendable = [line for line in lines if line.event is not None]
    outcomes = engine.send_many([line.event for line in sendable if line.event is not None])
    by_number = {line.number: outcome for line, outcome in zip(sendable, outcomes, strict=True)}
    reported = [(line, by_number.get(line.number)) for line in lines]
    if json_output:
        print_json(
            {
                "sent": len(sendable),
                "lines": [_json_of(line, outcome) for line, outcome in reported],
            }
        )
    else:
        _table(reported)
    if any(line.problem for line in lines):
        raise typer.Exit(2)
    if not all(outcome.ok for outcome in outcomes):
        raise typer.Exit(1)


def _json_of(line: Line, outcome: EventOutcome | None) -> dict[str, Any]:
    if outcome is None:
        return {"line": line.number, "outcome": MALFORMED, "message": line.problem}
    found = outcome.to_json()
    del found["index"]
    return {"line": line.number, **found}


def _table(reported: list[tuple[Line, EventOutcome | None]]) -> None:
    table = Table("line", "outcome", "instance", "state", "detail")
    for line, outcome in reported:
        if outcome is None:
            table.add_row(str(line.number), MALFORMED, "", "", line.problem)
            continue
        instance = outcome.instance
        detail = outcome.message
        if outcome.outcome == EventOutcome.REJECTED:
            detail = "accepts: " + (", ".join(outcome.allowed) or "(no events)")
        table.add_row(
            str(line.number),
            outcome.outcome,
            instance.id if instance else "",
            instance.state if instance else "",
            detail,
        )
    print_table(table)
    kinds = Counter(outcome.outcome if outcome else MALFORMED for _, outcome in reported)
    out.print(", ".join(f"{count} {kind}" for kind, count in kinds.items()), markup=False)

"""`turnout watch ID`: follow one instance live, printing each history entry as it commits
and each change of state or status, until the instance finishes (or Ctrl-C).

It reads the instance's history after each change the engine is told of: at once on
PostgreSQL (LISTEN/NOTIFY wakes it), every --interval seconds on SQLite.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import (
    DbOption,
    JsonOption,
    OutputOption,
    app,
    open_engine,
    output_format,
    reports_errors,
    say,
    usage_error,
)

if TYPE_CHECKING:
    from engine import Engine, HistoryEntry, Instance

FINISHED = ("succeeded", "failed", "cancelled")
TIME_FORMAT = "%H:%M:%S"


@app.command()
@reports_errors
def watch(
    instance_id: Annotated[str, typer.Argument(help="Instance id (or a unique prefix of it).")],
    interval: Annotated[
        float,
        typer.Option(
            "--interval",
            min=0.05,
            max=60,
            help="Seconds between two reads on SQLite (PostgreSQL wakes it at each change).",
        ),
    ] = 0.5,
    db: DbOption = None,
    json_output: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """Follow an instance live: print its history so far, then each entry as it commits,
    until it finishes (exit 0) or Ctrl-C. With --json (or -o json), one JSON object per line:
    each history entry with the instance's state and status after it."""
    chosen = output_format(json_output, output)
    if chosen == "yaml":
        raise usage_error("watch prints a line per entry: give -o table or -o json")
    with open_engine(db) as engine:
        found = engine.resolve_id(instance_id)
        try:
            _follow(engine, found, chosen == "json", interval)
        except KeyboardInterrupt:  # how a watch of an unfinished instance is meant to end
            return


def _follow(engine: Engine, instance_id: str, as_json: bool, interval: float) -> None:
    instance = engine.get(instance_id)
    if not as_json:
        key = f"  key={instance.key}" if instance.key else ""
        say(f"{instance.id}  {instance.definition} v{instance.version}{key}")
    seen, last = 0, (instance.state, instance.status)
    while True:
        entries = [entry for entry in engine.history(instance_id) if entry.seq > seen]
        instance = engine.get(instance_id)
        for entry in entries:
            _print_entry(entry, instance, as_json)
            seen = entry.seq
        now = (instance.state, instance.status)
        if not as_json and (entries or now != last):
            say(f"   state: {instance.state}   status: {instance.status}")
        last = now
        if instance.status in FINISHED:
            if not as_json:
                say(f"finished: {instance.status} in {instance.state}")
            return
        engine.wait_for_changes(interval)


def _print_entry(entry: HistoryEntry, instance: Instance, as_json: bool) -> None:
    if as_json:
        line: dict[str, Any] = entry.to_json() | {
            "state": instance.state,
            "status": instance.status,
        }
        sys.stdout.write(json.dumps(line, default=str) + "\n")
        sys.stdout.flush()
        return
    moved = f"{entry.from_state or ''} -> {entry.to_state}" if entry.to_state else ""
    data = "" if entry.data is None else json.dumps(entry.data, default=str)
    parts = [f"#{entry.seq}", entry.at.strftime(TIME_FORMAT), entry.kind, entry.event or "", moved]
    say("  ".join(part for part in (*parts, data) if part))

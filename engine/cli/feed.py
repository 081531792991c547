"""`turnout changes`: the change feed on the command line, read from a position, or followed
as changes commit."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from .common import DbOption, JsonOption, app, open_engine, print_table, reports_errors

if TYPE_CHECKING:
    from engine import Change

FOLLOW_WAIT_SECONDS = 1.0


@app.command()
@reports_errors
def changes(
    after: Annotated[int, typer.Option("--after", min=0, help="Start after this position.")] = 0,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 100,
    definition: Annotated[
        list[str] | None, typer.Option("--definition", help="Only this definition's (repeatable).")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Go on printing changes as they commit.")
    ] = False,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Print the change feed: every committed step of every instance, in commit order.

    With --json, one JSON object per line. With --follow, wait for new changes until
    interrupted (Ctrl-C).
    """
    with open_engine(db) as engine:
        try:
            while True:
                found = engine.changes(after, limit, definitions=definition or None)
                if found:
                    _print(found, json_output)
                    after = found[-1].position
                if not follow:
                    return
                if len(found) < limit:
                    engine.wait_for_changes(FOLLOW_WAIT_SECONDS)
        except KeyboardInterrupt:  # how --follow is meant to end
            return


def _print(found: list[Change], json_output: bool) -> None:
    from rich.table import Column, Table

    if json_output:
        for change in found:
            sys.stdout.write(json.dumps(change.to_json()) + "\n")
        sys.stdout.flush()
        return
    table = Table("#", Column("id", no_wrap=True), "definition", "event", "to", "status")
    for change in found:
        table.add_row(
            str(change.position),
            change.id,
            change.definition,
            change.event or change.kind,
            change.to_state,
            change.status,
        )
    print_table(table)

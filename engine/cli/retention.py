"""`turnout purge`: delete finished instances (with their history, tasks, timers and
idempotency keys) that finished before a time or longer ago than an age, in batches,
optionally archiving them as JSON lines first (see engine/retention.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from .common import (
    FINISHED_STATUSES,
    MAX_PURGE_BATCH,
    DbOption,
    JsonOption,
    app,
    note,
    open_engine,
    print_json,
    print_table,
    reports_errors,
    usage_error,
)


@app.command()
@reports_errors
def purge(
    before: Annotated[
        str,
        typer.Option(
            "--before",
            help="An age (30d, 12h, PT36H): finished longer ago than that; or an ISO date or "
            "time (UTC unless it says): finished before then.",
        ),
    ],
    definition: Annotated[
        str | None, typer.Option("--definition", help="Only instances of this definition.")
    ] = None,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            help=f"Only instances with this status ({', '.join(FINISHED_STATUSES)}); "
            "repeat for several. Default: all three.",
        ),
    ] = None,
    archive: Annotated[
        Path | None,
        typer.Option(
            "--archive", help="Append each instance with its history here (JSON lines) first."
        ),
    ] = None,
    batch: Annotated[
        int,
        typer.Option("--batch", min=1, max=MAX_PURGE_BATCH, help="Instances per transaction."),
    ] = 500,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Delete nothing; count what would go.")
    ] = False,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Delete finished instances and their rows in batches; running ones are never touched."""
    cutoff = _cutoff(before)
    with open_engine(db) as engine:
        result = engine.purge(
            finished_before=cutoff,
            definition=definition,
            status=status or None,
            batch=batch,
            archive=archive,
            dry_run=dry_run,
        )
    if json_output:
        print_json(result.to_json())
        return
    from rich.table import Table

    table = Table("rows", "count", title="would be purged" if dry_run else "purged")
    for name in ("instances", "history", "tasks", "timers", "idempotency"):
        table.add_row(name, str(getattr(result, name)))
    print_table(table)
    if archive is not None and not dry_run:
        note(f"archived {result.instances} instances to {archive}")


def _cutoff(text: str) -> datetime | timedelta:
    """--before as an age (a duration) or an aware datetime."""
    try:
        from statemachines.durations import parse_duration

        return parse_duration(text)
    except ValueError as duration_problem:
        try:
            found = datetime.fromisoformat(text)
        except ValueError:
            raise usage_error(
                f"--before {text!r} is neither an age ({duration_problem}) nor an ISO date "
                "or time such as 2026-01-31 or 2026-01-31T12:00:00Z"
            ) from None
    return found if found.tzinfo is not None else found.replace(tzinfo=UTC)

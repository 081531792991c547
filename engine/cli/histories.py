"""The commands about recorded histories as files: `export` writes a definition's histories as
JSON lines, `replay` checks such a file against a definition file (a changed definition
against what its instances did), with exit statuses a CI job can act on.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from .common import (
    DbOption,
    JsonOption,
    answer,
    app,
    note,
    open_engine,
    reports_errors,
    usage_error,
)


@app.command()
@reports_errors
def export(
    name: Annotated[str, typer.Argument(help="Definition name.")],
    version: Annotated[
        int | None, typer.Option("--version", help="Only instances of this version.")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="Only instances with this status: running, compensating, succeeded, failed "
            "or cancelled.",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="Only instances started at or after this ISO date or time (UTC)."
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here, not to stdout.")
    ] = None,
    db: DbOption = None,
) -> None:
    """Write the histories of a definition's instances as JSON lines (what `replay` reads)."""
    started = _since(since)
    with open_engine(db) as engine:
        if output is None:
            exported = engine.export_histories(
                name, sys.stdout, version=version, status=status, since=started
            )
            sys.stdout.flush()
        else:
            # Written beside the file and moved over it once complete: an export that stops
            # halfway leaves no file a check would take for the whole.
            partial = output.with_name(output.name + ".partial")
            try:
                with partial.open("w", encoding="utf-8") as file:
                    exported = engine.export_histories(
                        name, file, version=version, status=status, since=started
                    )
                partial.replace(output)
            finally:
                partial.unlink(missing_ok=True)
    count = exported.instances
    where = f" to {output}" if output is not None else ""
    histories = f"{count} histor{'y' if count == 1 else 'ies'}"
    note(f"exported {histories} of {name} ({exported.entries} entries){where}")


def _since(text: str | None) -> datetime | None:
    """--since as an aware datetime: an ISO date or date and time, UTC unless it says."""
    if text is None:
        return None
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        raise usage_error(f"--since {text!r} is not an ISO date or time (2026-01-31)") from None
    return found if found.tzinfo is not None else found.replace(tzinfo=UTC)


@app.command()
@reports_errors
def replay(
    definition: Annotated[Path, typer.Argument(help="Definition file (YAML).")],
    histories: Annotated[
        Path,
        typer.Argument(
            help="JSON-lines file of `turnout export`, a `turnout history ID --json` file, "
            "a directory of them, or - for standard input."
        ),
    ],
    json_output: JsonOption = False,
) -> None:
    """Replay recorded histories through a definition; list those that would diverge.

    Exit status: 0 every history replays, 1 one diverges, 2 bad usage or a bad file.
    """
    import statemachines
    from statemachines.errors import TurnoutError

    try:
        given = sys.stdin if str(histories) == "-" else histories
        report = statemachines.check_histories(definition, given)
    except (TurnoutError, OSError) as exc:
        for line in answer(exc).lines(exc):
            note(line)
        raise typer.Exit(2) from None
    if json_output:
        sys.stdout.write(json.dumps(report.to_json(), indent=2, default=str) + "\n")
    else:
        sys.stdout.write(report.summary() + "\n")
    if not report.ok:
        raise typer.Exit(1)

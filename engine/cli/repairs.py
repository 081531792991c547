"""An operator's repairs on the command line: `redrive` (one failed instance, or every failed
instance of a definition a filter selects, `--dry-run` listing them) and `reset` (move an
instance to a state by hand, its context patched, with a reason).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import (
    DbOption,
    JsonOption,
    app,
    open_engine,
    parse_json,
    print_json,
    print_table,
    reports_errors,
    say,
    usage_error,
)

if TYPE_CHECKING:
    from engine import Instance, RedriveOutcome

ReasonOption = Annotated[
    str | None, typer.Option("--reason", help="Why: kept in the instance's history.")
]


@app.command()
@reports_errors
def redrive(
    instance_id: Annotated[str | None, typer.Argument(help="A failed instance's id.")] = None,
    reason: ReasonOption = None,
    definition: Annotated[
        str | None,
        typer.Option("--definition", help="Redrive the failed instances of this definition."),
    ] = None,
    version: Annotated[
        int | None, typer.Option("--version", help="Only those of this version.")
    ] = None,
    state: Annotated[
        str | None,
        typer.Option("--state", help="Only those that failed in (or ended in) this state."),
    ] = None,
    error_type: Annotated[
        str | None, typer.Option("--error-type", help="Only those whose error has this type.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be redriven; change nothing.")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 1000,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Restart a failed instance where it failed (or, with --definition, many)."""
    if (instance_id is None) == (definition is None):
        raise usage_error("usage: turnout redrive ID, or turnout redrive --definition NAME")
    with open_engine(db) as engine:
        if instance_id is not None:
            found = engine.resolve_id(instance_id)
            _show(engine.redrive(found, reason), "redriven", json_output)
            return
        assert definition is not None
        outcomes = engine.redrive_many(
            definition,
            version=version,
            state=state,
            error_type=error_type,
            dry_run=dry_run,
            reason=reason,
            limit=limit,
        )
    _report(outcomes, dry_run, json_output)


def _report(outcomes: list[RedriveOutcome], dry_run: bool, json_output: bool) -> None:
    """Print each instance's outcome; exit 1 when a redrive (not a dry run) was refused."""
    if json_output:
        print_json([outcome.to_json() for outcome in outcomes])
    else:
        from rich.table import Table

        table = Table(title=_title(outcomes))
        table.add_column("id", no_wrap=True, min_width=32)  # whole, to be copied
        for name in ("outcome", "failed in", "error", "why not"):
            table.add_column(name)
        for outcome in outcomes:
            row = (outcome.outcome, outcome.state, outcome.error_type, outcome.message)
            table.add_row(outcome.instance_id, *row)
        print_table(table)
    refused = sum(outcome.outcome == "refused" for outcome in outcomes)
    if refused and not dry_run:
        raise typer.Exit(1)


def _title(outcomes: list[RedriveOutcome]) -> str:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.outcome] = counts.get(outcome.outcome, 0) + 1
    parts = [f"{count} {outcome}" for outcome, count in counts.items()]
    return ", ".join(parts) if parts else "no failed instance selected"


@app.command()
@reports_errors
def reset(
    instance_id: Annotated[str, typer.Argument(help="Instance id.")],
    to_state: Annotated[str, typer.Argument(help="The full path of the state to move it to.")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why (required): kept in the instance's history.")
    ],
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="KEY=VALUE to set in the context (VALUE as JSON, else text)."),
    ] = None,
    patch: Annotated[
        str | None, typer.Option("--patch", help="A JSON object merged into the context.")
    ] = None,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Move an instance by hand to a state, its work dropped and its context patched."""
    changes = _patch(patch, sets or [])
    with open_engine(db) as engine:
        found = engine.resolve_id(instance_id)
        instance = engine.reset(found, to_state, changes or None, reason=reason)
    _show(instance, f"reset to {to_state}", json_output)


def _patch(patch: str | None, sets: list[str]) -> dict[str, Any]:
    """--patch's object, then each --set KEY=VALUE over it (VALUE read as JSON when it is)."""
    changes = parse_json(patch, "--patch") if patch is not None else {}
    if not isinstance(changes, dict):
        raise usage_error("--patch must be a JSON object")
    for item in sets:
        key, equals, text = item.partition("=")
        if not equals or not key:
            raise usage_error(f"--set takes KEY=VALUE, not {item!r}")
        try:
            changes[key] = parse_json(text, f"--set {key}")
        except Exception:  # not JSON: the text itself
            changes[key] = text
    return changes


def _show(instance: Instance, what: str, json_output: bool) -> None:
    if json_output:
        print_json(instance.to_json())
        return
    say(
        f"{instance.id} {what}: state {instance.state}, status {instance.status}, "
        f"revision {instance.revision}"
    )

"""Schedules on the command line: `turnout schedule add|list|show|pause|resume|delete`.

A schedule starts instances of a definition on a cron expression (in a time zone) or every
interval; the workers (`turnout work`) start them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from .common import (
    CATCH_UPS,
    OVERLAPS,
    DbOption,
    JsonOption,
    app,
    note,
    open_engine,
    out,
    parse_object,
    print_json,
    print_table,
    reports_errors,
    usage_error,
)

if TYPE_CHECKING:
    from engine.schedule_times import Schedule

schedule_app = typer.Typer(
    name="schedule",
    help="Schedules: start instances on a cron expression or a fixed interval.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(schedule_app)

NameArgument = Annotated[str, typer.Argument(help="The schedule's name.")]


def _when(moment: object) -> str:
    return "" if moment is None else str(moment)


def _show(schedule: Schedule, json_output: bool) -> None:
    if json_output:
        print_json(schedule.to_json())
        return
    state = "paused" if schedule.paused else "next run"
    when = schedule.next_run_local.isoformat(timespec="seconds")
    note(
        f"schedule {schedule.name}: {schedule.definition} {schedule.expression} "
        f"({schedule.timezone}); {state} {when}"
    )


@schedule_app.command("add")
@reports_errors
def add(
    name: NameArgument,
    definition: Annotated[
        str, typer.Option("--definition", help="The definition whose instances it starts.")
    ],
    cron: Annotated[
        str | None, typer.Option("--cron", help='A cron expression, e.g. "0 7 * * 1-5".')
    ] = None,
    every: Annotated[
        str | None, typer.Option("--every", help="An interval: seconds, or 30s, 10m, 1h30m, 1d.")
    ] = None,
    timezone: Annotated[
        str, typer.Option("--tz", help="The IANA time zone the cron expression is read in.")
    ] = "UTC",
    data: Annotated[
        str | None, typer.Option("--data", "-d", help="The JSON object each instance starts with.")
    ] = None,
    version: Annotated[
        int | None, typer.Option("--version", help="Start this version (default: the latest).")
    ] = None,
    overlap: Annotated[
        str,
        typer.Option(
            "--overlap", help=f"When the last instance is unfinished: {', '.join(OVERLAPS)}."
        ),
    ] = "skip",
    catch_up: Annotated[
        str,
        typer.Option("--catch-up", help=f"Ticks missed while down: {', '.join(CATCH_UPS)}."),
    ] = "last",
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Add a schedule: give --cron or --every."""
    if (cron is None) == (every is None):
        raise usage_error("give --cron or --every (one of them)")
    from engine.schedule_times import check_choice

    check_choice(overlap, OVERLAPS, "--overlap")
    check_choice(catch_up, CATCH_UPS, "--catch-up")
    with open_engine(db) as engine:
        schedule = engine.add_schedule(
            name,
            definition,
            cron=cron,
            every=every,
            timezone=timezone,
            data=parse_object(data),
            version=version,
            overlap=overlap,
            catch_up=catch_up,
        )
    _show(schedule, json_output)


@schedule_app.command("list")
@reports_errors
def list_schedules(db: DbOption = None, json_output: JsonOption = False) -> None:
    """List the schedules, with each one's next run in its own time zone."""
    with open_engine(db) as engine:
        found = engine.schedules()
    if json_output:
        print_json([schedule.to_json() for schedule in found])
        return
    from rich.table import Table

    table = Table(
        "name",
        "definition",
        "when",
        "time zone",
        "next run",
        "last run",
        "state",
        title="schedules",
    )
    for schedule in found:
        last = schedule.last_tick_at
        table.add_row(
            schedule.name,
            schedule.definition,
            schedule.expression,
            schedule.timezone,
            schedule.next_run_local.isoformat(timespec="seconds"),
            "" if last is None else last.isoformat(timespec="seconds"),
            "paused" if schedule.paused else ("failing" if schedule.last_error else "active"),
        )
    print_table(table)


@schedule_app.command("show")
@reports_errors
def show(name: NameArgument, db: DbOption = None, json_output: JsonOption = False) -> None:
    """Show one schedule."""
    with open_engine(db) as engine:
        schedule = engine.schedule(name)
    if json_output:
        print_json(schedule.to_json())
        return
    for field, value in schedule.to_json().items():
        out.print(f"{field}: {_when(value)}", highlight=False)


@schedule_app.command("pause")
@reports_errors
def pause(name: NameArgument, db: DbOption = None, json_output: JsonOption = False) -> None:
    """Pause a schedule: no instance is started until it is resumed."""
    with open_engine(db) as engine:
        _show(engine.pause_schedule(name), json_output)


@schedule_app.command("resume")
@reports_errors
def resume(name: NameArgument, db: DbOption = None, json_output: JsonOption = False) -> None:
    """Resume a paused schedule from its next tick (the ticks passed meanwhile are skipped)."""
    with open_engine(db) as engine:
        _show(engine.resume_schedule(name), json_output)


@schedule_app.command("delete")
@reports_errors
def delete(name: NameArgument, db: DbOption = None) -> None:
    """Delete a schedule; the instances it started stay."""
    with open_engine(db) as engine:
        engine.delete_schedule(name)
    note(f"schedule {name} deleted")

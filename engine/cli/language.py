"""`turnout validate`, `simulate` and `schema` as click commands, which `main` runs without
building the typer app: typer converts each parameter with pydantic, whose import alone takes
longer than checking a definition. They print and answer errors as every command does
(`output`); `turnout --help` lists them through `definitions`, which passes their arguments on.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from .language_help import LANGUAGE_COMMANDS
from .output import (
    answered,
    did_you_mean,
    note,
    out,
    parse_json,
    parse_object,
    print_json,
    print_table,
    say,
    usage_error,
)

if TYPE_CHECKING:
    import statemachines

Command = TypeVar("Command", bound=Callable[..., Any])
JSON_HELP = "Print JSON instead of tables (as -o json)."


def reports_errors(command: Command) -> Command:
    """As `common.reports_errors`: turnout's exceptions (an unreadable file, Ctrl-C) become
    lines on stderr and the exit status of SPEC 5, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (Exception, KeyboardInterrupt) as exc:
            status = answered(exc)
            if status is None:
                raise
            raise click.exceptions.Exit(status) from None

    return wrapper  # type: ignore[return-value]


@click.command(help=LANGUAGE_COMMANDS["validate"])
@click.argument(
    "files",
    nargs=-1,
    required=True,
    type=click.Path(path_type=Path),
    help="Definition files to check.",
)
@click.option("--json", "json_output", is_flag=True, help=JSON_HELP)
@reports_errors
def validate(files: tuple[Path, ...], json_output: bool) -> None:
    import statemachines
    from statemachines.errors import DefinitionError

    report, failed = [], False
    for path in files:
        try:
            definition = statemachines.load(path)
        except DefinitionError as exc:
            failed = True
            problems = [_problem_json(problem) for problem in exc.problems]
            report.append({"file": str(path), "ok": False, "problems": problems})
            if not json_output:
                for problem in exc.problems:
                    note(str(problem))
            continue
        warnings = list(definition.warnings)
        report.append(
            {"file": str(path), "ok": True, "name": definition.name, "warnings": warnings}
        )
        if not json_output:
            for warning in warnings:
                note(f"warning: {warning}")
            say(f"{path}: ok ({definition.name}, {len(list(definition.walk()))} states)")
    if json_output:
        print_json(report)
    if failed:
        raise click.exceptions.Exit(2)


def _problem_json(problem: statemachines.Problem) -> dict[str, Any]:
    return {
        "file": problem.file,
        "line": problem.line,
        "column": problem.column,
        "message": problem.message,
    }


@click.command(help=LANGUAGE_COMMANDS["simulate"])
@click.argument("file", type=click.Path(path_type=Path), help="Definition file.")
@click.option(
    "--event",
    "-e",
    multiple=True,
    metavar="EVENT",
    help="An event to send, in order: NAME or NAME=JSON; after:2d fires a timer "
    "(after:EXPR or at:EXPR one read from data).",
)
@click.option(
    "--result",
    "-r",
    multiple=True,
    metavar="STATE=JSON",
    help="A task result: STATE=JSON (or TASK=JSON).",
)
@click.option("--fail", multiple=True, metavar="STATE", help="A state (or task) whose task fails.")
@click.option("--data", "-d", metavar="JSON", help="Start data, JSON (as start -d).")
@click.option("--json", "json_output", is_flag=True, help=JSON_HELP)
@reports_errors
def simulate(
    file: Path,
    event: tuple[str, ...],
    result: tuple[str, ...],
    fail: tuple[str, ...],
    data: str | None,
    json_output: bool,
) -> None:
    import statemachines

    definition = statemachines.load(file)
    run = statemachines.simulate(
        definition,
        _events(event),
        data=parse_object(data),
        results=_results(result, fail),
        strict=False,
    )
    if json_output:
        print_json(_run_json(run))
    else:
        from rich.table import Table

        table = Table("#", "event", "from", "to", title=f"{definition.name}: simulated path")
        for number, (step_event, source, target) in enumerate(run.path, 1):
            table.add_row(str(number), step_event or "", source or "(start)", target or "")
        print_table(table)
        for rejected in run.rejected:
            note(f"rejected: {rejected}{did_you_mean(rejected.event, rejected.allowed)}")
        out.print(f"status: {run.status}   state: {run.state}")
        if run.error is not None:
            error = run.error
            say(f"failed with {error['type']}: {error['message']} (in {error['state']})")
        out.print_json(json.dumps(run.context, default=str))
    if run.rejected:
        raise click.exceptions.Exit(1)


def _events(options: tuple[str, ...]) -> list[str | tuple[str, Any]]:
    """The --event options in order: a name alone, or (name, data) for NAME=JSON."""
    events: list[str | tuple[str, Any]] = []
    for item in options:
        name, sep, payload = item.partition("=")
        events.append((name, parse_json(payload, f"--event {name}")) if sep else name)
    return events


def _results(options: tuple[str, ...], failing: tuple[str, ...]) -> dict[str, Any]:
    """The task results by state (or task): each --result STATE=JSON, and a Failure for
    each --fail."""
    import statemachines

    results: dict[str, Any] = {}
    for item in options:
        name, sep, value = item.partition("=")
        if not sep:
            raise usage_error(f"--result {item!r} must be STATE=JSON")
        results[name] = parse_json(value, f"--result {name}")
    for name in failing:
        results[name] = statemachines.Failure(f"{name} failed (simulated)")
    return results


def _run_json(run: statemachines.Run) -> dict[str, Any]:
    return {
        "state": run.state,
        "status": run.status,
        "context": run.context,
        "active": run.active,
        "path": [
            {"event": event, "from": source, "to": target} for event, source, target in run.path
        ],
        "rejected": [
            {"event": rejected.event, "state": rejected.state, "allowed": rejected.allowed}
            for rejected in run.rejected
        ],
        "error": run.error,
    }


@click.command(help=LANGUAGE_COMMANDS["schema"])
@reports_errors
def schema() -> None:
    import statemachines

    print_json(statemachines.json_schema())


COMMANDS = {"validate": validate, "simulate": simulate, "schema": schema}


def run(name: str, args: list[str]) -> NoReturn:
    """`turnout NAME ARGS...` for one of COMMANDS: it exits with the command's status."""
    COMMANDS[name].main(args, prog_name=f"turnout {name}")
    raise SystemExit(0)  # main() exits itself; this is for the type checker

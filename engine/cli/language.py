"""`turnout validate`, `simulate` and `schema` as click commands, which `main` runs without
building the typer app: typer converts each parameter with pydantic, whose import alone takes
longer than checking a definition. They print and answer errors as every command does
(`output`); `turnout --help` lists them through `definitions`, which passes their arguments on.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .language_help import LANGUAGE_COMMANDS
from .output import (
    did_you_mean,
    note,
    out,
    parse_json,
    parse_object,
    print_json,
    print_table,
    reporting_errors,
    say,
    usage_error,
)

if TYPE_CHECKING:
    import statemachines

JSON_HELP = "Print JSON instead of tables (as -o json)."


# As `common.reports_errors`, with click's exit.
reports_errors = reporting_errors(click.exceptions.Exit)


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
        _print_run(definition.name, run)
    if run.rejected:
        raise click.exceptions.Exit(1)


def _print_run(name: str, run: statemachines.Run) -> None:
    """The path as a table, the rejected events (on stderr), the status and the context. On
    a terminal rich draws them; into a pipe or a file they are written as rich would write
    them there (rich takes longer to import than the simulation takes), unless something in
    them is drawn differently by rich (see `plain_table`)."""
    title = f"{name}: simulated path"
    header = ("#", "event", "from", "to")
    rows = [
        (str(number), step_event or "", source or "(start)", target or "")
        for number, (step_event, source, target) in enumerate(run.path, 1)
    ]
    status = f"status: {run.status}   state: {run.state}"
    table = None if _styled() or not _plain(status, _width()) else plain_table(title, header, rows)
    if table is None:
        from rich.table import Table

        drawn = Table(*header, title=title)
        for row in rows:
            drawn.add_row(*row)
        print_table(drawn)
    else:
        sys.stdout.write("".join(line + "\n" for line in table))
    for rejected in run.rejected:
        note(f"rejected: {rejected}{did_you_mean(rejected.event, rejected.allowed)}")
    if table is None:
        out.print(status)
    else:
        say(status)
    if run.error is not None:
        error = run.error
        say(f"failed with {error['type']}: {error['message']} (in {error['state']})")
    context = json.dumps(run.context, default=str)
    if table is None:
        out.print_json(context)
    else:
        say(json.dumps(json.loads(context), indent=2, ensure_ascii=False))


def _styled() -> bool:
    """Whether rich would write colours and styles on stdout: a terminal, or one forced."""
    forced = os.environ.get("FORCE_COLOR") or os.environ.get("TTY_COMPATIBLE")
    return bool(forced) or sys.stdout.isatty()


def _width() -> int:
    """The width rich gives a console that is not a terminal: COLUMNS, else 80."""
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() else 80


def _plain(text: str, width: int) -> bool:
    """Whether rich writes `text` as it is on a console `width` wide that is not a terminal:
    printable ASCII (one column a character), no markup, no wrapping."""
    return text.isascii() and text.isprintable() and "[" not in text and len(text) <= width


def plain_table(
    title: str, header: tuple[str, ...], rows: Sequence[tuple[str, ...]]
) -> list[str] | None:
    """The lines of the table rich draws with these cells (`Table(*header, title=title)`, its
    heavy head and one space either side of a cell) on a console that is not a terminal and
    as wide as the table; None when rich could draw it otherwise (no rows, text that is not
    `_plain`, a title wider than the table)."""
    cells = [*header, *(cell for row in rows for cell in row)]
    widths = [max(len(row[column]) for row in (header, *rows)) for column in range(len(header))]
    total = sum(widths) + 3 * len(widths) + 1
    if not rows or not title or not all(_plain(text, total) for text in (title, *cells)):
        return None

    def rule(left: str, middle: str, right: str, fill: str) -> str:
        return left + middle.join(fill * (width + 2) for width in widths) + right

    def line(edge: str, texts: tuple[str, ...]) -> str:
        padded = (f" {text.ljust(width)} " for text, width in zip(texts, widths, strict=True))
        return edge + edge.join(padded) + edge

    left = (total - len(title)) // 2
    return [
        " " * left + title + " " * (total - len(title) - left),
        rule("┏", "┳", "┓", "━"),
        line("┃", header),
        rule("┡", "╇", "┩", "━"),
        *(line("│", row) for row in rows),
        rule("└", "┴", "┘", "─"),
    ]


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

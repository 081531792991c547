"""The `turnout` command line: typer commands over the Engine, tables for people, --json for tools.

Every TurnoutError becomes one line on stderr and an exit status (1 rejected, 2 bad input).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

import statemachines
from statemachines.errors import DefinitionError, InvalidInput, TurnoutError, UsageError

app = typer.Typer(
    name="turnout",
    help="turnout: state-machine workflows with durable instances and diagrams.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])
DbOption = Annotated[
    str | None,
    typer.Option("--db", envvar="TURNOUT_DB", help="Database URL (default sqlite:///turnout.db)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
USAGE_ERRORS = (DefinitionError, InvalidInput)
COMMAND_WAIT_SECONDS = 10


def exit_status(exc: TurnoutError) -> int:
    """2 for bad usage or invalid input, 1 for a rejected or failed operation."""
    return 2 if isinstance(exc, (*USAGE_ERRORS, UsageError)) else 1


def reports_errors(command: F) -> F:
    """Turn turnout's exceptions into one line on stderr and the exit status of SPEC 5."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except DefinitionError as exc:
            for problem in exc.problems:
                err.print(str(problem), markup=False, highlight=False)
            raise typer.Exit(2) from None
        except TurnoutError as exc:
            err.print(f"error: {exc}", markup=False, highlight=False)
            raise typer.Exit(exit_status(exc)) from None
        except OSError as exc:  # a file or directory the command could not read or write
            where = f" ({exc.filename})" if exc.filename else ""
            err.print(f"error: {exc.strerror or exc}{where}", markup=False, highlight=False)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def parse_json(text: str | None, what: str = "--data") -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc.msg} at column {exc.colno}") from None


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def open_engine(db: str | None, *, serving: bool = False) -> Any:
    """The Engine on `db`. A one-shot command waits at most COMMAND_WAIT_SECONDS for a lock
    another process holds on an SQLite file, then says so; a worker or server (`serving`)
    waits as long as the engine does by default."""
    from sqlalchemy.exc import ArgumentError

    from engine.engine import Engine

    try:
        return Engine(db) if serving else Engine(db, busy_timeout=COMMAND_WAIT_SECONDS)
    except ArgumentError as exc:
        # The URL itself is not repeated: it may carry a password.
        raise UsageError(f"the database URL (--db or TURNOUT_DB) is not usable: {exc}") from None


# -- language commands (no database) ---------------------------------------------------------
@app.command()
@reports_errors
def validate(
    files: Annotated[list[Path], typer.Argument(help="Definition files to check.")],
    json_output: JsonOption = False,
) -> None:
    """Check definitions; print problems as file:line:col: message."""
    report, failed = [], False
    for path in files:
        try:
            definition = statemachines.load(path)
        except DefinitionError as exc:
            failed = True
            report.append({"file": str(path), "ok": False,
                           "problems": [_problem_json(p) for p in exc.problems]})  # fmt: skip
            if not json_output:
                for problem in exc.problems:
                    err.print(str(problem), markup=False, highlight=False)
            continue
        report.append({"file": str(path), "ok": True, "name": definition.name,
                       "warnings": list(definition.warnings)})  # fmt: skip
        if not json_output:
            for warning in definition.warnings:
                err.print(f"warning: {warning}", markup=False, highlight=False)
            out.print(f"{path}: ok ({definition.name}, {len(list(definition.walk()))} states)",
                      markup=False, highlight=False)  # fmt: skip
    if json_output:
        print_json(report)
    if failed:
        raise typer.Exit(2)


def _problem_json(problem: statemachines.Problem) -> dict[str, Any]:
    return {"file": problem.file, "line": problem.line, "column": problem.column,
            "message": problem.message}  # fmt: skip


@app.command()
@reports_errors
def simulate(
    file: Annotated[Path, typer.Argument(help="Definition file.")],
    event: Annotated[
        list[str] | None,
        typer.Option(
            "--event",
            "-e",
            help="An event to send, in order: NAME or NAME=JSON; after:2d fires a timer.",
        ),
    ] = None,  # fmt: skip
    result: Annotated[
        list[str] | None,
        typer.Option("--result", "-r", help="A task result: STATE=JSON (or TASK=JSON)."),
    ] = None,  # fmt: skip
    fail: Annotated[
        list[str] | None, typer.Option("--fail", help="A state (or task) whose task fails.")
    ] = None,  # fmt: skip
    data: Annotated[str | None, typer.Option("--data", help="Start data, JSON.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Dry-run a definition without a database and print the path taken."""
    definition = statemachines.load(file)
    events: list[str | tuple[str, Any]] = []
    for item in event or []:
        name, sep, payload = item.partition("=")
        events.append((name, parse_json(payload, f"--event {name}")) if sep else name)
    results: dict[str, Any] = {}
    for item in result or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--result {item!r} must be STATE=JSON")
        results[name] = parse_json(value, f"--result {name}")
    for name in fail or []:
        results[name] = statemachines.Failure(f"{name} failed (simulated)")
    start = parse_json(data) or {}
    if not isinstance(start, dict):
        raise UsageError("--data must be a JSON object")
    run = statemachines.simulate(definition, events, data=start, results=results, strict=False)
    if json_output:
        print_json({"state": run.state, "status": run.status, "context": run.context,
                    "active": run.active,
                    "path": [{"event": e, "from": a, "to": b} for e, a, b in run.path],
                    "rejected": [{"event": r.event, "state": r.state, "allowed": r.allowed}
                                 for r in run.rejected]})  # fmt: skip
    else:
        table = Table("#", "event", "from", "to", title=f"{definition.name}: simulated path")
        for number, (step_event, source, target) in enumerate(run.path, 1):
            table.add_row(str(number), step_event or "", source or "(start)", target or "")
        out.print(table)
        for rejected in run.rejected:
            err.print(f"rejected: {rejected}", markup=False, highlight=False)
        out.print(f"status: {run.status}   state: {run.state}")
        out.print_json(json.dumps(run.context, default=str))
    if run.rejected:
        raise typer.Exit(1)


@app.command()
@reports_errors
def diagram(
    source: Annotated[
        str | None,
        typer.Argument(
            metavar="FILE|NAME",
            help="Definition file (YAML), or the name of a deployed definition.",
        ),
    ] = None,  # fmt: skip
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write here, not to stdout; its suffix picks the format."
        ),
    ] = None,  # fmt: skip
    format: Annotated[
        str | None,
        typer.Option(
            "--format", "-f", help="svg, png, pdf, dot or mermaid (default: -o's suffix, else svg)."
        ),
    ] = None,  # fmt: skip
    direction: Annotated[
        str, typer.Option("--direction", help="LR (left to right) or TB (top to bottom).")
    ] = "LR",  # fmt: skip
    instance: Annotated[
        str | None,
        typer.Option(
            "--instance", help="Draw this instance (current state and path) over its definition."
        ),
    ] = None,  # fmt: skip
    heat: Annotated[
        bool,
        typer.Option(
            "--heat",
            help="Colour a deployed definition by where its instances are and by how "
            "often each transition was taken.",
        ),
    ] = False,  # fmt: skip
    db: DbOption = None,
) -> None:
    """Draw a definition (a file or a deployed one), or an instance over its definition."""
    import diagrams

    chosen = format or _format_from_suffix(output) or "svg"
    if chosen not in diagrams.FORMATS:
        raise UsageError(f"--format {chosen!r}: choose one of {', '.join(diagrams.FORMATS)}")
    if direction not in ("LR", "TB"):
        raise UsageError(f"--direction {direction!r}: choose LR or TB")
    if output is None and chosen in ("png", "pdf") and sys.stdout.isatty():
        raise UsageError(f"{chosen} is binary: give -o FILE or redirect stdout")
    if source is None and instance is None:
        raise UsageError("usage: turnout diagram FILE|NAME, or turnout diagram --instance ID")
    if instance is not None:
        with open_engine(db) as engine:
            data = engine.diagram(instance, chosen)
    elif heat:
        if source is None or Path(source).suffix.lower() in (".yaml", ".yml"):
            raise UsageError("--heat needs the NAME of a deployed definition")
        with open_engine(db) as engine:
            data = engine.heat_diagram(source, chosen)
    elif Path(source or "").suffix.lower() in (".yaml", ".yml") or Path(source or "").exists():
        data = diagrams.render(statemachines.load(Path(source or "")), chosen, direction=direction)
    else:
        with open_engine(db) as engine:
            definition = engine.definition(source)
        data = diagrams.render(definition, chosen, direction=direction)
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    output.write_bytes(data)
    err.print(f"wrote {output}", markup=False, highlight=False)


def _format_from_suffix(output: Path | None) -> str | None:
    if output is None:
        return None
    suffix = output.suffix.lower().lstrip(".")
    return {"gv": "dot", "mmd": "mermaid", "md": "mermaid"}.get(suffix, suffix) or None


@app.command()
@reports_errors
def schema() -> None:
    """Print the JSON Schema of the definition language (for editors)."""
    print_json(statemachines.json_schema())


def main() -> None:
    """Entry point of the `turnout` console script."""
    from engine import commands  # noqa: F401  (registers the database commands)

    app()

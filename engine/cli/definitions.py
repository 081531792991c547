"""The commands about definitions: `validate`, `simulate`, `diagram` and `schema` read files
(no database, unless a deployed definition or an instance is drawn); `deploy` registers them;
`diff` compares two versions, each a file or a deployed one, and can draw them as one picture.
"""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import (
    DbOption,
    JsonOption,
    answer,
    app,
    did_you_mean,
    note,
    open_engine,
    out,
    parse_json,
    parse_object,
    print_json,
    print_table,
    reports_errors,
    say,
    usage_error,
)

if TYPE_CHECKING:
    import statemachines
    from engine import Engine

EventOption = Annotated[
    list[str] | None,
    typer.Option(
        "--event",
        "-e",
        help="An event to send, in order: NAME or NAME=JSON; after:2d fires a timer "
        "(after:EXPR or at:EXPR one read from data).",
    ),
]
ResultOption = Annotated[
    list[str] | None,
    typer.Option("--result", "-r", help="A task result: STATE=JSON (or TASK=JSON)."),
]
FailOption = Annotated[
    list[str] | None, typer.Option("--fail", help="A state (or task) whose task fails.")
]
DIAGRAM_SUFFIXES = {"gv": "dot", "mmd": "mermaid", "md": "mermaid"}
YAML_SUFFIXES = (".yaml", ".yml")


@app.command()
@reports_errors
def validate(
    files: Annotated[list[Path], typer.Argument(help="Definition files to check.")],
    json_output: JsonOption = False,
) -> None:
    """Check definitions; print problems as file:line:col: message."""
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
        raise typer.Exit(2)


def _problem_json(problem: statemachines.Problem) -> dict[str, Any]:
    return {
        "file": problem.file,
        "line": problem.line,
        "column": problem.column,
        "message": problem.message,
    }


@app.command()
@reports_errors
def simulate(
    file: Annotated[Path, typer.Argument(help="Definition file.")],
    event: EventOption = None,
    result: ResultOption = None,
    fail: FailOption = None,
    data: Annotated[
        str | None, typer.Option("--data", "-d", help="Start data, JSON (as start -d).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Dry-run a definition without a database and print the path taken."""
    from rich.table import Table

    import statemachines

    definition = statemachines.load(file)
    run = statemachines.simulate(
        definition,
        _events(event or []),
        data=parse_object(data),
        results=_results(result or [], fail or []),
        strict=False,
    )
    if json_output:
        print_json(_run_json(run))
    else:
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
        raise typer.Exit(1)


def _events(options: list[str]) -> list[str | tuple[str, Any]]:
    """The --event options in order: a name alone, or (name, data) for NAME=JSON."""
    events: list[str | tuple[str, Any]] = []
    for item in options:
        name, sep, payload = item.partition("=")
        events.append((name, parse_json(payload, f"--event {name}")) if sep else name)
    return events


def _results(options: list[str], failing: list[str]) -> dict[str, Any]:
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


@app.command()
@reports_errors
def diagram(
    source: Annotated[
        str | None,
        typer.Argument(
            metavar="FILE|NAME",
            help="Definition file (YAML), or the name of a deployed definition.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write here, not to stdout; its suffix picks the format."
        ),
    ] = None,
    format: Annotated[
        str | None,
        typer.Option(
            "--format", "-f", help="svg, png, pdf, dot or mermaid (default: -o's suffix, else svg)."
        ),
    ] = None,
    direction: Annotated[
        str, typer.Option("--direction", help="LR (left to right) or TB (top to bottom).")
    ] = "LR",
    instance: Annotated[
        str | None,
        typer.Option(
            "--instance", help="Draw this instance (current state and path) over its definition."
        ),
    ] = None,
    at: Annotated[
        int | None,
        typer.Option(
            "--at",
            metavar="SEQ",
            min=1,
            help="With --instance: draw it as it stood once the transaction that wrote "
            "history entry SEQ had committed.",
        ),
    ] = None,
    heat: Annotated[
        bool,
        typer.Option(
            "--heat",
            help="Colour a deployed definition by where its instances are and by how "
            "often each transition was taken.",
        ),
    ] = False,
    depth: Annotated[
        int | None,
        typer.Option(
            "--depth",
            help="Levels of nesting to draw: a compound or parallel state inside N others is "
            "one box (0: only the top-level states; default: every level).",
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Draw a definition (a file or a deployed one), or an instance over its definition."""
    import diagrams
    import statemachines
    from diagrams.nesting import MAX_DEPTH

    chosen = format or _format_from_suffix(output) or "svg"
    if chosen not in diagrams.FORMATS:
        raise usage_error(f"--format {chosen!r}: choose one of {', '.join(diagrams.FORMATS)}")
    if direction not in ("LR", "TB"):
        raise usage_error(f"--direction {direction!r}: choose LR or TB")
    if output is None and chosen in ("png", "pdf") and sys.stdout.isatty():
        raise usage_error(f"{chosen} is binary: give -o FILE or redirect stdout")
    if depth is not None and not 0 <= depth <= MAX_DEPTH:
        raise usage_error(f"--depth {depth}: give a number of levels from 0 to {MAX_DEPTH:,}")
    if source is None and instance is None:
        raise usage_error("usage: turnout diagram FILE|NAME, or turnout diagram --instance ID")
    if at is not None and instance is None:
        raise usage_error("--at SEQ draws an instance: give --instance ID")
    if instance is not None:
        with open_engine(db) as engine:
            data = engine.diagram(engine.resolve_id(instance), chosen, depth=depth, at=at)
    elif heat:
        if source is None or Path(source).suffix.lower() in YAML_SUFFIXES:
            raise usage_error("--heat needs the NAME of a deployed definition")
        with open_engine(db) as engine:
            data = engine.heat_diagram(source, chosen, depth=depth)
    elif Path(source or "").suffix.lower() in YAML_SUFFIXES or Path(source or "").exists():
        data = diagrams.render(
            statemachines.load(Path(source or "")), chosen, direction=direction, depth=depth
        )
    else:
        with open_engine(db) as engine:
            definition = engine.definition(source or "")
        data = diagrams.render(definition, chosen, direction=direction, depth=depth)
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    output.write_bytes(data)
    note(f"wrote {output}")


def _format_from_suffix(output: Path | None) -> str | None:
    if output is None:
        return None
    suffix = output.suffix.lower().lstrip(".")
    return DIAGRAM_SUFFIXES.get(suffix, suffix) or None


@app.command()
@reports_errors
def schema() -> None:
    """Print the JSON Schema of the definition language (for editors)."""
    import statemachines

    print_json(statemachines.json_schema())


@app.command()
@reports_errors
def deploy(
    files: Annotated[list[Path], typer.Argument(help="Definition files to register.")],
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Register definitions; print each name and version."""
    with open_engine(db) as engine:
        deployed = [engine.deploy(path) for path in files]
    if json_output:
        print_json([deployment.to_json() for deployment in deployed])
        return
    for deployment in deployed:
        done = "deployed" if deployment.created else "unchanged"
        say(f"{deployment.name} version {deployment.version} ({done})")


@app.command()
@reports_errors
def diff(
    old: Annotated[
        str,
        typer.Argument(
            metavar="OLD",
            help="A definition file, or NAME@VERSION (NAME alone: the latest) deployed; in "
            "the form NAME A [B], the NAME of a deployed definition.",
        ),
    ],
    new: Annotated[
        str | None,
        typer.Argument(
            metavar="NEW",
            help="The same kinds as OLD; left out, OLD must be a file, compared from the "
            "latest deployed version of its name. In NAME A [B], version A.",
        ),
    ] = None,
    last: Annotated[
        str | None,
        typer.Argument(metavar="B", help="In NAME A B, version B (left out: the latest)."),
    ] = None,
    svg: Annotated[
        Path | None,
        typer.Option(
            "--svg",
            help="Also draw OLD against NEW as one SVG picture in this file: added states and "
            "transitions green, removed red and dashed, changed amber, with a legend; and, "
            "when OLD is deployed, how many of its instances are in each state.",
        ),
    ] = None,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show what changed from OLD to NEW: states and transitions added, removed, changed.

    `turnout diff NAME A [B]` compares deployed versions A and B (the latest when left out).
    Exit status: 0 no changes, 1 changes, 2 bad usage, a bad file or a version not deployed.
    """
    import statemachines
    from statemachines.errors import TurnoutError

    with ExitStack() as stack:
        deployed = _Deployed(db, stack)
        try:
            before, after = _sides(old, new, last, deployed)
            changes = statemachines.diff_definitions(before.definition, after.definition)
            if svg is not None:
                svg.write_bytes(_picture(before, after, changes, deployed))
        except (TurnoutError, OSError) as exc:
            for line in answer(exc).lines(exc):
                note(line)
            raise typer.Exit(2) from None
    if json_output:
        print_json(changes.to_json())
    else:
        # Written as it is: one line per element, however long, for a pipe or a file.
        sys.stdout.write(changes.summary() + "\n")
    if svg is not None:
        note(f"wrote {svg}")
    if not changes.empty:
        raise typer.Exit(1)


@dataclass(frozen=True)
class _Side:
    """One side of a diff: a definition, what to call it, and its deployed version (None:
    read from a file)."""

    definition: statemachines.Definition
    label: str
    version: int | None = None


class _Deployed:
    """The engine on `db`, opened once, when a side names a deployed version."""

    def __init__(self, db: str | None, stack: ExitStack) -> None:
        self.db, self.stack = db, stack
        self.opened: Engine | None = None

    def engine(self) -> Engine:
        if self.opened is None:
            self.opened = self.stack.enter_context(open_engine(self.db))
        return self.opened

    def side(self, name: str, version: int | None) -> _Side:
        """Version `version` of `name` (None: the latest)."""
        engine = self.engine()
        number = engine.versions(name)[-1] if version is None else version
        return _Side(engine.definition(name, number), f"{name}@{number}", number)


def _sides(old: str, new: str | None, last: str | None, deployed: _Deployed) -> tuple[_Side, _Side]:
    """The two sides the arguments name: NAME A [B], OLD NEW, or a file against the latest."""
    numbered = new is not None and new.isdigit() and not _is_file(new)
    if last is not None or (numbered and not _is_file(old)):
        if _is_file(old) or not numbered or not (last is None or last.isdigit()):
            raise usage_error("turnout diff NAME A [B] takes a deployed NAME and version numbers")
        return deployed.side(old, int(new or 0)), deployed.side(old, int(last) if last else None)
    if new is None:
        if not _is_file(old):
            raise usage_error("turnout diff NAME needs a second definition to compare with")
        after = _diffed(old, deployed)
        return deployed.side(after.definition.name, None), after
    return _diffed(old, deployed), _diffed(new, deployed)


def _is_file(source: str) -> bool:
    path = Path(source)
    return path.suffix.lower() in YAML_SUFFIXES or path.exists()


def _diffed(source: str, deployed: _Deployed) -> _Side:
    """The definition `source` names: a file, or a deployed NAME@VERSION or NAME (latest)."""
    import statemachines

    if _is_file(source):
        return _Side(statemachines.load(Path(source)), Path(source).name)
    name, sep, number = source.partition("@")
    if not name or (sep and not number.isdigit()):
        raise usage_error(f"{source!r} is not a definition file nor NAME@VERSION")
    return deployed.side(name, int(number) if sep else None)


def _picture(
    before: _Side, after: _Side, changes: statemachines.DefinitionDiff, deployed: _Deployed
) -> bytes:
    """The SVG of `before` against `after`, with the instances of `before` when deployed."""
    import diagrams

    name = before.definition.name
    counts = None
    if before.version is not None:
        counts = deployed.engine().version_counts(name, before.version)
    title = f"{before.label} → {after.label}"
    if before.version is not None and after.version is not None and name == after.definition.name:
        title = f"{name}: version {before.version} → version {after.version}"
    picture: bytes = diagrams.diff_diagram(
        before.definition, after.definition, counts, changes=changes, title=title, fallback=True
    )
    return picture

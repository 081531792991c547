"""The commands about definitions: `diagram` reads files (no database, unless a deployed
definition or an instance is drawn), as `validate`, `simulate` and `schema` do (those are
`language`'s, listed here); `deploy` registers them; `diff` compares two versions, each a file
or a deployed one, and can draw them as one picture.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .common import (
    DbOption,
    JsonOption,
    answer,
    app,
    note,
    open_engine,
    print_json,
    reports_errors,
    say,
    usage_error,
)
from .language_help import LANGUAGE_COMMANDS

if TYPE_CHECKING:
    import statemachines
    from engine import Engine

DIAGRAM_SUFFIXES = {"gv": "dot", "mmd": "mermaid", "md": "mermaid"}
YAML_SUFFIXES = (".yaml", ".yml")


# `validate`, `simulate` and `schema` are click commands (`language`) that `main` runs without
# building this app; here they are listed in `turnout --help` and offered to shell completion,
# and run with the arguments as given when the app itself is invoked.
PASSED_ON = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


def _language_command(name: str) -> None:
    def passed_on(ctx: typer.Context) -> None:
        from .language import run

        run(name, ctx.args)

    passed_on.__doc__ = LANGUAGE_COMMANDS[name]
    app.command(name, context_settings=PASSED_ON, add_help_option=False)(passed_on)


_language_command("validate")
_language_command("simulate")


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


_language_command("schema")


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

"""`turnout migrate plan|apply`: move the running instances of a definition to another of
its versions, after a plan that says what becomes of each (`Engine.plan_migration`).

Exit statuses: `plan` 0 when every selected instance can move (safe or mapped), 1 when some
would stay (divergent or impossible); `apply` 0 when every instance the plan moves has moved
(now or before), 1 when some stayed (they changed since the plan and can no longer move);
both 2 for bad usage, an unknown state in the map or a file that is not a plan.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import (
    DbOption,
    JsonOption,
    app,
    note,
    open_engine,
    print_json,
    reports_errors,
    usage_error,
)

if TYPE_CHECKING:
    from engine import MigrationPlan, MigrationResult

migrate_app = typer.Typer(
    name="migrate",
    help="Move running instances to another version of their definition: plan, then apply.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(migrate_app, name="migrate")

FromOption = Annotated[
    int | None, typer.Option("--from", help="The version the instances are on now.")
]
ToOption = Annotated[
    int | None, typer.Option("--to", help="The version to move them to (default: the latest).")
]
MapOption = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        help="OLD=NEW: instances in state OLD (a full path of the old version) enter "
        "state NEW of the new version. Repeat for several states.",
    ),
]


@migrate_app.command("plan")
@reports_errors
def plan_command(
    name: Annotated[str, typer.Argument(help="Definition name.")],
    from_version: Annotated[
        int, typer.Option("--from", help="The version the instances are on now.")
    ],
    to_version: ToOption = None,
    maps: MapOption = None,
    state: Annotated[
        str | None, typer.Option("--state", help="Only instances in this state (a full path).")
    ] = None,
    key_prefix: Annotated[
        str | None, typer.Option("--key-prefix", help="Only instances whose key starts so.")
    ] = None,
    ids: Annotated[
        list[str] | None, typer.Option("--id", help="Only these instances (repeat).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the plan's JSON to this file.")
    ] = None,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Plan moving the running instances of NAME to another version; nothing is written.

    Each instance selected is classified: safe (its history replays through the new version
    as recorded), mapped (--map moves its state), divergent (the new version would have
    taken another path) or impossible (its state is gone). Exit status: 0 every selected
    instance can move, 1 some would stay, 2 bad usage."""
    where: dict[str, Any] = {"state": state, "key_prefix": key_prefix, "ids": ids}
    with open_engine(db) as engine, _named_versions():
        plan = engine.plan_migration(
            name,
            from_version,
            to_version,
            state_map=_state_map(maps),
            where={key: value for key, value in where.items() if value is not None},
        )
    if output is not None:
        output.write_text(json.dumps(plan.to_json(), indent=2) + "\n")
    if json_output:
        print_json(plan.to_json())
    else:
        sys.stdout.write(plan.summary() + "\n")
        if output is not None:
            note(f"plan written to {output}; apply it with: turnout migrate apply {output}")
    from statemachines.migration_plan import MOVING

    if any(one.kind not in MOVING for one in plan.instances):
        raise typer.Exit(1)


@migrate_app.command("apply")
@reports_errors
def apply_command(
    source: Annotated[
        str,
        typer.Argument(
            metavar="PLAN|NAME",
            help="A plan file written by `turnout migrate plan -o`; or a definition NAME, "
            "planned and applied at once (with --from and --yes).",
        ),
    ],
    from_version: FromOption = None,
    to_version: ToOption = None,
    maps: MapOption = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Plan and apply NAME at once, without a plan file.")
    ] = False,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Apply a migration plan (or plan and apply NAME at once with --from and --yes).

    The plan's safe and mapped instances move to its new version, each in a transaction of
    its own; the others stay. Each instance is checked again as it moves, and one already
    moved is skipped: applying a plan twice moves each instance once. Exit status: 0 every
    instance the plan moves has moved, 1 some stayed, 2 bad usage or not a plan."""
    path = Path(source)
    with open_engine(db) as engine, _named_versions():
        if path.suffix.lower() == ".json" or path.exists():
            if from_version is not None or to_version is not None or maps:
                raise usage_error("--from, --to and --map make a plan: apply a plan file alone")
            result = engine.migrate(_read_plan(path))
        else:
            if not yes:
                raise usage_error(
                    f"{source!r} is no plan file; to plan and apply {source} at once, "
                    "add --from VERSION and --yes"
                )
            plan = engine.plan_migration(
                source, _needed(from_version), to_version, state_map=_state_map(maps)
            )
            result = engine.migrate(plan)
    _show(result, json_output)


@contextmanager
def _named_versions() -> Iterator[None]:
    """A version or definition named that is not deployed is a usage mistake (exit 2)."""
    from statemachines.errors import DefinitionNotFound

    try:
        yield
    except DefinitionNotFound as exc:
        raise usage_error(str(exc)) from None


def _show(result: MigrationResult, json_output: bool) -> None:
    if json_output:
        print_json(result.to_json())
    else:
        sys.stdout.write(result.summary() + "\n")
    if result.counts()["stayed"]:
        raise typer.Exit(1)


def _needed(from_version: int | None) -> int:
    if from_version is None:
        raise usage_error("--from VERSION is needed: the version the instances are on now")
    return from_version


def _state_map(maps: list[str] | None) -> dict[str, str]:
    """The --map options as a state map; UsageError for one that is not OLD=NEW."""
    found: dict[str, str] = {}
    for pair in maps or []:
        old, sep, new = pair.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise usage_error(f"--map {pair!r} must be OLD=NEW (two state paths)")
        found[old.strip()] = new.strip()
    return found


def _read_plan(path: Path) -> MigrationPlan:
    try:
        text = path.read_text()
    except OSError as exc:
        raise usage_error(f"cannot read the plan {path}: {exc.strerror or exc}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise usage_error(f"{path} is not JSON: {exc.msg} at line {exc.lineno}") from None
    from engine import MigrationPlan

    return MigrationPlan.from_json(value)

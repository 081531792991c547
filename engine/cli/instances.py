"""The commands about instances on the database: `start`, `send`, `show` (now, or `--at` an
entry of its history), `history`, `timeline`, `list` (`context-index` prints the index its
`--where` wants) and `cancel`, each printing a table for people or `--json` for tools.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import (
    DataOption,
    DbOption,
    JsonOption,
    OutputOption,
    app,
    did_you_mean,
    err,
    note,
    open_engine,
    out,
    output_format,
    parse_json,
    parse_object,
    print_table,
    print_value,
    reports_errors,
    say,
    usage_error,
)

if TYPE_CHECKING:
    from rich.table import Table

    from engine import Engine, HistoryEntry, Instance
    from engine.timeline import ContextChanges

IdArgument = Annotated[str, typer.Argument(help="Instance id.")]
AtOption = Annotated[
    int | None,
    typer.Option(
        "--at",
        metavar="SEQ",
        min=1,
        help="As the instance stood once the transaction that wrote history entry SEQ had "
        "committed.",
    ),
]
StartAtOption = Annotated[
    str | None,
    typer.Option(
        "--at",
        metavar="TIME",
        help="Start at this time (ISO 8601 with a zone, e.g. 2026-03-01T09:00:00Z); "
        "until then the instance is scheduled.",
    ),
]
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SHORT_DATA_CHARACTERS = 60


@app.command()
@reports_errors
def start(
    name: Annotated[str, typer.Argument(help="Definition name.")],
    data: DataOption = None,
    key: Annotated[str | None, typer.Option("--key", help="Business key.")] = None,
    many: Annotated[
        Path | None,
        typer.Option(
            "--many",
            help="Start one instance per line of this JSON-lines file: "
            'the data object, or {"data": {...}, "key": "..."}.',
        ),
    ] = None,
    at: StartAtOption = None,
    delay: Annotated[
        str | None,
        typer.Option("--delay", metavar="DURATION", help="Start after this long (e.g. 10m)."),
    ] = None,
    debounce: Annotated[
        str | None,
        typer.Option(
            "--debounce",
            metavar="DURATION",
            help="With --key: start once no start of the key has come for this long; a start "
            "of a key still scheduled replaces its data and restarts the wait.",
        ),
    ] = None,
    debounce_max: Annotated[
        str | None,
        typer.Option(
            "--debounce-max",
            metavar="DURATION",
            help="With --debounce: start no later than this long after the key's first start, "
            "however many starts follow.",
        ),
    ] = None,
    deadline: Annotated[
        str | None,
        typer.Option(
            "--deadline",
            metavar="DURATION",
            help="Fail the instance with DeadlineExceeded if it still runs this long after "
            "it started (instead of the definition's deadline).",
        ),
    ] = None,
    db: DbOption = None,
    json_output: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """Start an instance of a deployed definition (or many, from a JSON-lines file), now
    or later (--at, --delay, --debounce)."""
    chosen = output_format(json_output, output)
    timing: dict[str, Any] = {"at": at, "delay": delay, "deadline": deadline}
    if many is not None:
        if debounce is not None or debounce_max is not None:
            raise usage_error("--debounce starts one keyed instance; it does not go with --many")
        _start_many(name, many, db, chosen, timing)
        return
    with open_engine(db) as engine:
        instance = engine.start(
            name,
            parse_object(data),
            key=key,
            debounce=debounce,
            debounce_max=debounce_max,
            **timing,
        )
        _show(instance, chosen)


def _read_many(path: Path) -> tuple[list[dict[str, Any]], list[str | None]]:
    """The data objects of a JSON-lines file, and the business key of each (or None)."""
    items: list[dict[str, Any]] = []
    keys: list[str | None] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise usage_error(f"cannot read {path}: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        value = parse_json(line, f"{path}:{number}")
        if not isinstance(value, dict):
            raise usage_error(f"{path}:{number}: each line must be a JSON object")
        wrapped = set(value) <= {"data", "key"} and isinstance(value.get("data"), dict)
        items.append(value["data"] if wrapped else value)
        keys.append(str(value["key"]) if wrapped and value.get("key") is not None else None)
    return items, keys


def _start_many(name: str, path: Path, db: str | None, chosen: str, timing: dict[str, Any]) -> None:
    from rich.progress import BarColumn, Progress, TextColumn

    items, keys = _read_many(path)
    progress = Progress(
        TextColumn("starting {task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        console=err.real,
        disable=chosen != "table",
    )
    with open_engine(db) as engine, progress:
        bar = progress.add_task(name, total=len(items))
        ids = engine.start_many(
            name,
            items,
            keys=keys,
            progress=lambda count: progress.update(bar, completed=count),
            **timing,
        )
    if chosen != "table":
        print_value({"definition": name, "started": len(ids), "ids": ids}, chosen)
    else:
        say(f"started {len(ids)} instance(s) of {name}")


@app.command()
@reports_errors
def send(
    instance_id: Annotated[str | None, typer.Argument(help="Instance id.")] = None,
    event: Annotated[str | None, typer.Argument(help="Event name.")] = None,
    data: DataOption = None,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Business key instead of id.")] = None,
    definition: Annotated[
        str | None, typer.Option("--definition", help="Definition of --key.")
    ] = None,
    events_file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="Send one event per line of this JSON-lines file, in batches: "
            '{"id": ID, "event": NAME} or {"definition": NAME, "key": KEY, "event": NAME}, '
            'with "data" and "idempotency_key" optional. Exits 0 when every event was taken, '
            "1 when one was rejected or its instance not found, 2 when a line was malformed.",
        ),
    ] = None,
    db: DbOption = None,
    json_output: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """Send an event to an instance (by id, or by --key and --definition), or every event
    of a file (--file). An event already applied under its --idempotency-key is not applied
    again: turnout says `already applied`, shows the instance and exits 0."""
    chosen = output_format(json_output, output)
    if events_file is not None:
        if instance_id or event or data or idempotency_key or key or definition:
            raise usage_error("--file takes the events from the file: give no other argument")
        from .event_files import send_file

        with open_engine(db) as engine:
            send_file(engine, events_file, chosen != "table")
        return
    if key is not None:
        if definition is None:
            raise usage_error("--key needs --definition")
        # With --key, the one positional argument is the event.
        event, instance_id = event or instance_id, None
    if event is None or (instance_id is None and key is None):
        raise usage_error("usage: turnout send ID EVENT, or --key KEY --definition NAME EVENT")
    payload = parse_json(data)
    with open_engine(db) as engine:
        target: str | tuple[str, str]
        if key is not None and definition is not None:
            target = (definition, key)
        else:
            assert instance_id is not None
            target = engine.resolve_id(instance_id)
        if idempotency_key is not None:
            # One event through send_many, which tells an event applied now from one applied
            # before under the same key; any other outcome is sent again below for its error.
            from engine import EventOutcome

            [outcome] = engine.send_many([(target, event, payload, idempotency_key)])
            if outcome.ok and outcome.instance is not None:
                duplicate = outcome.outcome == EventOutcome.DUPLICATE
                if duplicate and chosen == "table":
                    say(f"already applied: idempotency key {idempotency_key!r} (nothing changed)")
                _show(outcome.instance, chosen, engine, {"already_applied": duplicate})
                return
        if isinstance(target, tuple):
            instance = engine.send_by_key(*target, event, payload, idempotency_key=idempotency_key)
        else:
            instance = engine.send(target, event, payload, idempotency_key=idempotency_key)
        _show(instance, chosen, engine)


@app.command()
@reports_errors
def show(
    instance_id: IdArgument,
    at: AtOption = None,
    db: DbOption = None,
    json_output: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """Show an instance: state, status, context and the events it accepts (with --at, as it
    stood after history entry SEQ, rebuilt from its history)."""
    chosen = output_format(json_output, output)
    with open_engine(db) as engine:
        found = engine.resolve_id(instance_id)
        if at is None:
            _show(engine.get(found), chosen, engine)
            return
        instance = engine.get(found, at=at)
    if chosen == "table":
        say(f"as it stood after history #{at} (its transaction committed {_time(instance)})")
    _show(instance, chosen)


def _time(instance: Instance) -> str:
    return instance.updated_at.strftime(TIME_FORMAT)


def _show(
    instance: Instance,
    chosen: str,
    engine: Engine | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Print an instance in the `chosen` format, and the events it accepts when `engine` is
    given to ask (`extra`: more fields for JSON and YAML)."""
    if chosen != "table":
        data = instance.to_json()
        if engine is not None:
            data["allowed"] = engine.allowed(instance)
        print_value(data | (extra or {}), chosen)
        return
    key = instance.key or "-"
    out.print(f"[bold]{instance.id}[/bold]  {instance.definition} v{instance.version}  key={key}")
    out.print(
        f"state: [cyan]{instance.state}[/cyan]   status: {instance.status}   "
        f"revision: {instance.revision}"
    )
    if instance.active not in ([], [instance.state]):  # nested or parallel: name them all
        say("active: " + ", ".join(instance.active))
    if instance.due_at is not None:
        say(f"starts at: {instance.due_at.strftime(TIME_FORMAT)} UTC")
    if instance.parent is not None:
        say(f"parent: {instance.parent}")
    if instance.children:
        say("children: " + ", ".join(instance.children))
    for held in instance.held:  # ready, but a flow-control limit holds it back
        say(f"held: task {held['name']} in {held['state']}: {held['reason']}")
    if engine is not None:
        allowed = engine.allowed(instance)
        say("accepts: " + (", ".join(allowed) if allowed else "(no events)"))
    if instance.error is not None:
        ended = instance.error
        where = f"in {ended.get('state')}, history #{ended.get('seq')}"
        say(f"failed with {ended.get('type')}: {ended.get('message')} ({where})")
    if instance.last_error is not None:
        error = instance.last_error
        seq, kind, message = error.get("seq"), error.get("type"), error.get("message")
        say(f"last error (history #{seq}): {kind}: {message}")
        if error.get("traceback"):
            say(error["traceback"])
    out.print_json(data=instance.context)


@app.command()
@reports_errors
def history(
    instance_id: IdArgument,
    db: DbOption = None,
    json_output: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """Show an instance's history, oldest first."""
    chosen = output_format(json_output, output)
    with open_engine(db) as engine:
        instance_id = engine.resolve_id(instance_id)
        entries = engine.history(instance_id)
    if chosen != "table":
        print_value([entry.to_json() for entry in entries], chosen)
        return
    print_table(_history_table(entries, instance_id))


@app.command()
@reports_errors
def timeline(
    instance_id: IdArgument,
    db: DbOption = None,
    json_output: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """Show each commit of an instance's history: the entries it wrote, its state and status,
    and what it changed in the context (one replay of the history)."""
    from rich.table import Table
    from rich.text import Text

    chosen = output_format(json_output, output)
    with open_engine(db) as engine:
        instance_id = engine.resolve_id(instance_id)
        found = engine.timeline(instance_id)
    if chosen != "table":
        print_value(found.to_json(), chosen)
        return
    table = Table("rev", "entries", "at", "state", "status", "context", title=instance_id)
    for point in found.points:
        entries = f"#{point.first}" + (f"-#{point.last}" if point.last > point.first else "")
        state = ", ".join(point.active) if len(point.active) > 1 else point.state
        table.add_row(
            str(point.revision),
            entries,
            point.at.strftime(TIME_FORMAT),
            Text(state),
            point.status,
            Text(_changes(point.changes)),  # the context's own text, never read as markup
        )
    print_table(table)
    if found.divergence is not None:
        note(f"replay stops at history #{found.divergence.seq}: {found.divergence.reason}")


def _changes(changes: ContextChanges) -> str:
    """A point's context changes on one line: +added, -removed, ~changed (old -> new)."""
    parts = [f"+{key}={shortened(value, 30)}" for key, value in changes.added.items()]
    parts += [f"-{key}" for key in changes.removed]
    parts += [
        f"~{key}: {shortened(old, 20)} -> {shortened(new, 20)}"
        for key, (old, new) in changes.changed.items()
    ]
    return " ".join(parts)


def _history_table(entries: list[HistoryEntry], title: str) -> Table:
    from rich.table import Table

    table = Table("#", "at", "kind", "event", "from", "to", "data", title=title)
    for entry in entries:
        table.add_row(
            str(entry.seq),
            entry.at.strftime(TIME_FORMAT),
            entry.kind,
            entry.event or "",
            entry.from_state or "",
            entry.to_state or "",
            "" if entry.data is None else shortened(entry.data),
        )
    return table


def shortened(value: Any, limit: int = SHORT_DATA_CHARACTERS) -> str:
    """`value` as JSON, cut to `limit` characters with an ellipsis."""
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@app.command("list")
@reports_errors
def list_instances(
    definition: Annotated[str | None, typer.Option("--definition")] = None,
    state: Annotated[str | None, typer.Option("--state")] = None,
    status: Annotated[str | None, typer.Option("--status")] = None,
    key: Annotated[str | None, typer.Option("--key")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 100,
    offset: Annotated[int, typer.Option("--offset", min=0)] = 0,
    parent: Annotated[str | None, typer.Option("--parent", help="Only its children.")] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where",
            metavar="PATH=VALUE",
            help="A context filter, repeatable: customer.tier=gold, total>=100 (also !=, >, <, "
            '<=; the value is JSON when it parses, else text: "100" is text) or '
            'path={"in": [...]} for operators as JSON.',
        ),
    ] = None,
    db: DbOption = None,
    json_output: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """List instances, oldest first, filtered by definition, state, status, key, parent or
    context (--where)."""
    from engine.search import parse_filters

    chosen = output_format(json_output, output)
    context = parse_filters(where or [])
    with open_engine(db) as engine:
        if parent is not None:
            parent = engine.resolve_id(parent)
        filters = {"definition": definition, "state": state, "status": status, "key": key}
        found = engine.instances(
            **filters, limit=limit, offset=offset, parent=parent, where=context
        )
        if not found and definition is not None:
            names = [deployment.name for deployment in engine.definitions()]
            if definition not in names:
                suggested = did_you_mean(definition, names)
                note(f"warning: no definition {definition!r} is deployed{suggested}")
    if chosen != "table":
        print_value([instance.to_json() for instance in found], chosen)
    else:
        print_table(_instance_table(found, f"{len(found)} instance(s)"))


@app.command("context-index")
@reports_errors
def context_index(
    path: Annotated[str, typer.Argument(help="A dotted context path: customer.tier.")],
    create: Annotated[
        bool, typer.Option("--create", help="Create it now (then ANALYZE), if it is not there.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Print the CREATE INDEX that makes `list --where` on PATH quick on this database (or,
    with --create, create it: CONCURRENTLY on PostgreSQL)."""
    from rich.text import Text

    with open_engine(db) as engine:
        statement = engine.create_context_index(path) if create else engine.context_index(path)
    if create:
        say(f"created (if it was not there): {statement}")
    else:
        out.print(Text(statement + ";"))


def _instance_table(instances: list[Instance], title: str | None = None) -> Table:
    from rich.table import Table

    table = Table("id", "definition", "v", "key", "state", "status", "rev", "updated", title=title)
    table.columns[0].no_wrap = True
    for instance in instances:
        table.add_row(
            instance.id,
            instance.definition,
            str(instance.version),
            instance.key or "",
            instance.state,
            instance.status,
            str(instance.revision),
            instance.updated_at.strftime(TIME_FORMAT),
        )
    return table


@app.command()
@reports_errors
def cancel(
    instance_id: IdArgument,
    reason: Annotated[str | None, typer.Option("--reason")] = None,
    db: DbOption = None,
    json_output: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """Cancel a running instance: drop its work, compensate, end cancelled."""
    chosen = output_format(json_output, output)
    with open_engine(db) as engine:
        instance_id = engine.resolve_id(instance_id)
        instance = engine.cancel(instance_id, reason)
        if instance.status == "compensating":
            engine.run_until_idle()
            instance = engine.get(instance_id)
        _show(instance, chosen)

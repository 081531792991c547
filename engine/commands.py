"""The database commands of the `turnout` CLI: deploy, start, send, look, cancel, work, demo.

Each opens the Engine on `--db` (or `TURNOUT_DB`), prints a table or `--json`, and leaves
error reporting to `reports_errors` (one line on stderr and the exit status of SPEC 5).
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from statemachines.errors import UsageError

from .cli import (
    DbOption,
    JsonOption,
    app,
    err,
    open_engine,
    out,
    parse_json,
    print_json,
    reports_errors,
)
from .engine import Engine
from .records import HistoryEntry, Instance
from .worker import Worker

DataOption = Annotated[str | None, typer.Option("--data", help="JSON data.")]


def _data(text: str | None) -> dict[str, Any]:
    value = parse_json(text)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError("--data must be a JSON object")
    return value


def _instance_table(instances: list[Instance], title: str | None = None) -> Table:
    table = Table("id", "definition", "v", "key", "state", "status", "rev", "updated",
                  title=title)  # fmt: skip
    for i in instances:
        table.add_row(i.id, i.definition, str(i.version), i.key or "", i.state, i.status,
                      str(i.revision), i.updated_at.strftime("%Y-%m-%d %H:%M:%S"))  # fmt: skip
    return table


def _show(instance: Instance, json_output: bool, engine: Engine | None = None) -> None:
    if json_output:
        data = instance.to_json()
        if engine is not None:
            data["allowed"] = engine.allowed(instance)
        print_json(data)
        return
    out.print(f"[bold]{instance.id}[/bold]  {instance.definition} v{instance.version}"
              f"  key={instance.key or '-'}")  # fmt: skip
    out.print(f"state: [cyan]{instance.state}[/cyan]   status: {instance.status}   "
              f"revision: {instance.revision}")  # fmt: skip
    if len(instance.active) > 1:
        out.print("active: " + ", ".join(instance.active), markup=False)
    if engine is not None:
        allowed = engine.allowed(instance)
        out.print("accepts: " + (", ".join(allowed) if allowed else "(no events)"), markup=False)
    if instance.last_error is not None:
        error = instance.last_error
        out.print(f"last error (history #{error.get('seq')}): {error.get('type')}: "
                  f"{error.get('message')}", markup=False, highlight=False)  # fmt: skip
        if error.get("traceback"):
            out.print(error["traceback"], markup=False, highlight=False)
    out.print_json(data=instance.context)


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
        print_json([d.to_json() for d in deployed])
        return
    for d in deployed:
        note = "deployed" if d.created else "unchanged"
        out.print(f"{d.name} version {d.version} ({note})", markup=False, highlight=False)


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
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Start an instance of a deployed definition (or many, from a JSON-lines file)."""
    if many is not None:
        _start_many(name, many, db, json_output)
        return
    with open_engine(db) as engine:
        _show(engine.start(name, _data(data), key=key), json_output)


def _read_many(path: Path) -> tuple[list[dict[str, Any]], list[str | None]]:
    items: list[dict[str, Any]] = []
    keys: list[str | None] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        value = parse_json(line, f"{path}:{number}")
        if not isinstance(value, dict):
            raise UsageError(f"{path}:{number}: each line must be a JSON object")
        wrapped = set(value) <= {"data", "key"} and isinstance(value.get("data"), dict)
        items.append(value["data"] if wrapped else value)
        keys.append(str(value["key"]) if wrapped and value.get("key") is not None else None)
    return items, keys


def _start_many(name: str, path: Path, db: str | None, json_output: bool) -> None:
    items, keys = _read_many(path)
    with open_engine(db) as engine, Progress(
        TextColumn("starting {task.description}"), BarColumn(),
        TextColumn("{task.completed}/{task.total}"), console=err, disable=json_output,
    ) as progress:  # fmt: skip
        bar = progress.add_task(name, total=len(items))
        ids = engine.start_many(name, items, keys=keys,
                                progress=lambda n: progress.update(bar, completed=n))  # fmt: skip
    if json_output:
        print_json({"definition": name, "started": len(ids), "ids": ids})
    else:
        out.print(f"started {len(ids)} instance(s) of {name}", markup=False, highlight=False)


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
    ] = None,  # fmt: skip
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Send an event to an instance (by id, or by --key and --definition)."""
    if key is not None:
        if definition is None:
            raise UsageError("--key needs --definition")
        # With --key, the one positional argument is the event.
        event, instance_id = event or instance_id, None
    if event is None or (instance_id is None and key is None):
        raise UsageError("usage: turnout send ID EVENT, or --key KEY --definition NAME EVENT")
    payload = parse_json(data)
    with open_engine(db) as engine:
        if key is not None and definition is not None:
            instance = engine.send_by_key(definition, key, event, payload,
                                          idempotency_key=idempotency_key)  # fmt: skip
        else:
            assert instance_id is not None
            instance = engine.send(instance_id, event, payload, idempotency_key=idempotency_key)
        _show(instance, json_output, engine)


@app.command()
@reports_errors
def show(
    instance_id: Annotated[str, typer.Argument(help="Instance id.")],
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show an instance: state, status, context and the events it accepts."""
    with open_engine(db) as engine:
        _show(engine.get(instance_id), json_output, engine)


@app.command()
@reports_errors
def history(
    instance_id: Annotated[str, typer.Argument(help="Instance id.")],
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show an instance's history, oldest first."""
    with open_engine(db) as engine:
        entries = engine.history(instance_id)
    if json_output:
        print_json([e.to_json() for e in entries])
        return
    out.print(_history_table(entries, instance_id))


def _history_table(entries: list[HistoryEntry], title: str) -> Table:
    table = Table("#", "at", "kind", "event", "from", "to", "data", title=title)
    for e in entries:
        data = "" if e.data is None else parse_short(e.data)
        table.add_row(str(e.seq), e.at.strftime("%Y-%m-%d %H:%M:%S"), e.kind, e.event or "",
                      e.from_state or "", e.to_state or "", data)  # fmt: skip
    return table


def parse_short(value: Any, limit: int = 60) -> str:
    import json

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
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """List instances, oldest first, filtered by definition, state, status or key."""
    with open_engine(db) as engine:
        found = engine.instances(definition=definition, state=state, status=status, key=key,
                                 limit=limit, offset=offset)  # fmt: skip
    if json_output:
        print_json([i.to_json() for i in found])
    else:
        out.print(_instance_table(found, f"{len(found)} instance(s)"))


@app.command()
@reports_errors
def cancel(
    instance_id: Annotated[str, typer.Argument(help="Instance id.")],
    reason: Annotated[str | None, typer.Option("--reason")] = None,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Cancel a running instance: drop its work, compensate, end cancelled."""
    with open_engine(db) as engine:
        instance = engine.cancel(instance_id, reason)
        if instance.status == "compensating":
            engine.run_until_idle()
            instance = engine.get(instance_id)
        _show(instance, json_output)


def load_handlers(engine: Engine, module_name: str) -> list[str]:
    """Register the task handlers a user's module offers; return their names.

    The module either defines `register(engine)`, which calls `engine.task(...)`, or a
    mapping `HANDLERS = {"task.name": function}`.
    """
    sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import the handler module {module_name!r}: {exc}") from None
    before = set(engine.handlers)
    register: Callable[[Engine], Any] | None = getattr(module, "register", None)
    handlers = getattr(module, "HANDLERS", None)
    if callable(register):
        register(engine)
    elif isinstance(handlers, dict):
        for name, function in handlers.items():
            engine.task(str(name))(function)
    else:
        raise UsageError(f"module {module_name!r} has neither register(engine) nor HANDLERS")
    return sorted(set(engine.handlers) - before)


@app.command()
@reports_errors
def worker(
    tasks: Annotated[
        list[str] | None,
        typer.Option("--tasks", help="Module offering task handlers (repeatable)."),
    ] = None,  # fmt: skip
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=256)] = 4,
    db: DbOption = None,
) -> None:
    """Run tasks and timers until interrupted (Ctrl-C finishes the tasks in hand)."""
    stop = threading.Event()
    # The worker's log (a handler's exception with its traceback, a database gone away) goes
    # to stderr, above the status line.
    logging.getLogger("turnout").addHandler(RichHandler(console=err, show_path=False,
                                                        markup=False))  # fmt: skip
    with open_engine(db, serving=True) as engine:
        names = [n for module in tasks or [] for n in load_handlers(engine, module)]
        err.print(f"worker {engine.worker_id}: {len(names)} task handler(s): "
                  f"{', '.join(names) or '(timers only)'}", markup=False)  # fmt: skip
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        running = Worker(engine, concurrency=concurrency)

        def statistics() -> str:
            return (f"ran {running.ran} task(s), {running.failed} failed; "
                    f"fired {running.timers} timer(s)")  # fmt: skip

        with err.status(statistics(), spinner="dots") as status:
            ticker = threading.Thread(target=_tick, args=(stop, status, statistics), daemon=True)
            ticker.start()
            running.work(stop)
    err.print(f"worker stopped: {statistics()}", markup=False)


def _tick(stop: threading.Event, status: Any, text: Callable[[], str]) -> None:
    while not stop.wait(0.5):
        status.update(text())


@app.command()
@reports_errors
def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the demo writes its database and diagrams.")
    ] = Path("turnout-demo"),  # fmt: skip
    json_output: JsonOption = False,
) -> None:
    """Run the bundled workflows end to end on a fresh SQLite file and draw them."""
    from .demo import Demo

    run = Demo(directory)
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.completed}/{task.total}"), console=err,
                      disable=json_output) as progress:  # fmt: skip
            bar = progress.add_task("demo", total=6)
            for label in run.steps():
                progress.update(bar, advance=1, description=label)
        rows = run.summary()
        try:
            files = run.write_diagrams()
        except Exception as exc:  # diagrams are a bonus: the run itself has succeeded
            err.print(f"could not draw the diagrams: {exc}", markup=False)
            files = []
        if json_output:
            print_json(
                {
                    "database": str(run.database),
                    "summary": rows,
                    "events_sent": run.events_sent,
                    "rejected": run.rejected,
                    "task_calls": dict(run.calls),
                    "diagrams": [str(f) for f in files],
                }
            )
            return
        table = Table(
            title="turnout demo: instances by definition", box=box.SIMPLE_HEAD, pad_edge=False
        )
        table.add_column("definition", no_wrap=True)
        for header in ("runs", "ok", "failed", "cancelled", "open", "retries", "undone", "timers"):
            table.add_column(header, justify="right")
        for row in rows:
            table.add_row(*(str(v) for v in row.values()))
        (out if out.is_terminal else Console(width=100)).print(table)
        out.print(f"{sum(run.calls.values())} task calls, {run.events_sent} events accepted, "
                  f"{run.rejected} rejected (as designed)", markup=False)  # fmt: skip
        out.print(f"database: {run.database}", markup=False)
        if files:
            out.print(f"diagrams ({len(files)} SVG files) in {files[0].parent}", markup=False)
            for path in files:
                out.print(f"  {path}", markup=False)
    finally:
        run.close()


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _proxy_names() -> list[str]:
    """The names in TURNOUT_ALLOWED_HOSTS (comma-separated): those of a proxy in front."""
    import os

    return [h.strip() for h in os.environ.get("TURNOUT_ALLOWED_HOSTS", "").split(",") if h.strip()]


def _allowed_hosts(host: str, token: str | None) -> list[str] | None:
    """Without a token, a loopback server answers only to loopback names (and to those in
    TURNOUT_ALLOWED_HOSTS, for a proxy in front of it)."""
    from .api.app import LOOPBACK_NAMES

    if token is not None:
        return None
    return [*LOOPBACK_NAMES, host, *_proxy_names()]


@app.command()
@reports_errors
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8080,
    tasks: Annotated[
        list[str] | None,
        typer.Option("--tasks", help="Also run a worker with the handlers of MODULE."),
    ] = None,
    db: DbOption = None,
    request_timeout: Annotated[
        float,
        typer.Option(
            "--request-timeout",
            min=0.1,
            max=3600,
            help="Seconds a request has to arrive whole; a connection that has not "
            "sent it by then is closed.",
        ),
    ] = 30.0,
) -> None:
    """Serve the HTTP API and the web dashboard (loopback only unless a token is set)."""
    import os

    import uvicorn

    from .api import create_app
    from .api.connections import MAX_CONNECTIONS, MAX_HEAD_BYTES, bounded_protocol

    token = os.environ.get("TURNOUT_API_TOKEN") or None
    if host not in LOOPBACK and token is None:
        raise UsageError(
            f"refusing to serve on {host} without TURNOUT_API_TOKEN: anyone who "
            "can reach it could start and cancel instances"
        )
    with open_engine(db, serving=True) as engine:
        stop = threading.Event()
        worker_thread: threading.Thread | None = None
        if tasks:
            names = [n for module in tasks for n in load_handlers(engine, module)]
            err.print(f"worker: {', '.join(names)}", markup=False)
            worker_thread = threading.Thread(target=engine.work, kwargs={"stop": stop}, daemon=True)
            worker_thread.start()
        err.print(f"turnout serving {engine.store.safe_url} on http://{host}:{port}/", markup=False)
        # uvicorn shuts down gracefully on SIGINT or SIGTERM, then raises the signal again for
        # the handler it found: this one lets the command end normally (engine closed, exit 0).
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        try:
            asgi = create_app(engine, token, _allowed_hosts(host, token), _proxy_names())
            uvicorn.run(asgi, host=host, port=port, log_level="warning",
                        http=bounded_protocol(request_timeout),
                        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
                        limit_concurrency=MAX_CONNECTIONS)  # fmt: skip
        except SystemExit as exc:
            # uvicorn exits 3 when it cannot start (the port is taken, say), having said why.
            if exc.code not in (0, None):
                raise typer.Exit(1) from None
            raise
        finally:
            stop.set()
            if worker_thread is not None:  # the tasks in hand are finished before the engine closes
                worker_thread.join(timeout=120)

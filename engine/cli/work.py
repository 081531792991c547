"""The commands that keep running or run a whole story: `worker` (task handlers from a user's
module, its metrics served if asked), `serve` (the HTTP API and dashboard, with a worker if
asked) and `demo`.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import (
    DEFAULT_BATCH,
    DEFAULT_LINGER,
    TRACING_EXTRA,
    DbOption,
    JsonOption,
    app,
    err,
    note,
    open_engine,
    out,
    print_json,
    reports_errors,
    run_until_signalled,
    say,
    stop_on_signals,
    usage_error,
)

if TYPE_CHECKING:
    from engine import Engine
    from engine.demo import Demo

TasksOption = Annotated[
    list[str] | None,
    typer.Option("--tasks", help="Module offering task handlers (repeatable)."),
]
OtlpOption = Annotated[
    str | None,
    typer.Option(
        "--otlp",
        metavar="ENDPOINT",
        help="Export traces with OTLP over HTTP to the collector at ENDPOINT "
        "(http://localhost:4318, say; default: OTEL_EXPORTER_OTLP_ENDPOINT when set). "
        f"Needs the tracing extra: {TRACING_EXTRA}.",
    ),
]
LOOPBACK = ("127.0.0.1", "localhost", "::1")
DEMO_STEPS = 7
DEMO_COLUMNS = ("runs", "ok", "failed", "cancelled", "open", "retries", "undone", "timers")
HANDLERS_FINISH_SECONDS = 120


def load_handlers(engine: Engine, module_name: str) -> list[str]:
    """Register the task handlers a user's module offers; return their names.

    The module either defines `register(engine)`, which calls `engine.task(...)`, or a
    mapping `HANDLERS = {"task.name": function}`.
    """
    sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise usage_error(f"cannot import the handler module {module_name!r}: {exc}") from None
    before = set(engine.handlers)
    register: Callable[[Engine], Any] | None = getattr(module, "register", None)
    handlers = getattr(module, "HANDLERS", None)
    if callable(register):
        register(engine)
    elif isinstance(handlers, dict):
        for name, function in handlers.items():
            engine.task(str(name))(function)
    else:
        raise usage_error(f"module {module_name!r} has neither register(engine) nor HANDLERS")
    return sorted(set(engine.handlers) - before)


@contextlib.contextmanager
def exporting_traces(engine: Engine, option: str | None) -> Iterator[None]:
    """Trace `engine`'s instances and export the spans with OTLP while the command runs
    (to `--otlp`, else where the OTLP environment says; nowhere when neither is given),
    then flush them."""
    from engine.tracing import otlp_endpoint, otlp_provider
    from statemachines.errors import UsageError

    if option is not None and not option.startswith(("http://", "https://")):
        raise usage_error(f"--otlp must be an http:// or https:// URL, not {option!r}")
    endpoint = otlp_endpoint(option)
    if endpoint is None:
        yield
        return
    try:
        provider = otlp_provider(endpoint)
    except UsageError:
        if option is not None:
            raise
        note(
            f"OTEL_EXPORTER_OTLP_ENDPOINT is set, but no traces are exported without the OTLP "
            f"exporter: {TRACING_EXTRA}"
        )
        yield
        return
    from opentelemetry import trace

    # Global too: the spans the handlers (and the clients they use) make join the trace.
    trace.set_tracer_provider(provider)
    engine.trace(provider)
    note(f"exporting traces with OTLP to {endpoint or 'the OTEL_EXPORTER_OTLP_ENDPOINT'}")
    try:
        yield
    finally:
        provider.shutdown()  # the spans still batched are sent


@app.command()
@reports_errors
def worker(
    tasks: TasksOption = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=256)] = 4,
    batch: Annotated[
        int,
        typer.Option(
            "--batch", min=1, max=1000, help="The most task results committed in one transaction."
        ),
    ] = DEFAULT_BATCH,
    linger: Annotated[
        float,
        typer.Option(
            "--linger",
            min=0,
            max=1000,
            help="Milliseconds a result waits for others to commit with (0: one commit each).",
        ),
    ] = DEFAULT_LINGER * 1000,
    db: DbOption = None,
    otlp: OtlpOption = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=1,
            max=65535,
            help="Serve the worker's Prometheus metrics over HTTP on this port.",
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", help="Address the metrics are served on.")
    ] = "127.0.0.1",
    limits: Annotated[
        Path | None,
        typer.Option(
            "--limits",
            help="A TOML file of task limits ([tasks.NAME] concurrency, rate, partition), "
            "set for every worker of the database before this one starts.",
        ),
    ] = None,
) -> None:
    """Run tasks and timers until interrupted (Ctrl-C finishes the tasks in hand)."""
    from engine.worker import Worker

    with open_engine(db, serving=True) as engine, exporting_traces(engine, otlp):
        if limits is not None:
            for limit in engine.load_task_limits(limits):
                note(f"task limit: {limit.to_json()}")
        names = [name for module in tasks or [] for name in load_handlers(engine, module)]
        offered = ", ".join(names) or "(timers only)"
        note(f"worker {engine.worker_id}: {len(names)} task handler(s): {offered}")
        running = Worker(engine, concurrency=concurrency, batch=batch, linger=linger / 1000)

        def statistics() -> str:
            done = f"ran {running.ran} task(s), {running.failed} failed"
            return f"{done}; fired {running.timers} timer(s)"

        with _metrics_served(engine, metrics_host, metrics_port):
            run_until_signalled(running.work, statistics)
    note(f"worker stopped: {statistics()}")


@contextlib.contextmanager
def _metrics_served(engine: Engine, host: str, port: int | None) -> Iterator[None]:
    """With a port, the engine's metrics served at http://host:port/metrics meanwhile."""
    if port is None:
        yield
        return
    from prometheus_client.exposition import start_http_server

    try:
        server, thread = start_http_server(port, host, engine.metrics_registry())
    except OSError as exc:  # the port is taken, the address is not this machine's
        raise usage_error(f"cannot serve the metrics on {host}:{port}: {exc}") from None
    note(f"metrics on http://{host}:{port}/metrics")
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _proxy_names() -> list[str]:
    """The names in TURNOUT_ALLOWED_HOSTS (comma-separated): those of a proxy in front."""
    names = os.environ.get("TURNOUT_ALLOWED_HOSTS", "").split(",")
    return [name.strip() for name in names if name.strip()]


def _allowed_hosts(host: str, token: str | None) -> list[str] | None:
    """Without a token, a loopback server answers only to loopback names (and to those in
    TURNOUT_ALLOWED_HOSTS, for a proxy in front of it); with one, to any name."""
    from engine.api.app import LOOPBACK_NAMES

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
    otlp: OtlpOption = None,
) -> None:
    """Serve the HTTP API and the web dashboard (loopback only unless a token is set)."""
    token = os.environ.get("TURNOUT_API_TOKEN") or None
    if host not in LOOPBACK and token is None:
        raise usage_error(
            f"refusing to serve on {host} without TURNOUT_API_TOKEN: anyone who "
            "can reach it could start and cancel instances"
        )
    with open_engine(db, serving=True) as engine, exporting_traces(engine, otlp):
        stop = threading.Event()
        worker_thread: threading.Thread | None = None
        if tasks:
            names = [name for module in tasks for name in load_handlers(engine, module)]
            note(f"worker: {', '.join(names)}")
            worker_thread = threading.Thread(target=engine.work, kwargs={"stop": stop}, daemon=True)
            worker_thread.start()
        note(f"turnout serving {engine.safe_url} on http://{host}:{port}/")
        # uvicorn shuts down gracefully on SIGINT or SIGTERM, then raises the signal again for
        # the handler it found: this one lets the command end normally (engine closed, exit 0).
        stop_on_signals(stop)
        try:
            _run_server(engine, host, port, token, request_timeout)
        finally:
            stop.set()
            if worker_thread is not None:  # the tasks in hand are finished before the engine closes
                worker_thread.join(timeout=HANDLERS_FINISH_SECONDS)


def _run_server(engine: Engine, host: str, port: int, token: str | None, timeout: float) -> None:
    """Serve the API on host:port until a signal; exit 1 if uvicorn cannot start."""
    import uvicorn

    from engine.api import create_app
    from engine.api.connections import MAX_CONNECTIONS, MAX_HEAD_BYTES, bounded_protocol

    asgi = create_app(engine, token, _allowed_hosts(host, token), _proxy_names())
    try:
        uvicorn.run(
            asgi,
            host=host,
            port=port,
            log_level="warning",
            http=bounded_protocol(timeout),
            h11_max_incomplete_event_size=MAX_HEAD_BYTES,
            limit_concurrency=MAX_CONNECTIONS,
        )
    except SystemExit as exc:
        # uvicorn exits 3 when it cannot start (the port is taken, say), having said why.
        if exc.code not in (0, None):
            raise typer.Exit(1) from None
        raise


@app.command()
@reports_errors
def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the demo writes its database and diagrams.")
    ] = Path("turnout-demo"),
    json_output: JsonOption = False,
) -> None:
    """Run the bundled workflows end to end on a fresh SQLite file and draw them."""
    from rich.progress import BarColumn, Progress, TextColumn

    from engine.demo import Demo

    run = Demo(directory)
    try:
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            console=err.real,
            disable=json_output,
        )
        with progress:
            bar = progress.add_task("demo", total=DEMO_STEPS)
            for label in run.steps():
                progress.update(bar, advance=1, description=label)
        rows = run.summary()
        try:
            files = run.write_diagrams()
        except Exception as exc:  # diagrams are a bonus: the run itself has succeeded
            note(f"could not draw the diagrams: {exc}")
            files = []
        if json_output:
            print_json(
                {
                    "database": str(run.database),
                    "summary": rows,
                    "events_sent": run.events_sent,
                    "rejected": run.rejected,
                    "task_calls": dict(run.calls),
                    "diagrams": [str(path) for path in files],
                }
            )
            return
        _print_demo(run, rows, files)
    finally:
        run.close()


def _print_demo(run: Demo, rows: list[dict[str, Any]], files: list[Path]) -> None:
    """The demo's summary table, its counts and where its files are."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="turnout demo: instances by definition", box=box.SIMPLE_HEAD, pad_edge=False
    )
    table.add_column("definition", no_wrap=True)
    for header in DEMO_COLUMNS:
        table.add_column(header, justify="right")
    for row in rows:
        table.add_row(*(str(value) for value in row.values()))
    (out if out.is_terminal else Console(width=100)).print(table)
    calls = sum(run.calls.values())
    accepted = f"{run.events_sent} events accepted, {run.rejected} rejected (as designed)"
    say(f"{calls} task calls, {accepted}")
    say(f"database: {run.database}")
    if files:
        say(f"diagrams ({len(files)} SVG files) in {files[0].parent}")
        for path in files:
            say(f"  {path}")

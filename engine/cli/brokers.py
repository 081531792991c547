"""The commands that connect the engine to a message broker, named by URL (redis://,
nats://, amqp://, http(s)://): `relay` publishes the change feed, `consume` applies the
events a stream or queue delivers. Both run until SIGINT or SIGTERM and then exit 0.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

import typer

from .common import DbOption, app, note, open_engine, reports_errors, run_until_signalled

UrlArgument = Annotated[
    str,
    typer.Argument(
        metavar="URL",
        help="The broker, e.g. redis://127.0.0.1:6379/0?stream=turnout.changes "
        "(its options: docs/guide/embedding.md, Relays and consumers).",
        show_default=False,
    ),
]


def shown_url(url: str) -> str:
    """The URL without its password (a broker URL may carry one), nor its query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    if parts.username:
        host = f"{parts.username}@{host}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@app.command()
@reports_errors
def relay(
    url: UrlArgument,
    name: Annotated[
        str, typer.Option("--name", help="The cursor that keeps this relay's place in the feed.")
    ] = "relay",
    batch: Annotated[
        int, typer.Option("--batch", min=1, max=10_000, help="Changes per publish.")
    ] = 500,
    definition: Annotated[
        list[str] | None,
        typer.Option("--definition", help="Relay only this definition's changes (repeatable)."),
    ] = None,
    db: DbOption = None,
) -> None:
    """Publish the change feed to a broker, at least once, until interrupted."""
    from engine.brokers import Relay, open_publisher

    with open_engine(db, serving=True) as engine:
        publisher = open_publisher(url)
        try:
            running = Relay(engine, publisher, name, batch=batch, definitions=definition or None)
            note(f"relay {name!r}: {engine.safe_url} -> {shown_url(url)}")

            def statistics() -> str:
                return f"published {running.sent} change(s)"

            run_until_signalled(running.run, statistics)
        finally:
            publisher.close()
    note(f"relay stopped: {statistics()}")


@app.command()
@reports_errors
def consume(
    url: UrlArgument,
    batch: Annotated[
        int, typer.Option("--batch", min=1, max=10_000, help="Messages taken at a time.")
    ] = 100,
    db: DbOption = None,
) -> None:
    """Apply the events a broker delivers (acknowledged after commit) until interrupted."""
    from engine.brokers import Consumer, open_source

    with open_engine(db, serving=True) as engine:
        source = open_source(url)
        try:
            running = Consumer(engine, source, batch=batch)
            note(f"consuming {shown_url(url)} into {engine.safe_url}")

            def statistics() -> str:
                outcome = running.outcome
                return f"applied {outcome.applied} event(s), set aside {outcome.rejected}"

            run_until_signalled(running.run, statistics)
        finally:
            source.close()
    note(f"consumer stopped: {statistics()}")

"""`python -m docs.examples.order_service`: serve the order service with uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
import sys

import uvicorn

from engine import TurnoutError
from engine.brokers import open_publisher, open_source

from .app import create_app
from .shop import Settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m docs.examples.order_service",
        description="An order service embedding turnout (see docs/examples/order_service).",
    )
    parser.add_argument(
        "--database",
        default=os.environ.get("ORDER_SERVICE_DB", Settings.database),
        help="SQLAlchemy URL of the database (default: %(default)s)",
    )
    parser.add_argument(
        "--payments",
        default=os.environ.get("ORDER_SERVICE_PAYMENTS", Settings.payments),
        help="the stream of payment events to consume (default: %(default)s)",
    )
    parser.add_argument(
        "--changes",
        default=os.environ.get("ORDER_SERVICE_CHANGES", Settings.changes),
        help="the stream to publish state changes to (default: %(default)s)",
    )
    parser.add_argument(
        "--packing-seconds",
        type=float,
        default=3.0,
        help="how long packing an order takes, to watch it pass (default: %(default)s)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    settings = Settings(
        database=args.database,
        payments=args.payments,
        changes=args.changes,
        carrier_url=f"http://{args.host}:{args.port}",
        packing_seconds=args.packing_seconds,
    )
    try:  # a wrong URL or a missing client library, said plainly before serving
        open_publisher(settings.changes).close()
        open_source(settings.payments).close()
    except TurnoutError as exc:
        sys.exit(f"order service: {exc}")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("turnout").setLevel(logging.INFO)
    uvicorn.run(create_app(settings), host=args.host, port=args.port)


if __name__ == "__main__":
    main()

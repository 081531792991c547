"""A relay in a process of its own, for the tests that kill it mid-stream:
`python relay_process.py DATABASE_URL BROKER_URL NAME BATCH` relays until it is killed."""

from __future__ import annotations

import sys

from engine import Engine
from engine.brokers import Relay, open_publisher


def main(database: str, broker: str, name: str, batch: str) -> None:
    engine = Engine(database)
    Relay(engine, open_publisher(broker), name, batch=int(batch), idle=0.2).run()


if __name__ == "__main__":
    main(*sys.argv[1:])

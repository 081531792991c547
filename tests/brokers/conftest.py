"""Fixtures of the broker tests: the real servers on 127.0.0.1 (a skip when one is not
there, a failure when CI=true), a fresh Redis stream per test, deleted afterwards.

`require_service(host, port, name)` (from `broker_services.py`, importable by any test
module) is what every broker's fixture calls first; running `turnout relay` and
`turnout consume` as processes is in `broker_processes.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from broker_processes import Running, start_turnout
from broker_services import require_service, unique_name

from engine import Engine

DEFINITIONS = Path(__file__).parent / "definitions"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


@pytest.fixture
def redis_url() -> str:
    """The URL of the local Redis (database 0), once it answers."""
    require_service(REDIS_HOST, REDIS_PORT, "Redis")
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Any]:
    """A redis-py client of the local Redis, to look at streams as a test sees them."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def redis_stream(redis_client: Any) -> Iterator[str]:
    """A stream name of this test's own; the stream and its dead-letter stream are deleted
    after the test."""
    name = unique_name("turnout.test")
    try:
        yield name
    finally:
        redis_client.delete(name, f"{name}.dead")


@pytest.fixture
def broker_engine(store_url: str) -> Iterator[Engine]:
    """An Engine on an empty database (SQLite, then PostgreSQL) with the counter definition."""
    engine = Engine(store_url)
    engine.deploy(DEFINITIONS / "counter.yaml")
    try:
        yield engine
    finally:
        engine.close()


@pytest.fixture
def turnout_process(tmp_path: Path) -> Iterator[Callable[[Sequence[str], str], Running]]:
    """Start `turnout ARGS... --db DATABASE` in the background (output in the test's
    temporary directory); whatever is still running after the test is killed."""
    started: list[Running] = []

    def start(args: Sequence[str], database: str) -> Running:
        running = start_turnout(args, database, tmp_path / f"{args[0]}.log")
        started.append(running)
        return running

    yield start
    for running in started:
        if running.alive():
            running.kill()

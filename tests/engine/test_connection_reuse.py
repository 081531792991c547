"""SQLite connections are kept between transactions rather than handed back to the pool each
time: a bounded number, safe across threads, usable after a failed transaction, and all
closed with the engine."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from engine import Engine, EventRejected
from engine.store import PARKED_CONNECTIONS

DEFINITIONS = Path(__file__).parent / "definitions"


def test_threads_share_kept_connections_and_close_leaves_none_open(sqlite_url: str) -> None:
    engine = Engine(sqlite_url)
    engine.deploy(DEFINITIONS / "counter.yaml")
    counters = [engine.start("counter", {"count": 0}).id for _ in range(8)]
    errors: list[BaseException] = []

    def send_many(instance_id: str) -> None:
        try:
            for _ in range(50):
                engine.send(instance_id, "increment")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send_many, args=(c,)) for c in counters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [engine.get(c).context for c in counters] == [{"count": 50}] * 8
    pool = engine.store.engine.pool
    assert 1 <= pool.checkedout() <= PARKED_CONNECTIONS + 1  # kept ones only, none in use
    engine.close()
    assert pool.checkedout() == 0


def test_a_rejected_event_leaves_the_kept_connection_good(sqlite_url: str) -> None:
    engine = Engine(sqlite_url)
    try:
        engine.deploy(DEFINITIONS / "counter.yaml")
        started = engine.start("counter", {"count": 0})
        with pytest.raises(EventRejected):
            engine.send(started.id, "no_such_event")
        assert engine.send(started.id, "increment").context == {"count": 1}
        assert [e.kind for e in engine.history(started.id)] == ["start", "event"]
    finally:
        engine.close()

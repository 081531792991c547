"""SQLite connections are kept between transactions rather than handed back to the pool each
time: a bounded number, safe across threads, usable after a failed transaction, and all
closed with the engine."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from engine import Engine, EventRejected, ValueNotStorable
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


@pytest.mark.parametrize("text", ["nul \x00 inside", "a lone surrogate \ud800"])
def test_text_no_database_can_store_is_refused_before_it_reaches_one(
    store_url: str, text: str
) -> None:
    """PostgreSQL refuses a NUL character and the driver a lone surrogate, mid-pipeline,
    where the statements skipped after them once left the connection reaching for prepared
    statements the server never made; SQLite took both. Both are refused on both databases,
    before anything is sent, and the events around them apply."""
    engine = Engine(store_url)
    engine.deploy(DEFINITIONS / "counter.yaml")
    counter = engine.start("counter", {"count": 0}).id
    for number in range(12):  # past the driver's threshold for preparing a statement
        with pytest.raises(ValueNotStorable):
            engine.send(counter, "increment", {"note": text})
        with pytest.raises(ValueNotStorable):
            engine.start("counter", {"count": 0, "note": text}, key=f"refused-{number}")
        engine.send(counter, "increment", {"note": "plain"})
    assert engine.get(counter).context == {"count": 12}
    assert len(engine.instances(definition="counter")) == 1
    engine.close()

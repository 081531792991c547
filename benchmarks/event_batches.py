"""Batched event intake: `send_many` in batches of 100 against one `send` per event, the same
events to the same instances on the same database (SQLite, and PostgreSQL when given)."""

from __future__ import annotations

import statistics
from pathlib import Path

from engine import Engine

from .figures import REPEATS, Figure, median_rate

HERE = Path(__file__).parent
BATCH = 100


def batched_and_single(url: str, count: int, instances: int = 100) -> tuple[float, float]:
    """(events/s by send_many, BATCH per call; events/s by send), `count` events each over
    `instances` toggles, every event applied; each the median of REPEATS runs."""
    engine = Engine(url)
    try:
        engine.deploy(HERE / "definitions" / "toggle.yaml")
        ids = engine.start_many("bench_toggle", ({} for _ in range(instances)))
        events = [(ids[number % instances], "flip") for number in range(count)]

        def batched() -> int:
            for first in range(0, count, BATCH):
                outcomes = engine.send_many(events[first : first + BATCH])
                assert all(outcome.ok for outcome in outcomes)
            return count

        def single() -> int:
            for instance_id, event in events:
                engine.send(instance_id, event)
            return count

        # Alternated, one repeat of each at a time: a noisy spell of the machine then slows
        # both sides alike rather than one of them.
        rates = [(median_rate(batched, 1), median_rate(single, 1)) for _ in range(REPEATS)]
        return statistics.median(r[0] for r in rates), statistics.median(r[1] for r in rates)
    finally:
        engine.close()


def send_many_on_sqlite(workdir: Path, count: int = 5000) -> Figure:
    rates = batched_and_single(f"sqlite:///{workdir}/batches.db", count)
    return _figure("SQLite", rates, ">= 5x")


def send_many_on_postgres(url: str, count: int = 2000) -> Figure:
    from .contention import drop_schema, fresh_schema

    engine_url, schema = fresh_schema(url)
    try:
        return _figure("PostgreSQL", batched_and_single(engine_url, count), ">= 10x")
    finally:
        drop_schema(url, schema)


def _figure(label: str, rates: tuple[float, float], target: str) -> Figure:
    batched, single = rates
    return Figure(
        name=f"send_many, batches of {BATCH} ({label})",
        unit="events/s",
        value=batched,
        baseline_name="Engine.send, one event per call",
        baseline=single,
        target=target,
    )

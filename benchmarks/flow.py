"""Claims under flow control beside the unlimited claim, on one database: claims per second
with a global concurrency limit and with partitions per customer (flow_control.py).

Each run starts `count` one-task instances, then claims them 8 at a time, as a worker with 8
free slots does, answering each claimed task before the next claim (so that as many run as in
a worker); only the claims are timed.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from engine import Engine

from .figures import REPEATS, Figure

HERE = Path(__file__).parent
NAME = "bench.flow"
SLOTS = 8
CUSTOMERS = 100


def claim_rate(engine: Engine, count: int) -> float:
    """Claims per second over `count` fresh tasks, 8 per claim; only claims timed."""
    engine.start_many("bench_flow", ({"customer": n % CUSTOMERS} for n in range(count)))
    settle(engine)
    claimed, spent = 0, 0.0
    while True:
        began = time.perf_counter()
        tasks = engine.claim_tasks([NAME], limit=SLOTS, expire=False)
        spent += time.perf_counter() - began
        if not tasks:
            break
        claimed += len(tasks)
        for task in tasks:
            engine.complete_task(task.id, None, {})
    assert claimed == count, (claimed, count)
    return claimed / spent


def settle(engine: Engine) -> None:
    """Write SQLite's log back into the database before the claims are timed. Each run
    writes as many pages as the next, so the checkpoint SQLite makes every 1,000 pages would
    otherwise land in the timed claims of one kind of claim run after run, and not of the
    others: a few commits 10 ms long, most of the difference between two kinds."""
    if not engine.store.postgres:
        raw = engine.store.engine.raw_connection()
        try:
            driver = raw.driver_connection
            assert driver is not None
            driver.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            raw.close()
    gc.collect()


def rates(url: str, count: int = 1000, repeats: int = REPEATS) -> dict[str, float]:
    """The median claims/s of the three kinds of claim, runs interleaved on one database."""
    engine = Engine(url)
    engine.deploy(HERE / "definitions" / "flow.yaml")
    kinds: dict[str, Callable[[], object]] = {
        "unlimited": lambda: engine.clear_task_limit(NAME),
        "global": lambda: engine.limit_task(NAME, concurrency=SLOTS),
        "partitions": lambda: engine.limit_task(NAME, partition="input.customer"),
    }
    found: dict[str, list[float]] = {kind: [] for kind in kinds}
    try:
        for _ in range(repeats):
            for kind, configure in kinds.items():
                configure()
                found[kind].append(claim_rate(engine, count))
    finally:
        engine.close()
    return {kind: statistics.median(values) for kind, values in found.items()}


def flow_figures(workdir: Path, postgres: str | None) -> list[Figure]:
    """Claims/s under a global limit and under partitions, each beside the unlimited claim
    measured in the same run on the same database."""
    measured = [("SQLite", rates(f"sqlite:///{workdir}/flow.db"))]
    if postgres:
        from .contention import drop_schema, fresh_schema

        url, schema = fresh_schema(postgres)
        try:
            measured.append(("PostgreSQL", rates(url)))
        finally:
            drop_schema(postgres, schema)
    figures = []
    for label, found in measured:
        for kind, what in (
            ("global", f"a global concurrency limit of {SLOTS}"),
            ("partitions", f"partitions ({CUSTOMERS} customers, 1 running each)"),
        ):
            figures.append(
                Figure(
                    name=f"claim_tasks, {SLOTS} per claim, under {what} ({label})",
                    unit="claims/s",
                    value=found[kind],
                    baseline_name="the unlimited claim, same run and database",
                    baseline=found["unlimited"],
                    target=">= 0.8x",
                )
            )
    return figures


if __name__ == "__main__":
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for figure in flow_figures(Path(tmp), os.environ.get("TURNOUT_TEST_POSTGRES_URL")):
            print(
                f"{figure.name}: {figure.value:,.0f} vs {figure.baseline:,.0f} "
                f"= {figure.ratio:.2f}x"
            )

"""The figure of retention: `Engine.purge` of 5,000 finished instances (each with its start
entry in history), in batches of 500, beside `start_many` of the same 5,000 instances in
the same run and database (500 per transaction): how fast old instances go against how fast
new ones come.
"""

from __future__ import annotations

import gc
import statistics
import time
from datetime import timedelta
from pathlib import Path

from engine import Engine

FINISHED = Path(__file__).parent / "definitions" / "finished.yaml"
REPEATS = 3


def start_and_purge_rates(url: str, count: int = 5000) -> tuple[float, float]:
    """Median instances/s of start_many of `count` instances finished at once, and of the
    purge (no archive) that deletes them again."""
    starts, purges = [], []
    with Engine(url) as engine:
        engine.deploy(FINISHED)
        for _ in range(REPEATS):
            # A full collection of Python's garbage, owed by whatever ran before, would
            # otherwise land inside one timed phase or the other: collected before each.
            gc.collect()
            began = time.perf_counter()
            started = engine.start_many("bench_finished", ({} for _ in range(count)))
            starts.append(len(started) / (time.perf_counter() - began))
            gc.collect()
            began = time.perf_counter()
            purged = engine.purge(finished_before=timedelta(0), batch=500)
            purges.append(purged.instances / (time.perf_counter() - began))
            if purged.instances != count:
                raise AssertionError(f"purged {purged.instances} of {count}")
    return statistics.median(starts), statistics.median(purges)

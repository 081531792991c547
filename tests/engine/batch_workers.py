"""The worker process of the group-commit tests: `work()` with batching on, its handlers
trivial, so that answers queue up in batches and a SIGKILL lands in the middle of one."""

from __future__ import annotations

from stopping import stop_when_file_exists

from engine import Engine


def work_in_batches(url: str, stop_file: str) -> None:
    """Child process: run the pipeline tasks, 16 in hand and up to 16 answers per
    transaction, until `stop_file` exists (or the process is killed). A short lease: the
    tasks of a killed worker are soon claimed again by the others."""
    stop = stop_when_file_exists(stop_file)
    engine = Engine(url, lease=1)
    engine.task("pipeline.fetch")(lambda data: {"fetched": data["n"]})
    engine.task("pipeline.store")(lambda data: {"stored": data["n"]})
    try:
        engine.work(concurrency=16, batch=16, linger=0.005, stop=stop, poll_interval=0.02)
    finally:
        engine.close()

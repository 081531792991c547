"""Wake-up latency on PostgreSQL: from `send` of an event that makes a task ready to that
task's handler starting in an idle worker in another process, with LISTEN/NOTIFY (the
default) against polling only (`Engine(..., listen=False)`).

The sends are spread at random over the worker's poll period, so the polling figure is
what a caller waits on average, not a lucky phase.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from engine import AsyncEngine, Engine

HERE = Path(__file__).parent
SPAWN = multiprocessing.get_context("spawn")
POLL_INTERVAL = 0.2  # the `work()` default


def sync_worker(url: str, listen: bool, started: Any, ready: Any, stop: Any) -> None:
    """Child process: `Engine.work` with one slot, reporting when each handler starts."""
    engine = Engine(url, listen=listen)
    engine.task("bench.wake")(lambda data: started.put(time.perf_counter()))
    halt = threading.Event()

    def relay_stop() -> None:
        stop.wait()
        halt.set()

    threading.Thread(target=relay_stop, daemon=True).start()
    ready.set()
    try:
        engine.work(concurrency=1, stop=halt, poll_interval=POLL_INTERVAL)
    finally:
        engine.close()


def async_worker(url: str, listen: bool, started: Any, ready: Any, stop: Any) -> None:
    """Child process: `AsyncEngine.work` with one slot and an async def handler."""

    async def run() -> None:
        async with AsyncEngine(url, listen=listen) as aengine:

            @aengine.task("bench.wake")
            async def wake(data: Any) -> None:
                started.put(time.perf_counter())

            worker = asyncio.create_task(aengine.work(concurrency=1, poll_interval=POLL_INTERVAL))
            ready.set()
            await asyncio.to_thread(stop.wait)
            worker.cancel()
            try:
                await worker
            except asyncio.CancelledError:
                pass

    asyncio.run(run())


def median_latencies_ms(
    url: str, listen: bool, use_async: bool = False, samples: int = 40
) -> tuple[float, float]:
    """The medians, over `samples` sends, of the time to the handler starting from the call
    to `send` and from its return (the commit)."""
    engine = Engine(url)
    engine.deploy(HERE / "definitions" / "wake.yaml")
    ids = [engine.start("bench_wake").id for _ in range(samples)]
    started, ready, stop = SPAWN.Queue(), SPAWN.Event(), SPAWN.Event()
    target = async_worker if use_async else sync_worker
    worker = SPAWN.Process(target=target, args=(url, listen, started, ready, stop))
    worker.start()
    pick = random.Random(16)
    from_send: list[float] = []
    from_commit: list[float] = []
    try:
        if not ready.wait(60):
            raise RuntimeError("the worker process did not start")
        time.sleep(0.5)  # its LISTEN in place, the worker idle
        for instance_id in ids:
            time.sleep(pick.uniform(0.05, 0.05 + POLL_INTERVAL * 1.5))
            began = time.perf_counter()
            engine.send(instance_id, "go")
            committed = time.perf_counter()
            handler_started = float(started.get(timeout=30))
            from_send.append(handler_started - began)
            from_commit.append(handler_started - committed)
    finally:
        stop.set()
        worker.join(30)
        if worker.is_alive():
            worker.kill()
        engine.close()
    return statistics.median(from_send) * 1000, statistics.median(from_commit) * 1000


def wake_figures(postgres: str) -> dict[tuple[str, bool], tuple[float, float]]:
    """For each worker ("Engine.work", "AsyncEngine.work") and `listen`, the medians from
    `send` and from its commit, in ms, each run on a fresh schema."""
    from .contention import drop_schema, fresh_schema

    figures = {}
    for label, use_async in (("Engine.work", False), ("AsyncEngine.work", True)):
        for listen in (True, False):
            url, schema = fresh_schema(postgres)
            try:
                figures[label, listen] = median_latencies_ms(url, listen, use_async)
            finally:
                drop_schema(postgres, schema)
    return figures

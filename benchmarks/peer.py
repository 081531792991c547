"""turnout beside DBOS Transact, the peer, on the same PostgreSQL server and workloads.

Runs alternate (turnout, DBOS, turnout, ...) so both meet the same moments of a shared,
noisy machine; each figure is the median of REPEATS runs of each side. Every run starts
afresh: turnout in a new schema, DBOS in a new database of its own (its system database,
created and dropped here) and a new process (benchmarks/peer_dbos.py). What is counted is
completed work: a workflow finished, an event applied (a message received), an instance or
workflow durably started.

`python -m benchmarks.peer` runs this section alone; `make bench` runs it with the others.
When `dbos` is not installed (the `bench` extra), the section is skipped.
"""

from __future__ import annotations

import importlib
import importlib.util
import multiprocessing
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from engine import Engine

from .contention import drop_schema, fresh_schema
from .figures import REPEATS, Figure, shown

HERE = Path(__file__).parent
SPAWN = multiprocessing.get_context("spawn")
PEER = "DBOS Transact"
# Moderate counts: the whole section takes a few minutes on a 2-core machine. Two processes
# get as many instances as the figure of scale.py, so turnout's run stays long beside the
# 50 ms between looks for the end.
WORKFLOWS = 300
WORKFLOWS_TWO_PROCESSES = 1000
WAITING = 100
EVENTS = 400
STARTS = 300


def peer_installed() -> bool:
    return importlib.util.find_spec("dbos") is not None


# -- running each side ---------------------------------------------------------------------------
def _peer_run(workload: str, arguments: tuple[Any, ...], results: Any) -> None:
    """Child process: one DBOS run of `workload` (a function of benchmarks.peer_dbos)."""
    module = importlib.import_module("benchmarks.peer_dbos")
    results.put(getattr(module, workload)(*arguments))


def peer_rate(postgres: str, workload: str, *arguments: Any) -> float:
    """One DBOS run in a process of its own, on a database created for it and dropped after."""
    server = make_url(postgres.replace("+psycopg", ""))
    name = f"turnout_bench_dbos_{uuid.uuid4().hex[:8]}"
    admin = server.render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    try:
        results = SPAWN.Queue()
        url = server.set(database=name).render_as_string(hide_password=False)
        child = SPAWN.Process(target=_peer_run, args=(workload, (url, *arguments), results))
        child.start()
        rate: float = _result_of(child, results)
        child.join(60)
        return rate
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _result_of(child: Any, results: Any, limit: float = 600) -> float:
    """The child's rate; a child that died or ran past `limit` seconds is an error, not a hang."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            rate: float = results.get(timeout=1)
            return rate
        except queue.Empty:
            if not child.is_alive() and results.empty():  # a rate put just before it ended
                raise RuntimeError(f"the {PEER} run failed (exit code {child.exitcode})") from None
    child.terminate()
    raise RuntimeError(f"the {PEER} run took more than {limit:g} s")


def in_fresh_schema(postgres: str, run: Callable[[str], float]) -> float:
    url, schema = fresh_schema(postgres)
    try:
        return run(url)
    finally:
        drop_schema(postgres, schema)


def alternating(
    ours: Callable[[], float], peers: Callable[[], float], repeats: int = REPEATS
) -> tuple[float, float]:
    """Medians of `repeats` runs of each side, the runs taken in turn."""
    our_rates, peer_rates = [], []
    for _ in range(repeats):
        our_rates.append(ours())
        peer_rates.append(peers())
    return statistics.median(our_rates), statistics.median(peer_rates)


# -- turnout's side ------------------------------------------------------------------------------
def _until_finished(engine: Engine, definition: str) -> None:
    # Looking every 50 ms, as the peer's side does.
    while engine.instances(definition=definition, status="running", limit=1):
        time.sleep(0.05)


def tasks_in_one_process(url: str, instances: int = WORKFLOWS) -> float:
    """Three-task instances finished per second by a worker (work(), in a thread) in the
    process that started them with start_many."""
    engine = Engine(url)
    engine.deploy(HERE / "definitions" / "three_tasks.yaml")
    engine.task("bench.step")(lambda value: None)
    stop = threading.Event()
    worker = threading.Thread(
        target=engine.work, kwargs={"concurrency": 4, "stop": stop, "poll_interval": 0.01}
    )
    worker.start()
    try:
        engine.start("bench_three_tasks")  # warm-up: the worker is running, its paths loaded
        _until_finished(engine, "bench_three_tasks")
        began = time.perf_counter()
        engine.start_many("bench_three_tasks", ({"n": n} for n in range(instances)))
        _until_finished(engine, "bench_three_tasks")
        elapsed = time.perf_counter() - began
        finished = engine.instances(
            definition="bench_three_tasks", status="succeeded", limit=10_000
        )
        assert len(finished) == instances + 1, "an instance did not finish"
        return instances / elapsed
    finally:
        stop.set()
        worker.join(60)
        engine.close()


def tasks_by_two_processes(url: str, workdir: Path) -> float:
    from .scale import tasks_by_worker_processes

    return tasks_by_worker_processes(url, workdir, instances=WORKFLOWS_TWO_PROCESSES)


def events_to_waiting_instances(url: str, instances: int = WAITING, count: int = EVENTS) -> float:
    """Engine.send per second to instances waiting in a state (each event applied when send
    returns: the transition and its history row committed)."""
    engine = Engine(url)
    engine.deploy(HERE / "definitions" / "toggle.yaml")
    ids = [engine.start("bench_toggle").id for _ in range(instances)]
    try:
        began = time.perf_counter()
        for number in range(count):
            engine.send(ids[number % instances], "flip")
        elapsed = time.perf_counter() - began
        applied = sum(engine.get(instance_id).revision - 1 for instance_id in ids)
        assert applied == count, "an event was not applied"
        return count / elapsed
    finally:
        engine.close()


def starts(url: str, count: int = STARTS) -> float:
    """Engine.start per second of a definition whose instances wait for an event."""
    engine = Engine(url)
    engine.deploy(HERE / "definitions" / "toggle.yaml")
    try:
        began = time.perf_counter()
        for _ in range(count):
            engine.start("bench_toggle")
        elapsed = time.perf_counter() - began
        assert len(engine.instances(definition="bench_toggle", limit=10_000)) == count
        return count / elapsed
    finally:
        engine.close()


# -- the figures ---------------------------------------------------------------------------------
def peer_figures(postgres: str, workdir: Path) -> list[Figure]:
    """Four figures, each turnout's median beside DBOS's on the same server."""

    def figure(name: str, unit: str, rates: tuple[float, float], peer: str, target: str) -> Figure:
        return Figure(f"{name} (PostgreSQL)", unit, rates[0], f"{PEER}: {peer}", rates[1], target)

    one = alternating(
        lambda: in_fresh_schema(postgres, tasks_in_one_process),
        lambda: peer_rate(postgres, "workflows_in_one_process", WORKFLOWS),
    )
    two = alternating(
        lambda: in_fresh_schema(postgres, lambda url: tasks_by_two_processes(url, workdir)),
        lambda: peer_rate(postgres, "workflows_by_worker_processes", WORKFLOWS_TWO_PROCESSES),
    )
    events = alternating(
        lambda: in_fresh_schema(postgres, events_to_waiting_instances),
        lambda: peer_rate(postgres, "events_to_waiting_workflows", WAITING, EVENTS),
    )
    started = alternating(
        lambda: in_fresh_schema(postgres, starts),
        lambda: peer_rate(postgres, "starts", STARTS),
    )
    return [
        figure(
            "3-task instances, worker in the same process",
            "workflows/s",
            one,
            "3-step workflows from a queue, same process",
            "reported",
        ),
        figure(
            "3-task instances by 2 work() processes",
            "workflows/s",
            two,
            "3-step workflows from a queue, 2 processes",
            ">= 10x",
        ),
        figure(
            "Engine.send to instances waiting in a state",
            "events/s",
            events,
            "DBOS.send to workflows waiting in DBOS.recv",
            ">= 3x",
        ),
        figure(
            "Engine.start of an instance that waits",
            "starts/s",
            started,
            "DBOS.start_workflow of a workflow that waits",
            "reported",
        ),
    ]


def main() -> int:
    postgres = os.environ.get("TURNOUT_BENCH_POSTGRES_URL") or os.environ.get(
        "TURNOUT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    if not peer_installed():
        print(f"{PEER} figures skipped: `dbos` is not installed (pip install '.[bench]')")
        return 0
    with tempfile.TemporaryDirectory(prefix="turnout-bench-") as tmp:
        figures = peer_figures(postgres, Path(tmp))
    print(f"turnout beside {PEER}, median of {REPEATS} alternating runs each")
    for found in figures:
        print(
            f"{found.name}: {shown(found.value)} {found.unit} | {found.baseline_name}: "
            f"{shown(found.baseline)} {found.unit} | {found.ratio:.3g}x (target {found.target})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Children of call states run by two worker processes while their parents wait: every
child finishes, and each child's end is applied to its parent once."""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from waiting import until

from engine import Engine

DEFINITIONS = Path(__file__).parent / "definitions"
SPAWN = multiprocessing.get_context("spawn")
PARENTS = 4
BRANCHES = 3


def run_worker(url: str, log: str, stop: Any) -> None:
    """Child process: run `work()` for the children's tasks until `stop` is set."""
    engine = Engine(url)

    def handler(task: str) -> Any:
        def run(data: dict[str, Any]) -> dict[str, Any]:
            with Path(log).open("a") as out:
                out.write(f"{task} {os.getpid()}\n")
            return {f"{task}_by": os.getpid()}

        return run

    engine.task("worked.fetch")(handler("fetch"))
    engine.task("worked.store")(handler("store"))
    stop_work = threading.Event()
    threading.Thread(target=lambda: (stop.wait(), stop_work.set()), daemon=True).start()
    try:
        engine.work(concurrency=3, stop=stop_work, poll_interval=0.05)
    finally:
        engine.close()


@pytest.fixture
def real_engine(store_url: str) -> Iterator[Engine]:
    """An Engine on the real clock, as the worker processes use."""
    engine = Engine(store_url)
    try:
        yield engine
    finally:
        engine.close()


def test_two_worker_processes_run_the_children_and_each_end_is_applied_once(
    real_engine: Engine, store_url: str, tmp_path: Path
) -> None:
    for name in ("call_worked", "call_fanout"):
        real_engine.deploy(DEFINITIONS / f"{name}.yaml")
    parents = [real_engine.start("call_fanout").id for _ in range(PARENTS)]
    stop = SPAWN.Event()
    log = tmp_path / "tasks.log"
    workers = [SPAWN.Process(target=run_worker, args=(store_url, str(log), stop)) for _ in "ab"]
    for worker in workers:
        worker.start()
    try:
        finished = until(
            lambda: all(real_engine.get(parent).finished for parent in parents), seconds=120
        )
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
    assert finished
    assert [worker.exitcode for worker in workers] == [0, 0]
    for parent in parents:
        instance = real_engine.get(parent)
        assert (instance.status, instance.state) == ("succeeded", "finished")
        assert len(instance.children) == BRANCHES
        assert all(real_engine.get(child).status == "succeeded" for child in instance.children)
        history = real_engine.history(parent)
        ends = Counter(e.from_state for e in history if (e.kind, e.event) == ("call", "done"))
        assert ends == {f"fan.{branch}.call": 1 for branch in ("one", "two", "three")}
        assert sorted(instance.context) == ["one", "three", "two"]
    ran = Counter(line.split()[0] for line in log.read_text().splitlines())
    assert ran == {"fetch": PARENTS * BRANCHES, "store": PARENTS * BRANCHES}

"""Several processes, each with its own Engine on one database: no lost or doubled updates.

Child processes are started with the spawn context, so each imports the engine afresh and
shares nothing with the test but the database URL.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine import Engine

DEFINITIONS = Path(__file__).parent / "definitions"
SPAWN = multiprocessing.get_context("spawn")


def send_increments(url: str, instance_id: str, count: int, start_together: Any) -> None:
    """Child process: send `count` increment events to one instance."""
    eng = Engine(url)
    try:
        start_together.wait(timeout=60)
        for _ in range(count):
            eng.send(instance_id, "increment")
    finally:
        eng.close()


def send_to_shared_instances(
    url: str, ids: list[str], count: int, out: str, start_together: Any
) -> None:
    """Child process: send `count` increments round-robin over `ids`; log each revision seen."""
    eng = Engine(url)
    seen: list[str] = []
    try:
        start_together.wait(timeout=60)
        for number in range(count):
            instance_id = ids[(number + os.getpid()) % len(ids)]
            seen.append(f"{instance_id} {eng.send(instance_id, 'increment').revision}")
    finally:
        eng.close()
        Path(out).write_text("\n".join(seen) + "\n")


def send_keyed_increments(url: str, instance_id: str, keys: int, start_together: Any) -> None:
    """Child process: send one increment under each idempotency key `k0` ... `k{keys-1}`."""
    eng = Engine(url)
    try:
        start_together.wait(timeout=60)
        for number in range(keys):
            eng.send(instance_id, "increment", idempotency_key=f"k{number}")
    finally:
        eng.close()


def start_with_key(url: str, key: str, out: str, start_together: Any) -> None:
    """Child process: start a counter with business key `key`; write what happened."""
    from engine import DuplicateKey

    eng = Engine(url)
    try:
        start_together.wait(timeout=60)
        try:
            outcome = eng.start("counter", {"count": 0}, key=key).id
        except DuplicateKey:
            outcome = "duplicate"
    finally:
        eng.close()
    Path(out).write_text(outcome)


def run_pipeline_worker(url: str, calls_dir: str, stop: Any) -> None:
    """Child process: run `work()` for the pipeline tasks until `stop` is set."""
    eng = Engine(url)
    log = Path(calls_dir) / f"{os.getpid()}.log"

    def handler(task: str) -> Any:
        def run(data: dict[str, Any]) -> dict[str, Any]:
            with log.open("a") as out:
                out.write(f"{task} {data['n']}\n")
            return {f"{task}_pid": os.getpid()}

        return run

    eng.task("pipeline.fetch")(handler("fetch"))
    eng.task("pipeline.store")(handler("store"))
    stop_work = threading.Event()
    threading.Thread(target=_set_when, args=(stop, stop_work), daemon=True).start()
    try:
        eng.work(concurrency=2, stop=stop_work)
    finally:
        eng.close()


def run_hanging_worker(url: str, marker: str) -> None:
    """Child process: claim jobs.work and hang in the handler until killed."""
    eng = Engine(url)

    @eng.task("jobs.work")
    def hang(data: Any) -> Any:
        Path(marker).write_text("claimed")
        threading.Event().wait()

    eng.work(concurrency=1, stop=threading.Event())


def later_clock() -> datetime:
    """The real time one hour from now: every lease taken by an earlier worker has lapsed."""
    return datetime.now(UTC) + timedelta(hours=1)


def run_late_worker(url: str, stop: Any) -> None:
    """Child process: a worker whose clock is an hour ahead, answering jobs.work at once."""
    eng = Engine(url, clock=later_clock)
    eng.task("jobs.work")(lambda data: {"finished_by": "second worker"})
    stop_work = threading.Event()
    threading.Thread(target=_set_when, args=(stop, stop_work), daemon=True).start()
    try:
        eng.work(concurrency=1, stop=stop_work)
    finally:
        eng.close()


def claim_until_empty(url: str, worker: str, out: str, start_together: Any) -> None:
    """Child process: claim pipeline.fetch tasks two at a time until none is left."""
    eng = Engine(url)
    claimed: list[str] = []
    try:
        start_together.wait(timeout=60)
        while batch := eng.claim_tasks(["pipeline.fetch"], worker, 600, limit=2):
            claimed.extend(task.id for task in batch)
    finally:
        eng.close()
        Path(out).write_text("\n".join(claimed))


def _set_when(signal: Any, event: threading.Event) -> None:
    signal.wait()
    event.set()


@pytest.fixture
def real_engine(store_url: str) -> Iterator[Engine]:
    """An Engine on the real clock, as the child processes use."""
    eng = Engine(store_url)
    try:
        yield eng
    finally:
        eng.close()


def _join_all(processes: list[Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for process in processes:
        process.join(max(0.1, deadline - time.monotonic()))
    alive = [p for p in processes if p.is_alive()]
    for process in alive:
        process.terminate()
        process.join(5)
    assert not alive, f"{len(alive)} process(es) did not finish in {timeout}s"
    assert [p.exitcode for p in processes] == [0] * len(processes)


def test_events_from_four_processes_to_one_instance_are_each_applied_once(
    real_engine: Engine, store_url: str
) -> None:
    real_engine.deploy(DEFINITIONS / "counter.yaml")
    inst = real_engine.start("counter", {"count": 0})
    start_history = len(real_engine.history(inst.id))
    senders, per_sender = 4, 25
    barrier = SPAWN.Barrier(senders)
    processes = [
        SPAWN.Process(target=send_increments, args=(store_url, inst.id, per_sender, barrier))
        for _ in range(senders)
    ]
    for process in processes:
        process.start()
    _join_all(processes, timeout=120)

    total = senders * per_sender
    final = real_engine.get(inst.id)
    history = real_engine.history(inst.id)
    assert final.context == {"count": total}
    assert final.revision == inst.revision + total
    assert len(history) == start_history + total
    assert [e.seq for e in history] == list(range(1, len(history) + 1))
    assert [e.event for e in history[start_history:]] == ["increment"] * total


def test_four_processes_of_250_events_to_shared_instances_apply_each_once_in_order(
    real_engine: Engine, store_url: str, tmp_path: Path
) -> None:
    real_engine.deploy(DEFINITIONS / "counter.yaml")
    ids = [real_engine.start("counter", {"count": 0}).id for _ in range(3)]
    senders, per_sender = 4, 250
    barrier = SPAWN.Barrier(senders)
    logs = [tmp_path / f"sender{n}.log" for n in range(senders)]
    processes = [
        SPAWN.Process(
            target=send_to_shared_instances, args=(store_url, ids, per_sender, str(log), barrier)
        )
        for log in logs
    ]
    for process in processes:
        process.start()
    _join_all(processes, timeout=240)

    seen: dict[str, list[list[int]]] = {i: [] for i in ids}
    for log in logs:
        mine: dict[str, list[int]] = {i: [] for i in ids}
        pairs = log.read_text().split()
        for instance_id, revision in zip(pairs[0::2], pairs[1::2], strict=True):
            mine[instance_id].append(int(revision))
        for instance_id, revisions in mine.items():
            # what one sender sees of one instance only ever moves forward
            assert revisions == sorted(set(revisions))
            seen[instance_id].append(revisions)
    total = 0
    for instance_id in ids:
        final = real_engine.get(instance_id)
        history = real_engine.history(instance_id)
        events = final.context["count"]
        revisions = sorted(r for per in seen[instance_id] for r in per)
        # every event got its own revision: none lost, none applied twice
        assert revisions == list(range(2, final.revision + 1))
        assert len(revisions) == events
        assert [e.seq for e in history] == list(range(1, len(history) + 1))
        assert [e.event for e in history[1:]] == ["increment"] * events
        total += events
    assert total == senders * per_sender


def test_worker_processes_finish_every_instance_and_apply_each_result_once(
    real_engine: Engine, store_url: str, tmp_path: Path
) -> None:
    real_engine.deploy(DEFINITIONS / "pipeline.yaml")
    count = 24
    ids = [real_engine.start("pipeline", {"n": n}).id for n in range(count)]
    calls_dir = tmp_path / "calls"
    calls_dir.mkdir()
    stop = SPAWN.Event()
    workers = [
        SPAWN.Process(target=run_pipeline_worker, args=(store_url, str(calls_dir), stop))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            running = real_engine.instances(definition="pipeline", status="running", limit=count)
            if not running:
                break
            time.sleep(0.2)
    finally:
        stop.set()
        _join_all(workers, timeout=60)

    calls: Counter[tuple[str, int]] = Counter()
    for log in calls_dir.glob("*.log"):
        for line in log.read_text().splitlines():
            task, number = line.split()
            calls[(task, int(number))] += 1
    applied = 0
    stale = 0
    for index, instance_id in enumerate(ids):
        inst = real_engine.get(instance_id)
        assert inst.status == "succeeded", f"instance {index} is {inst.status} in {inst.state}"
        history = real_engine.history(instance_id)
        task_entries = [(e.from_state, e.to_state) for e in history if e.kind == "task"]
        assert task_entries == [("fetch", "store"), ("store", "finished")]
        applied += len(task_entries)
        stale += sum(1 for e in history if e.kind == "stale")
        assert calls[("fetch", index)] >= 1 and calls[("store", index)] >= 1
    assert sum(calls.values()) == applied + stale
    # no worker died and every lease outlived its handler: nothing needed a second run
    assert stale == 0
    assert set(calls.values()) == {1}


def test_task_of_a_killed_worker_is_run_again_by_another_after_its_lease_lapses(
    real_engine: Engine, store_url: str, tmp_path: Path
) -> None:
    real_engine.deploy(DEFINITIONS / "one_task.yaml")
    inst = real_engine.start("one_task", {})
    marker = tmp_path / "claimed"
    hanging = SPAWN.Process(target=run_hanging_worker, args=(store_url, str(marker)))
    hanging.start()
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the first worker never ran the task"
    finally:
        hanging.kill()
        hanging.join(10)
    assert real_engine.get(inst.id).state == "work"

    stop = SPAWN.Event()
    late = SPAWN.Process(target=run_late_worker, args=(store_url, stop))
    late.start()
    try:
        deadline = time.monotonic() + 60
        while real_engine.get(inst.id).status == "running" and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        _join_all([late], timeout=30)
    done = real_engine.get(inst.id)
    assert done.state == "finished"
    assert done.context == {"finished_by": "second worker"}
    task_entries = [e for e in real_engine.history(inst.id) if e.kind == "task"]
    assert len(task_entries) == 1


def test_concurrent_claims_never_hand_one_task_to_two_workers(
    real_engine: Engine, store_url: str, tmp_path: Path
) -> None:
    real_engine.deploy(DEFINITIONS / "pipeline.yaml")
    count = 30
    for number in range(count):
        real_engine.start("pipeline", {"n": number})
    claimers = 3
    barrier = SPAWN.Barrier(claimers)
    outputs = [tmp_path / f"claims-{n}.txt" for n in range(claimers)]
    processes = [
        SPAWN.Process(target=claim_until_empty, args=(store_url, f"w{index}", str(out), barrier))
        for index, out in enumerate(outputs)
    ]
    for process in processes:
        process.start()
    _join_all(processes, timeout=120)
    claimed = [line for out in outputs for line in out.read_text().split()]
    assert len(claimed) == count
    assert len(set(claimed)) == count


def test_same_idempotency_keys_from_four_processes_are_applied_once_each(
    real_engine: Engine, store_url: str
) -> None:
    real_engine.deploy(DEFINITIONS / "counter.yaml")
    inst = real_engine.start("counter", {"count": 0})
    senders, keys = 4, 20
    barrier = SPAWN.Barrier(senders)
    processes = [
        SPAWN.Process(target=send_keyed_increments, args=(store_url, inst.id, keys, barrier))
        for _ in range(senders)
    ]
    for process in processes:
        process.start()
    _join_all(processes, timeout=120)
    final = real_engine.get(inst.id)
    assert final.context == {"count": keys}
    assert final.revision == inst.revision + keys
    assert len(real_engine.history(inst.id)) == 1 + keys


def test_racing_starts_with_one_business_key_create_one_instance(
    real_engine: Engine, store_url: str, tmp_path: Path
) -> None:
    real_engine.deploy(DEFINITIONS / "counter.yaml")
    racers = 4
    barrier = SPAWN.Barrier(racers)
    outputs = [tmp_path / f"start-{n}.txt" for n in range(racers)]
    processes = [
        SPAWN.Process(target=start_with_key, args=(store_url, "order-1", str(out), barrier))
        for out in outputs
    ]
    for process in processes:
        process.start()
    _join_all(processes, timeout=120)
    outcomes = sorted(out.read_text() for out in outputs)
    created = [o for o in outcomes if o != "duplicate"]
    assert len(created) == 1
    assert outcomes.count("duplicate") == racers - 1
    assert [i.id for i in real_engine.instances(key="order-1")] == created

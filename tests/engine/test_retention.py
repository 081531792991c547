"""Retention: `Engine.purge` deletes finished instances with their rows in bounded batches,
archiving them first when asked, while workers run; running instances are never touched;
a definition's `retention` is applied by workers."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine import AsyncEngine, Engine, InstanceNotFound, InvalidInput
from engine.retention import PurgeResult, read_archive
from engine.tables import history_t, idempotency_t, instances_t, priorities_t, tasks_t
from engine.worker import Worker

DAY = timedelta(days=1)
KEPT_A_DAY = """
name: kept_a_day
retention: 1d
initial: waiting
states:
  waiting:
    on: {stop: stopped}
  stopped: {final: true}
"""


def _rows(engine: Engine, table: sa.Table, ids: list[str]) -> int:
    column = table.c.id if table is instances_t else table.c.instance_id
    with engine.store.core() as conn:
        query = sa.select(sa.func.count()).select_from(table).where(column.in_(ids))
        return int(conn.execute(query).scalar_one())


def _finished_mix(engine: Engine) -> dict[str, list[str]]:
    """Instances that succeeded (some with idempotency keys), were cancelled, or failed
    (with their tasks); by status."""
    succeeded = []
    for number in range(12):
        instance = engine.start("counter", {"count": 0})
        engine.send(instance.id, "increment", idempotency_key=f"inc-{number}")
        succeeded.append(engine.send(instance.id, "stop").id)
    cancelled = [engine.cancel(engine.start("counter", {"count": 0}).id).id for _ in range(5)]
    failing = [engine.start("fragile", {}).id for _ in range(6)]

    def fragile(data: Any) -> Any:
        raise RuntimeError("broken for good")

    engine.task("jobs.fragile")(fragile)
    engine.run_until_idle()
    assert {engine.get(i).status for i in failing} == {"failed"}
    return {"succeeded": succeeded, "cancelled": cancelled, "failed": failing}


def test_purge_in_batches_while_two_workers_run(
    store_url: str, clock: Any, deploy_on: Callable[..., Any], tmp_path: Path
):
    with Engine(store_url, clock=clock) as engine:
        for name in ("counter", "one_task", "fragile"):
            deploy_on(engine, name)
        old = _finished_mix(engine)
        old_ids = [i for ids in old.values() for i in ids]
        before = {i: (engine.get(i), engine.history(i)) for i in old_ids}
        counts = {
            table.name: _rows(engine, table, old_ids)
            for table in (history_t, tasks_t, idempotency_t)
        }
        clock.advance(2 * DAY)
        recent = engine.send(engine.start("counter", {"count": 0}).id, "stop").id
        waiting = [engine.start("counter", {"count": 0}).id for _ in range(10)]
        worked = [engine.start("one_task", {"n": n}).id for n in range(40)]
        engine.task("jobs.work")(lambda data: {"n": data["n"]})
        stop = threading.Event()
        workers = [
            threading.Thread(target=Worker(engine, concurrency=2).work, args=(stop, 0.01))
            for _ in range(2)
        ]
        for worker in workers:
            worker.start()
        try:
            archive = tmp_path / "purged.jsonl"
            result = engine.purge(finished_before=DAY, batch=4, archive=archive)
        finally:
            stop.set()
            for worker in workers:
                worker.join(30)
        engine.run_until_idle()

        assert result == PurgeResult(
            instances=len(old_ids),
            history=counts["turnout_history"],
            tasks=counts["turnout_tasks"],
            timers=0,
            idempotency=counts["turnout_idempotency"],
            batches=len(old_ids) // 4 + 1,
        )
        assert counts["turnout_tasks"] == 6 and counts["turnout_idempotency"] == 12
        for table in (instances_t, history_t, tasks_t, idempotency_t):
            assert _rows(engine, table, old_ids) == 0
        for instance_id in old_ids[:3]:
            with pytest.raises(InstanceNotFound):
                engine.get(instance_id)
        assert engine.get(recent).status == "succeeded"
        assert {engine.get(i).status for i in waiting} == {"running"}
        assert {engine.get(i).status for i in worked} == {"succeeded"}
        assert {engine.get(i).context["n"] for i in worked} == set(range(40))
        archived = list(read_archive(archive))
        assert sorted(item.instance.id for item in archived) == sorted(old_ids)
        for item in archived:
            instance, history = before[item.instance.id]
            assert item.instance == instance
            assert item.history == history
        failed = next(item for item in archived if item.instance.status == "failed")
        assert failed.instance.error is not None
        assert failed.machine  # what a redrive would need, kept


def test_a_dry_run_counts_what_a_purge_deletes(
    engine: Engine, clock: Any, deploy: Callable[..., Any]
):
    for name in ("counter", "fragile"):
        deploy(name)
    old = _finished_mix(engine)
    clock.advance(2 * DAY)

    dry = engine.purge(finished_before=DAY, dry_run=True)
    assert engine.get(old["succeeded"][0]).status == "succeeded"
    done = engine.purge(finished_before=DAY, batch=5)

    assert dry.dry_run and not done.dry_run
    assert (dry.instances, dry.history, dry.tasks, dry.idempotency) == (
        done.instances,
        done.history,
        done.tasks,
        done.idempotency,
    )
    assert done.instances == 23
    assert engine.purge(finished_before=DAY, dry_run=True).instances == 0


def test_status_definition_age_and_batches_choose_what_goes(
    engine: Engine, clock: Any, deploy: Callable[..., Any]
):
    for name in ("counter", "fragile"):
        deploy(name)
    old = _finished_mix(engine)
    clock.advance(2 * DAY)
    engine.send(engine.start("counter", {"count": 0}).id, "stop")

    assert engine.purge(finished_before=3 * DAY).instances == 0
    assert engine.purge(finished_before=DAY, status="failed").instances == 6
    assert engine.purge(finished_before=DAY, definition="fragile").instances == 0
    stream = io.StringIO()
    limited = engine.purge(
        finished_before=clock() - DAY, status=["cancelled"], batch=2, batches=2, archive=stream
    )
    assert (limited.instances, limited.batches) == (4, 2)
    stream.seek(0)
    assert len(list(read_archive(stream))) == 4
    assert engine.purge(finished_before=DAY, definition="counter").instances == 13
    for ids in old.values():
        assert _rows(engine, instances_t, ids) == 0
    assert engine.status_counts("counter") == {"succeeded": 1}


@pytest.mark.parametrize(
    "arguments",
    [
        {"finished_before": DAY, "status": "running"},
        {"finished_before": DAY, "status": "compensating"},
        {"finished_before": DAY, "status": "done"},
        {"finished_before": DAY, "status": []},
        {"finished_before": -DAY},
        {"finished_before": "yesterday"},
        {"finished_before": DAY, "batch": 0},
        {"finished_before": DAY, "batches": 0},
    ],
)
def test_bad_purge_arguments_are_refused(engine: Engine, arguments: dict[str, Any]):
    with pytest.raises(InvalidInput):
        engine.purge(**arguments)


def test_a_redrive_racing_a_purge_either_wins_or_finds_nothing(
    store_url: str, clock: Any, deploy_on: Callable[..., Any], tmp_path: Path
):
    with Engine(store_url, clock=clock) as engine:
        deploy_on(engine, "fragile")
        failing = [engine.start("fragile", {}).id for _ in range(30)]
        engine.task("jobs.fragile")(lambda data: 1 / 0)
        engine.run_until_idle()
        clock.advance(2 * DAY)
        redriven: list[str] = []
        missing: list[str] = []

        def redrive_all() -> None:
            for instance_id in reversed(failing):
                try:
                    engine.redrive(instance_id)
                    redriven.append(instance_id)
                except InstanceNotFound:
                    missing.append(instance_id)

        racer = threading.Thread(target=redrive_all)
        racer.start()
        archive = tmp_path / "raced.jsonl"
        result = engine.purge(finished_before=DAY, batch=3, archive=archive)
        racer.join(60)

        archived = {item.instance.id for item in read_archive(archive)}
        assert result.instances == len(archived) == len(failing) - len(redriven)
        assert set(missing) <= archived
        assert not set(redriven) & archived
        for instance_id in redriven:
            assert engine.get(instance_id).status == "running"
        assert _rows(engine, instances_t, sorted(archived)) == 0
        assert _rows(engine, history_t, sorted(archived)) == 0


def test_a_finished_child_of_a_running_parent_is_kept(
    engine: Engine, clock: Any, deploy: Callable[..., Any]
):
    deploy("call_worked")
    deploy("call_fanout")
    parent = engine.start("call_fanout", {})
    children = engine.get(parent.id).children
    assert len(children) == 3
    first = children[0]
    for name in ("worked.fetch", "worked.store"):
        for task in engine.claim_tasks([name], limit=3):
            if task.instance_id == first:
                engine.complete_task(task.id, engine.worker_id, {"ok": True})
    assert engine.get(first).status == "succeeded"
    deploy("counter")
    later = engine.send(engine.start("counter", {"count": 0}).id, "stop")
    clock.advance(2 * DAY)

    # Batches of one: the kept child is passed over, not taken again and again.
    assert engine.purge(finished_before=DAY, batch=1, dry_run=True).instances == 1
    assert engine.purge(finished_before=DAY, batch=1).instances == 1
    with pytest.raises(InstanceNotFound):
        engine.get(later.id)
    assert engine.get(first).status == "succeeded"

    engine.cancel(parent.id)
    clock.advance(2 * DAY)
    assert engine.purge(finished_before=DAY).instances == 4


def test_workers_apply_a_definitions_retention(store_url: str, clock: Any):
    with Engine(store_url, clock=clock) as engine:
        engine.deploy(KEPT_A_DAY)
        assert engine.definition("kept_a_day").retention == DAY
        done = engine.send(engine.start("kept_a_day", {}).id, "stop")
        waiting = engine.start("kept_a_day", {})
        worker = Worker(engine)
        worker.pruned_at = float("-inf")
        worker.prune()
        assert engine.get(done.id).status == "succeeded"  # finished less than a day ago
        clock.advance(DAY + timedelta(seconds=1))
        worker.prune()  # not due: a worker applies retention once a minute
        assert engine.get(done.id).status == "succeeded"
        worker.pruned_at = float("-inf")
        worker.prune()
        with pytest.raises(InstanceNotFound):
            engine.get(done.id)
        assert engine.get(waiting.id).status == "running"


def test_async_engine_purges_and_applies_retention(store_url: str, clock: Any):
    async def scenario() -> tuple[PurgeResult, PurgeResult]:
        async with AsyncEngine(store_url, clock=clock) as engine:
            await engine.deploy(KEPT_A_DAY)
            for _ in range(3):
                await engine.send((await engine.start("kept_a_day", {})).id, "stop")
            clock.advance(2 * DAY)
            dry = await engine.purge(finished_before=DAY, dry_run=True)
            return dry, await engine.apply_retention()

    dry, applied = asyncio.run(scenario())
    assert dry.instances == applied.instances == 3


def test_the_engines_retention_serves_definitions_without_their_own(
    store_url: str, clock: Any, deploy_on: Callable[..., Any]
):
    with Engine(store_url, clock=clock, retention=3 * DAY) as engine:
        deploy_on(engine, "counter")
        engine.deploy(KEPT_A_DAY)
        counted = engine.send(engine.start("counter", {"count": 0}).id, "stop")
        kept = engine.send(engine.start("kept_a_day", {}).id, "stop")
        clock.advance(2 * DAY)
        assert engine.apply_retention().instances == 1
        with pytest.raises(InstanceNotFound):
            engine.get(kept.id)
        assert engine.get(counted.id).status == "succeeded"
        clock.advance(2 * DAY)
        assert engine.apply_retention().instances == 1


def test_a_purge_takes_the_priority_an_instance_was_started_with(
    engine: Engine, deploy: Callable[[str], Any], clock: Any
):
    deploy("counter")
    urgent = engine.send(engine.start("counter", {"count": 0}, priority=7).id, "stop").id
    waiting = engine.start("counter", {"count": 0}, priority=3).id
    assert _rows(engine, priorities_t, [urgent, waiting]) == 2
    clock.advance(2 * DAY)
    assert engine.purge(finished_before=DAY).instances == 1
    assert _rows(engine, priorities_t, [urgent]) == 0
    assert _rows(engine, priorities_t, [waiting]) == 1  # still running: kept

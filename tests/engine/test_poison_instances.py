"""A poison instance (one whose timer, task answer or expiry cannot be applied) fails alone.

Its row is corrupted directly in the database; the worker records the error on it, ends it
`failed` with its work dropped, and goes on with every other instance.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from waiting import until

from engine import Engine
from engine.tables import instances_t


def _corrupt(engine: Engine, instance_id: str, **values: Any) -> None:
    with engine.store.engine.begin() as conn:
        conn.execute(sa.update(instances_t).where(instances_t.c.id == instance_id).values(values))


@pytest.mark.parametrize("runner", ["run_until_idle", "work"])
def test_poison_instances_fail_alone_and_the_worker_goes_on(
    engine: Engine, deploy: Callable[[str], Any], clock: Any, runner: str
) -> None:
    """A timer of an instance whose definition version is gone and the task result of an
    instance whose machine is corrupt fail those two instances, each with an `error` entry
    naming the error; a healthy instance's timer and task still run, and the worker lives."""
    deploy("timed_task")
    deploy("one_task")
    engine.task("jobs.work")(lambda value: {"ok": True})
    healthy = engine.start("timed_task", {})
    lost_version = engine.start("timed_task", {})
    bad_machine = engine.start("one_task", {})
    _corrupt(engine, lost_version.id, version=99)
    _corrupt(engine, bad_machine.id, machine="not a machine")
    clock.advance(120)

    def settled() -> bool:
        return engine.get(healthy.id).status != "running" and all(
            engine.get(poisoned.id).status != "running" for poisoned in (lost_version, bad_machine)
        )

    if runner == "run_until_idle":
        engine.run_until_idle()
        alive = True
    else:
        stop = threading.Event()
        worker = threading.Thread(target=engine.work, kwargs={"stop": stop, "poll_interval": 0.05})
        worker.start()
        try:
            until(settled)
            alive = worker.is_alive()
        finally:
            stop.set()
            worker.join(30)

    assert alive
    assert engine.get(healthy.id).state == "finished"
    for poisoned, error_type in ((lost_version, "DefinitionNotFound"), (bad_machine, None)):
        after = engine.get(poisoned.id)
        assert after.status == "failed"
        last = engine.history(poisoned.id)[-1]
        assert last.kind == "error"
        assert set(last.data) == {"type", "message", "traceback"}
        assert last.data["traceback"]
        if error_type is not None:
            assert last.data["type"] == error_type
            assert "version 99" in last.data["message"]
        assert after.last_error is not None
        assert after.last_error["type"] == last.data["type"]
    assert engine.claim_tasks(None, limit=10) == []
    assert engine.next_due() is None


def test_timer_of_a_vanished_instance_is_set_aside_and_the_sweep_goes_on(
    engine: Engine, deploy: Callable[[str], Any], clock: Any
) -> None:
    """A due timer whose instance row is gone cannot fail it: it is dropped, so no sweep
    trips on it again, and the other instances' timers fire."""
    deploy("timed_task")
    engine.task("jobs.work")(lambda value: {"ok": True})
    vanished = engine.start("timed_task", {})
    healthy = engine.start("timed_task", {})
    with engine.store.engine.begin() as conn:
        conn.execute(sa.delete(instances_t).where(instances_t.c.id == vanished.id))
    clock.advance(120)
    engine.run_until_idle()
    assert engine.get(healthy.id).state == "finished"
    assert engine.next_due() is None
    assert engine.run_until_idle() == 0


def test_expiry_of_a_task_whose_instance_cannot_load_its_definition_fails_that_instance(
    engine: Engine, deploy: Callable[[str], Any], clock: Any
) -> None:
    """An attempt past its timeout whose instance's definition version is gone: the expiry
    sweep fails that instance with the error and drops the task, instead of raising."""
    deploy("hanging")
    inst = engine.start("hanging", {})
    [task] = engine.claim_tasks(["remote.hangs"])
    _corrupt(engine, inst.id, version=99)
    clock.advance(5)
    assert engine.expire_tasks() == 1
    after = engine.get(inst.id)
    assert after.status == "failed"
    assert after.last_error is not None
    assert after.last_error["type"] == "DefinitionNotFound"
    assert engine.heartbeat(task.id) is False
    assert engine.expire_tasks() == 0


def test_a_worker_round_that_raises_is_logged_and_the_loop_goes_on(
    store_url: str, clock: Any, deploy_on: Callable[[Engine, str], Any], caplog: Any
) -> None:
    """Whatever a round raises (a sweep that lost every retry, say), the loop logs it and
    carries on: the worker does not exit, and the tasks ready after it are run."""

    class FirstSweepFails(Engine):
        sweeps = 0

        def fire_due_timers(self, limit: int = 100) -> int:
            self.sweeps += 1
            if self.sweeps == 1:
                raise RuntimeError("the sweep lost every retry")
            return super().fire_due_timers(limit)

    engine = FirstSweepFails(store_url, clock=clock)
    try:
        deploy_on(engine, "one_task")
        engine.task("jobs.work")(lambda value: {"ok": True})
        instance = engine.start("one_task", {})
        stop = threading.Event()
        worker = threading.Thread(target=engine.work, kwargs={"stop": stop, "poll_interval": 0.02})
        worker.start()
        try:
            assert until(lambda: engine.get(instance.id).status == "succeeded")
            assert worker.is_alive()
        finally:
            stop.set()
            worker.join(10)
        assert engine.sweeps >= 2
        assert any("a worker round failed" in r.getMessage() for r in caplog.records)
    finally:
        engine.close()

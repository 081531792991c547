"""`Engine.pending`: an instance's unanswered tasks (attempt, worker, lease, last error) and
its timers with their due times, on each database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from engine import Engine
from statemachines.errors import InstanceNotFound


def test_a_ready_task_waits_for_its_first_claim_without_an_error(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("waiting_work")
    inst = engine.start("waiting_work", {})
    pending = engine.pending(inst.id)
    [task] = pending.tasks
    assert (task.name, task.state, task.status, task.attempt) == (
        "jobs.waiting",
        "working",
        "ready",
        0,
    )
    assert task.max_attempts == 3 and task.worker is None and task.lease_until is None
    assert task.last_error is None and pending.timers == ()
    assert pending.at == clock.now and pending.revision == inst.revision


def test_a_claimed_task_shows_its_worker_and_lease_and_after_a_failure_the_error(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("waiting_work")
    inst = engine.start("waiting_work", {})
    [claimed] = engine.claim_tasks(["jobs.waiting"], "w1", timedelta(seconds=30))
    [held] = engine.pending(inst.id).tasks
    assert (held.status, held.worker, held.attempt) == ("claimed", "w1", 1)
    assert held.lease_until == clock.now + timedelta(seconds=30)
    error = {"type": "Timeout", "message": "the bank did not answer", "traceback": "line 1\nline 2"}
    assert engine.fail_task(claimed.id, "w1", error)
    [waiting] = engine.pending(inst.id).tasks
    assert (waiting.status, waiting.attempt, waiting.lease_until) == ("ready", 1, None)
    assert waiting.ready_at == clock.now + timedelta(minutes=1)
    assert waiting.last_error is not None
    assert waiting.last_error["type"] == "Timeout"
    assert waiting.last_error["message"] == "the bank did not answer"
    assert waiting.last_error["traceback"] == "line 1\nline 2"
    clock.advance(61)
    [again] = engine.claim_tasks(["jobs.waiting"], "w2", 30)
    [second] = engine.pending(inst.id).tasks
    assert (second.attempt, second.worker) == (2, "w2")
    assert second.last_error is not None and second.last_error["type"] == "Timeout"
    assert engine.complete_task(again.id, "w2", {})
    after = engine.pending(inst.id)
    assert after.tasks == ()
    [timer] = after.timers
    assert (timer.state, timer.due_at) == ("reviewing", clock.now + timedelta(hours=2))
    as_json = after.to_json()
    assert as_json["timers"][0]["due_at"].endswith("Z") and as_json["tasks"] == []


def test_an_answered_instance_has_nothing_pending_and_an_unknown_one_is_not_found(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("waiting_work")
    inst = engine.start("waiting_work", {})
    [task] = engine.claim_tasks(["jobs.waiting"], "w1", 30)
    engine.complete_task(task.id, "w1", {})
    engine.send(inst.id, "approve")
    finished = engine.pending(inst.id)
    assert finished.tasks == () and finished.timers == ()
    with pytest.raises(InstanceNotFound):
        engine.pending("0" * 32)

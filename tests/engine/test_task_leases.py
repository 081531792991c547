"""The external-worker API: claims under a lease, heartbeats, lapsed leases and stale results."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from engine import Engine, TaskNotHeld, runtime


def test_claimed_task_carries_its_input_and_attempt(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")
    inst = engine.start("one_task", {"n": 1})
    [task] = engine.claim_tasks(["jobs.work"], "w1", timedelta(seconds=30))
    assert task.name == "jobs.work"
    assert task.input == {"n": 1}
    assert task.attempt == 1
    assert task.instance_id == inst.id
    assert task.state == "work"
    assert task.lease_until == clock.now + timedelta(seconds=30)


def test_claim_returns_only_the_named_tasks_and_at_most_limit(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")
    deploy("fragile")
    for number in range(3):
        engine.start("one_task", {"n": number})
    engine.start("fragile", {})
    assert engine.claim_tasks(["unknown.task"], "w1", 30) == []
    first = engine.claim_tasks(["jobs.work"], "w1", 30, limit=2)
    assert len(first) == 2 and all(t.name == "jobs.work" for t in first)
    rest = engine.claim_tasks(["jobs.work", "jobs.fragile"], "w2", 30, limit=10)
    assert sorted(t.name for t in rest) == ["jobs.fragile", "jobs.work"]
    assert engine.claim_tasks(["jobs.work", "jobs.fragile"], "w3", 30, limit=10) == []


def test_a_claimed_task_is_not_claimed_again_while_its_lease_holds(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")
    engine.start("one_task", {})
    assert len(engine.claim_tasks(["jobs.work"], "w1", 30)) == 1
    clock.advance(29)
    assert engine.claim_tasks(["jobs.work"], "w2", 30) == []


def test_complete_task_applies_the_result(engine: Engine, deploy: Callable[[str], Any]) -> None:
    deploy("one_task")
    inst = engine.start("one_task", {})
    [task] = engine.claim_tasks(["jobs.work"], "w1", 30)
    assert engine.complete_task(task.id, "w1", {"ok": True}) is True
    done = engine.get(inst.id)
    assert done.state == "finished"
    assert done.context == {"ok": True}


def test_completing_the_same_task_twice_applies_it_once(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")
    inst = engine.start("one_task", {})
    [task] = engine.claim_tasks(["jobs.work"], "w1", 30)
    assert engine.complete_task(task.id, "w1", {"n": 1}) is True
    revision = engine.get(inst.id).revision
    assert engine.complete_task(task.id, "w1", {"n": 2}) is False
    assert engine.get(inst.id).context == {"n": 1}
    assert len([e for e in engine.history(inst.id) if e.kind == "task"]) == 1
    assert engine.get(inst.id).revision >= revision


def test_fail_task_fires_failed_when_no_attempts_remain(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")
    inst = engine.start("one_task", {})
    [task] = engine.claim_tasks(["jobs.work"], "w1", 30)
    assert engine.fail_task(task.id, "w1", "disk full") is True
    failed = engine.get(inst.id)
    assert failed.state == "broken"
    assert failed.status == "failed"
    assert any("disk full" in str(e.data) for e in engine.history(inst.id))


def test_lapsed_lease_makes_task_claimable_again_without_using_an_attempt(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")  # one attempt only: a lapse that used it up would fail the instance
    inst = engine.start("one_task", {})
    [first] = engine.claim_tasks(["jobs.work"], "w1", 30)
    clock.advance(31)
    [second] = engine.claim_tasks(["jobs.work"], "w2", 30)
    assert second.instance_id == inst.id
    assert second.attempt == first.attempt == 1
    assert engine.get(inst.id).state == "work"
    assert engine.get(inst.id).status == "running"
    assert engine.complete_task(second.id, "w2", {"by": "w2"}) is True
    assert engine.get(inst.id).state == "finished"


def test_late_result_from_lapsed_lease_holder_once_another_claimed_is_refused_unwritten(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    """Once another worker has claimed the task, the row names only the new holder: the
    lapsed holder's answer is refused like a stranger's, and nothing is written."""
    deploy("one_task")
    inst = engine.start("one_task", {})
    [first] = engine.claim_tasks(["jobs.work"], "w1", 30)
    clock.advance(31)
    [second] = engine.claim_tasks(["jobs.work"], "w2", 30)
    revision = engine.get(inst.id).revision
    with pytest.raises(TaskNotHeld):
        engine.complete_task(first.id, "w1", {"by": "w1"})
    assert engine.get(inst.id).revision == revision
    assert engine.get(inst.id).context == {}
    assert engine.complete_task(second.id, "w2", {"by": "w2"}) is True
    assert engine.get(inst.id).context == {"by": "w2"}


def test_late_failure_from_lapsed_lease_holder_is_not_applied(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")
    inst = engine.start("one_task", {})
    [first] = engine.claim_tasks(["jobs.work"], "w1", 30)
    clock.advance(31)
    [second] = engine.claim_tasks(["jobs.work"], "w2", 30)
    with pytest.raises(TaskNotHeld):
        engine.fail_task(first.id, "w1", "too late")
    assert engine.get(inst.id).state == "work"
    assert engine.complete_task(second.id, "w2", {}) is True
    assert engine.get(inst.id).state == "finished"


def test_lapsed_lease_answered_before_anyone_reclaims_is_stale(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")
    inst = engine.start("one_task", {})
    [first] = engine.claim_tasks(["jobs.work"], "w1", 30)
    clock.advance(31)
    # the team's rule: a result from the lapsed holder is stale, whether or not reclaimed yet
    assert engine.complete_task(first.id, "w1", {"by": "w1"}) is False
    assert engine.get(inst.id).state == "work"
    [again] = engine.claim_tasks(["jobs.work"], "w2", 30)
    assert again.attempt == 1


def test_heartbeat_extends_the_lease(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")
    inst = engine.start("one_task", {})
    [task] = engine.claim_tasks(["jobs.work"], "w1", 30)
    clock.advance(20)
    assert engine.heartbeat(task.id, "w1", 30) is True
    clock.advance(20)  # 40s after the claim, 20s after the heartbeat
    assert engine.claim_tasks(["jobs.work"], "w2", 30) == []
    assert engine.complete_task(task.id, "w1", {"ok": 1}) is True
    assert engine.get(inst.id).state == "finished"


def test_heartbeat_after_the_lease_was_lost_returns_false(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")
    engine.start("one_task", {})
    [task] = engine.claim_tasks(["jobs.work"], "w1", 30)
    clock.advance(31)
    assert len(engine.claim_tasks(["jobs.work"], "w2", 30)) == 1
    assert engine.heartbeat(task.id, "w1", 30) is False


def test_only_the_lease_holder_may_answer(engine: Engine, deploy: Callable[[str], Any]) -> None:
    deploy("one_task")
    inst = engine.start("one_task", {})
    [task] = engine.claim_tasks(["jobs.work"], "w1", 30)
    with pytest.raises(TaskNotHeld):
        engine.complete_task(task.id, "intruder", {"forged": True})
    assert engine.get(inst.id).context == {}
    assert engine.complete_task(task.id, "w1", {"real": True}) is True
    assert engine.get(inst.id).context == {"real": True}


def test_task_of_a_state_left_is_no_longer_claimable(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("race")
    inst = engine.start("race", {})
    clock.advance(61)
    engine.run_until_idle()
    assert engine.get(inst.id).state == "too_late"
    assert engine.claim_tasks(["remote.call"], "w1", 30) == []


def test_an_answer_from_a_worker_that_never_held_the_task_is_refused_and_writes_nothing(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    """A stranger's result or failure, however large and however often, leaves the instance,
    its history and the holder's claim as they were."""
    deploy("one_task")
    inst = engine.start("one_task", {})
    [task] = engine.claim_tasks(["jobs.work"], "w1", 30)
    before = engine.get(inst.id)
    for _ in range(3):
        with pytest.raises(TaskNotHeld) as refused:
            engine.complete_task(task.id, "intruder", {"blob": "x" * 500_000})
        with pytest.raises(TaskNotHeld):
            engine.fail_task(task.id, "intruder", "forged")
    assert refused.value.task_id == task.id and refused.value.worker == "intruder"
    assert engine.get(inst.id).revision == before.revision
    assert len(engine.history(inst.id)) == 1
    assert engine.complete_task(task.id, "w1", {"real": True}) is True


def test_a_lapsed_holders_late_answer_is_recorded_stale_once_then_refused(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    """The last holder's late answer, before anyone claims the task again, is one `stale`
    entry; a second answer from it is refused; the task stays claimable with its attempt."""
    deploy("one_task")
    inst = engine.start("one_task", {})
    [first] = engine.claim_tasks(["jobs.work"], "w1", 30)
    clock.advance(31)
    assert engine.complete_task(first.id, "w1", {"by": "w1"}) is False
    with pytest.raises(TaskNotHeld):
        engine.complete_task(first.id, "w1", {"by": "w1"})
    with pytest.raises(TaskNotHeld):
        engine.fail_task(first.id, "w1", "again")
    assert [e.kind for e in engine.history(inst.id)].count("stale") == 1
    [again] = engine.claim_tasks(["jobs.work"], "w2", 30)
    assert again.attempt == 1
    assert engine.complete_task(again.id, "w2", {"by": "w2"}) is True
    assert engine.get(inst.id).context == {"by": "w2"}


def test_a_stale_entry_keeps_only_the_head_of_a_large_late_result(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")
    inst = engine.start("one_task", {})
    [task] = engine.claim_tasks(["jobs.work"], "w1", 30)
    clock.advance(31)
    assert engine.complete_task(task.id, "w1", {"blob": "x" * 900_000}) is False
    [stale] = [e for e in engine.history(inst.id) if e.kind == "stale"]
    assert len(stale.data["result"].encode()) <= runtime.MAX_STALE_BYTES
    assert stale.data["result"].startswith('{"blob": "xxx')
    assert stale.data["truncated"] > 900_000
    assert stale.data["worker"] == "w1" and stale.data["task_id"] == task.id


def test_late_answers_for_a_finished_task_are_recorded_stale_once(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    """A result for a task whose state was left (by a timer here), or a second answer to a
    task already answered, is one `stale` entry; the answers after it are refused."""
    deploy("race")
    inst = engine.start("race", {})
    [task] = engine.claim_tasks(["remote.call"], "w1", 300)
    clock.advance(61)
    engine.run_until_idle()
    assert engine.complete_task(task.id, "w1", {"answer": "late"}) is False
    with pytest.raises(TaskNotHeld):
        engine.complete_task(task.id, "w1", {"answer": "later"})
    assert [e.kind for e in engine.history(inst.id)].count("stale") == 1
    deploy("one_task")
    done = engine.start("one_task", {})
    [answered] = engine.claim_tasks(["jobs.work"], "w1", 30)
    assert engine.complete_task(answered.id, "w1", {"n": 1}) is True
    assert engine.complete_task(answered.id, "w1", {"n": 2}) is False
    with pytest.raises(TaskNotHeld):
        engine.complete_task(answered.id, "w1", {"n": 3})
    assert [e.kind for e in engine.history(done.id)].count("stale") == 1
    assert engine.get(done.id).context == {"n": 1}


def test_a_late_answer_to_an_instance_whose_history_is_full_is_refused_unwritten(
    engine: Engine, clock: Any, deploy: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "MAX_HISTORY", 1)
    deploy("one_task")
    inst = engine.start("one_task", {})
    [task] = engine.claim_tasks(["jobs.work"], "w1", 30)
    clock.advance(31)
    with pytest.raises(TaskNotHeld, match="history"):
        engine.complete_task(task.id, "w1", {"late": True})
    assert len(engine.history(inst.id)) == 1
    [again] = engine.claim_tasks(["jobs.work"], "w2", 30)
    assert again.attempt == 1


def test_a_worker_whose_lapsed_task_was_claimed_again_drops_its_answer_and_goes_on(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    """The answer is no longer the worker's to give: nothing is written for it, and the
    worker returns normally instead of raising out of its loop."""
    deploy("one_task")
    inst = engine.start("one_task", {"n": 1})
    taken: list[Any] = []

    @engine.task("jobs.work")
    def work(data: dict[str, Any]) -> Any:
        if not taken:
            clock.advance(engine.lease.total_seconds() + 1)
            taken.extend(engine.claim_tasks(["jobs.work"], "other", 300))
        return {"by": engine.worker_id}

    assert engine.run_until_idle() == 1
    assert engine.get(inst.id).state == "work" and engine.get(inst.id).context == {"n": 1}
    assert "stale" not in [e.kind for e in engine.history(inst.id)]
    assert engine.complete_task(taken[0].id, "other", {"by": "other"}) is True
    assert engine.get(inst.id).context == {"n": 1, "by": "other"}


def test_an_answer_to_an_attempt_that_timed_out_does_not_pass_for_the_retry(
    engine: Engine, deploy: Callable[[str], Any], clock: Any
) -> None:
    """A handler that outlived its attempt's timeout answers late, when the same worker may
    hold the retry: naming its attempt, the late answer is refused and writes nothing, and
    the retry's own answer is the one applied."""
    deploy("slow_call")
    instance = engine.start("slow_call", {})
    first = engine.claim_tasks(["remote.slow"], worker="w1")[0]
    clock.advance(31)  # past the 30 s timeout: the attempt fails, a retry waits 5 s
    engine.expire_tasks()
    clock.advance(6)
    second = engine.claim_tasks(["remote.slow"], worker="w1")[0]
    assert (second.id, second.attempt) == (first.id, 2)
    before = engine.history(instance.id)
    with pytest.raises(TaskNotHeld):
        engine.complete_task(first.id, "w1", {"late": True}, attempt=first.attempt)
    with pytest.raises(TaskNotHeld):
        engine.fail_task(first.id, "w1", "late failure", attempt=first.attempt)
    assert engine.history(instance.id) == before
    assert engine.complete_task(second.id, "w1", {"fresh": True}, attempt=second.attempt)
    done = engine.get(instance.id)
    assert (done.state, done.context) == ("finished", {"fresh": True})

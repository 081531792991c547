"""Retries wait `delay * backoff**(n-1)` capped by `max_delay` on the engine clock; timeouts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import statemachines
from engine import Engine, TaskNotHeld


def _failing(engine: Engine, name: str, calls: list[Any], clock: Any) -> None:
    @engine.task(name)
    def handler(data: Any) -> Any:
        calls.append(clock.now)
        raise RuntimeError(f"attempt {len(calls)} failed")


def test_retries_wait_with_exponential_backoff_capped_by_max_delay(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("retrying")  # attempts 4, delay 10s, backoff 2, max_delay 25s: waits 10, 20, 25
    calls: list[Any] = []
    _failing(engine, "remote.call", calls, clock)
    inst = engine.start("retrying", {})
    assert engine.run_until_idle() == 1
    for wait in (10, 20, 25):
        clock.advance(wait - 1)
        assert engine.run_until_idle() == 0, f"a retry ran before its {wait}s wait"
        assert engine.get(inst.id).state == "call"
        clock.advance(1)
        assert engine.run_until_idle() >= 1
    assert len(calls) == 4
    gaps = [(b - a).total_seconds() for a, b in zip(calls, calls[1:], strict=False)]
    assert gaps == [10, 20, 25]
    done = engine.get(inst.id)
    assert done.state == "gave_up"
    assert done.status == "failed"


def test_each_failed_attempt_with_attempts_left_is_a_retry_entry(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("retrying")
    calls: list[Any] = []
    _failing(engine, "remote.call", calls, clock)
    inst = engine.start("retrying", {})
    for _ in range(4):
        engine.run_until_idle()
        clock.advance(60)
    kinds = [e.kind for e in engine.history(inst.id)]
    assert kinds.count("retry") == 3
    failed = [e for e in engine.history(inst.id) if e.event == "failed"]
    assert failed and failed[-1].data["attempts"] == 4
    assert failed[-1].data["error"]["message"] == "attempt 4 failed"


def test_retry_that_succeeds_applies_the_result_once(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("retrying")
    calls: list[int] = []

    @engine.task("remote.call")
    def flaky(data: Any) -> Any:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("try again")
        return {"answered_on": len(calls)}

    inst = engine.start("retrying", {})
    engine.run_until_idle()
    clock.advance(10)
    engine.run_until_idle()
    clock.advance(20)
    engine.run_until_idle()
    done = engine.get(inst.id)
    assert done.state == "finished"
    assert done.context == {"answered_on": 3}
    assert len(calls) == 3
    assert [e.kind for e in engine.history(inst.id)].count("task") == 1


def test_retried_task_claimed_externally_reports_its_attempt_number(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("retrying")
    inst = engine.start("retrying", {})
    [first] = engine.claim_tasks(["remote.call"], "w1", 60)
    assert first.attempt == 1
    assert engine.fail_task(first.id, "w1", "boom") is True
    assert engine.claim_tasks(["remote.call"], "w1", 60) == []  # not before the 10s delay
    clock.advance(10)
    [second] = engine.claim_tasks(["remote.call"], "w1", 60)
    assert second.attempt == 2
    assert second.instance_id == inst.id


def test_attempt_past_the_timeout_is_a_failed_attempt_and_retried(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("slow_call")  # timeout 30s, attempts 2, delay 5s
    durations = [31, 1]

    @engine.task("remote.slow")
    def slow(data: Any) -> Any:
        clock.advance(durations.pop(0))  # the attempt takes this long by the engine clock
        return {"took": "a while"}

    inst = engine.start("slow_call", {})
    engine.run_until_idle()
    after_first = engine.get(inst.id)
    assert after_first.state == "call"
    assert "took" not in after_first.context
    assert "retry" in [e.kind for e in engine.history(inst.id)]
    clock.advance(5)
    engine.run_until_idle()
    done = engine.get(inst.id)
    assert done.state == "finished"
    assert done.context == {"took": "a while"}


def test_timeout_on_the_last_attempt_fires_failed(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("slow_call")

    @engine.task("remote.slow")
    def slow(data: Any) -> Any:
        clock.advance(45)
        return {"took": 45}

    inst = engine.start("slow_call", {})
    engine.run_until_idle()
    clock.advance(5)
    engine.run_until_idle()
    done = engine.get(inst.id)
    assert done.state == "timed_out"
    assert done.status == "failed"
    assert "took" not in done.context


def test_attempt_within_the_timeout_succeeds(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("slow_call")

    @engine.task("remote.slow")
    def slow(data: Any) -> Any:
        clock.advance(29)
        return {"took": 29}

    inst = engine.start("slow_call", {})
    engine.run_until_idle()
    assert engine.get(inst.id).state == "finished"


@pytest.mark.parametrize("answer", ["complete", "fail"])
def test_external_answer_past_the_timeout_counts_as_a_failed_attempt(
    engine: Engine, clock: Any, deploy: Callable[[str], Any], answer: str
) -> None:
    deploy("slow_call")
    inst = engine.start("slow_call", {})
    [task] = engine.claim_tasks(["remote.slow"], "w1", 300)  # the lease outlives the timeout
    clock.advance(31)
    if answer == "complete":
        engine.complete_task(task.id, "w1", {"took": 31})
    else:
        engine.fail_task(task.id, "w1", "slow and failed")
    current = engine.get(inst.id)
    assert current.state == "call"
    assert "took" not in current.context
    clock.advance(5)
    [retry] = engine.claim_tasks(["remote.slow"], "w1", 300)
    assert retry.attempt == 2
    clock.advance(31)
    engine.complete_task(retry.id, "w1", {"took": 31})
    assert engine.get(inst.id).state == "timed_out"


def test_pending_retry_is_dropped_when_the_instance_is_cancelled(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("retrying")
    calls: list[Any] = []
    _failing(engine, "remote.call", calls, clock)
    inst = engine.start("retrying", {})
    engine.run_until_idle()
    assert engine.cancel(inst.id).status == "cancelled"
    clock.advance(3600)
    assert engine.run_until_idle() == 0
    assert len(calls) == 1
    assert engine.claim_tasks(["remote.call"], "w", 60) == []


def test_foreach_item_retried_keeps_results_in_item_order(engine: Engine, clock: Any) -> None:
    newsletter = next(p for p in statemachines.examples() if p.stem == "newsletter")
    engine.deploy(newsletter)  # mail.send: attempts 3, delay 500ms; concurrency 5
    failures = {"b": 1}

    @engine.task("mail.send")
    def send(data: Any) -> Any:
        if failures.get(data["to"], 0) > 0:
            failures[data["to"]] -= 1
            raise ConnectionError("smtp busy")
        return f"ok:{data['to']}"

    engine.task("newsletter.render")(lambda data: "<p>hi</p>")
    engine.task("newsletter.report")(lambda data: None)
    inst = engine.start("newsletter", {"issue": "May", "subscribers": ["a", "b", "c"]})
    engine.run_until_idle()
    assert engine.get(inst.id).state == "send_all"
    clock.advance(0.5)
    engine.run_until_idle()
    done = engine.get(inst.id)
    assert done.state == "sent"
    assert done.context["deliveries"] == ["ok:a", "ok:b", "ok:c"]
    assert done.context["sent"] == 3


def test_unanswered_attempt_past_its_timeout_fails_without_waiting_for_the_lease(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("slow_call")
    inst = engine.start("slow_call", {})
    [hung] = engine.claim_tasks(["remote.slow"], "w1", 3600)  # a lease far past the timeout
    clock.advance(31)
    engine.run_until_idle()
    assert "retry" in [e.kind for e in engine.history(inst.id)]
    clock.advance(5)
    [retry] = engine.claim_tasks(["remote.slow"], "w2", 3600)
    assert retry.attempt == 2
    with pytest.raises(TaskNotHeld):  # the task is w2's now
        engine.complete_task(hung.id, "w1", {"took": "forever"})
    assert engine.complete_task(retry.id, "w2", {"took": 1}) is True
    done = engine.get(inst.id)
    assert done.state == "finished"
    assert done.context == {"took": 1}

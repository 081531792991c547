"""Retry by error type on the durable engine (SQLite and PostgreSQL): each failure goes to the
first policy naming its type, each policy counts its own failures and waits by its own delay
on the engine clock; `TaskFailure` lets a handler choose the type and attach details."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine import AsyncEngine, Engine, TaskFailure
from engine.records import error_details

TYPED_RETRY = Path(__file__).parent / "definitions" / "typed_retry.yaml"
TIMEOUT = 30  # the task's timeout, in seconds


class Refused(Exception):
    """A refusal from the payment provider: never worth another attempt."""


def _charge(engine: Engine, clock: Any, plan: list[str]) -> list[datetime]:
    """Answer `payments.charge` attempt by attempt from `plan`: `slow` runs past the timeout,
    `refused` raises Refused, `broken` raises KeyError, `ok` succeeds. The times of the
    attempts are returned (filled in as they run)."""
    calls: list[datetime] = []

    @engine.task("payments.charge")
    def charge(data: Any) -> Any:
        calls.append(clock.now)
        what = plan[len(calls) - 1]
        if what == "slow":
            clock.advance(TIMEOUT + 15)
            return {"late": True}
        if what == "refused":
            raise Refused("card refused")
        if what == "broken":
            raise KeyError("amount")
        return {"charged": True}

    return calls


def _retries(engine: Engine, instance_id: str) -> list[Any]:
    return [entry for entry in engine.history(instance_id) if entry.kind == "retry"]


def _wait_out(engine: Engine, clock: Any, wait: float) -> None:
    """The next attempt waits exactly `wait` seconds on the engine clock."""
    assert engine.next_due() == clock.now + timedelta(seconds=wait)
    clock.advance(wait - 1)
    assert engine.run_until_idle() == 0, f"an attempt ran before its {wait}s wait"
    clock.advance(1)
    assert engine.run_until_idle() >= 1


def test_a_timeout_is_retried_three_times_with_its_own_backoff(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("typed_retry")
    calls = _charge(engine, clock, ["slow"] * 4)
    inst = engine.start("typed_retry", {})
    engine.run_until_idle()
    for wait in (10, 20, 40):
        _wait_out(engine, clock, wait)
    assert len(calls) == 4
    done = engine.get(inst.id)
    assert (done.state, done.status) == ("broken", "failed")
    failed = [e for e in engine.history(inst.id) if e.event == "failed" and e.kind == "task"]
    assert failed[-1].data["attempts"] == 4
    assert failed[-1].data["error"]["type"] == "Timeout"
    retries = _retries(engine, inst.id)
    assert [entry.data["policy"] for entry in retries] == [
        {"index": 0, "errors": ["Timeout"], "failures": n, "attempts": 4} for n in (1, 2, 3)
    ]
    waits = [datetime.fromisoformat(e.data["next_attempt_at"]) - e.at for e in retries]
    assert waits == [timedelta(seconds=s) for s in (10, 20, 40)]


def test_a_refusal_is_not_retried(engine: Engine, clock: Any, deploy: Callable[[str], Any]) -> None:
    deploy("typed_retry")
    calls = _charge(engine, clock, ["refused", "ok"])
    inst = engine.start("typed_retry", {})
    engine.run_until_idle()
    assert engine.next_due() is None
    done = engine.get(inst.id)
    assert (done.state, done.status, len(calls)) == ("refused", "failed", 1)
    assert done.context == {"why": "card refused"}
    assert _retries(engine, inst.id) == []
    failed = [e for e in engine.history(inst.id) if e.event == "failed" and e.kind == "task"]
    assert (failed[0].data["attempts"], failed[0].data["error"]["type"]) == (1, "Refused")


def test_other_errors_go_to_the_catch_all_twice(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("typed_retry")
    calls = _charge(engine, clock, ["broken", "broken", "ok"])
    inst = engine.start("typed_retry", {})
    engine.run_until_idle()
    _wait_out(engine, clock, 5)
    assert engine.next_due() is None
    done = engine.get(inst.id)
    assert (done.state, len(calls)) == ("broken", 2)
    [retry] = _retries(engine, inst.id)
    assert retry.data["policy"] == {"index": 2, "errors": [], "failures": 1, "attempts": 2}


def test_one_policys_failures_do_not_use_up_anothers(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("typed_retry")
    # 3 timeouts and 1 other error: each within its own policy, so every one is retried;
    # the timeouts' waits grow by their own count (10s, 20s, 40s), the other error's is 5s.
    calls = _charge(engine, clock, ["slow", "broken", "slow", "slow", "ok"])
    inst = engine.start("typed_retry", {})
    engine.run_until_idle()
    for wait in (10, 5, 20, 40):
        _wait_out(engine, clock, wait)
    done = engine.get(inst.id)
    assert (done.state, done.status, len(calls)) == ("paid", "succeeded", 5)
    policies = [
        (e.data["policy"]["index"], e.data["policy"]["failures"]) for e in _retries(engine, inst.id)
    ]
    assert policies == [(0, 1), (2, 1), (0, 2), (0, 3)]
    assert [e.data["attempt"] for e in _retries(engine, inst.id)] == [1, 2, 3, 4]


def test_the_catch_all_runs_out_while_timeouts_have_attempts_left(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("typed_retry")
    calls = _charge(engine, clock, ["broken", "slow", "broken", "ok"])
    inst = engine.start("typed_retry", {})
    engine.run_until_idle()
    _wait_out(engine, clock, 5)
    _wait_out(engine, clock, 10)
    assert engine.next_due() is None
    assert (engine.get(inst.id).state, len(calls)) == ("broken", 3)


def test_a_claimed_task_reports_the_most_attempts_its_policies_allow(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("typed_retry")
    engine.start("typed_retry", {})
    [task] = engine.claim_tasks(["payments.charge"])
    assert (task.attempt, task.max_attempts) == (1, 5)


def test_a_task_failure_chooses_its_type_and_keeps_its_details(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("typed_retry")

    @engine.task("payments.charge")
    def charge(data: Any) -> Any:
        raise TaskFailure("Refused", "card declined", details={"code": 51, "retry": False})

    inst = engine.start("typed_retry", {})
    engine.run_until_idle()
    done = engine.get(inst.id)
    assert (done.state, done.context) == ("refused", {"why": "card declined"})
    [failed] = [e for e in engine.history(inst.id) if e.event == "failed" and e.kind == "task"]
    error = failed.data["error"]
    assert (error["type"], error["message"]) == ("Refused", "card declined")
    assert error["details"] == {"code": 51, "retry": False}
    assert "TaskFailure" in error["traceback"]
    last = engine.get(inst.id).last_error
    assert last is not None and last["details"] == {"code": 51, "retry": False}


def test_an_async_handlers_task_failure_is_retried_by_its_type(store_url: str, clock: Any) -> None:
    async def scenario() -> None:
        aeng = AsyncEngine(store_url, clock=clock)
        try:
            await aeng.deploy(TYPED_RETRY)
            calls: list[int] = []

            @aeng.task("payments.charge")
            async def charge(data: Any) -> Any:
                calls.append(1)
                if len(calls) == 1:
                    raise TaskFailure("Timeout", "the provider did not answer")
                raise TaskFailure("Refused", "card declined", details=["limit"])

            inst = await aeng.start("typed_retry", {})
            await aeng.run_until_idle()
            clock.advance(10)
            await aeng.run_until_idle()
            done = await aeng.get(inst.id)
            assert (done.state, len(calls)) == ("refused", 2)
            history = await aeng.history(inst.id)
            [retry] = [e for e in history if e.kind == "retry"]
            assert retry.data["error"]["type"] == "Timeout"
            [failed] = [e for e in history if e.event == "failed" and e.kind == "task"]
            assert failed.data["error"]["details"] == ["limit"]
        finally:
            await aeng.aclose()

    asyncio.run(scenario())


def test_a_task_failure_with_details_that_cannot_be_stored_says_so() -> None:
    error = error_details(TaskFailure("Refused", "no", details={"tags": {1, 2}}))
    assert error["type"] == "Refused"
    assert error["details"].startswith("<details not stored: ")
    big = error_details(TaskFailure("Refused", details="x" * 20_000))
    assert "over the limit of 10000" in big["details"]
    plain = error_details(Refused("no"))
    assert (plain["type"], "details" in plain) == ("Refused", False)


@pytest.mark.parametrize("bad", ["", "Time out", 3])
def test_a_task_failure_needs_a_type_name(bad: Any) -> None:
    with pytest.raises(ValueError, match="must be a name like 'Refused'"):
        TaskFailure(bad)

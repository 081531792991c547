"""Starts that wait: `at`, `delay` and `debounce`, visible as `scheduled` before they fire,
fired by the timers of any engine over the same database, on the engine's clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from engine import (
    AsyncEngine,
    DuplicateKey,
    Engine,
    EventRejected,
    InvalidInput,
    RedriveRefused,
    ResetRefused,
)
from engine.flow_control import priority_of


def _worked(engine: Engine) -> list[Any]:
    seen: list[Any] = []

    @engine.task("jobs.work")
    def work(data: Any) -> Any:
        seen.append(data)
        return {"ok": True}

    return seen


def test_delayed_start_is_scheduled_and_does_not_run_before_its_time(
    engine: Engine, deploy: Callable[[str], Any], clock: Any
) -> None:
    deploy("one_task")
    seen = _worked(engine)
    started_at = clock.now
    inst = engine.start("one_task", {"n": 1}, delay=timedelta(minutes=10))
    assert inst.status == "scheduled"
    assert inst.due_at == started_at + timedelta(minutes=10)
    shown = engine.get(inst.id)
    assert (shown.status, shown.due_at, shown.context) == ("scheduled", inst.due_at, {"n": 1})
    assert [i.id for i in engine.instances(status="scheduled")] == [inst.id]
    assert engine.history(inst.id) == []
    clock.advance(timedelta(minutes=10) - timedelta(seconds=1))
    assert engine.run_until_idle() == 0
    assert engine.get(inst.id).status == "scheduled"
    assert seen == []
    clock.advance(1)
    engine.run_until_idle()
    done = engine.get(inst.id)
    assert (done.status, done.state, done.due_at) == ("succeeded", "finished", None)
    assert seen == [{"n": 1}]
    first = engine.history(inst.id)[0]
    assert (first.seq, first.kind, first.at) == (1, "start", started_at + timedelta(minutes=10))


def test_start_at_a_time_fires_at_that_time(
    engine: Engine, deploy: Callable[[str], Any], clock: Any
) -> None:
    deploy("one_task")
    _worked(engine)
    due = clock.now + timedelta(days=2)
    inst = engine.start("one_task", {}, key="order-1", at=due.isoformat())
    assert engine.get_by_key("one_task", "order-1").due_at == due
    clock.advance(timedelta(days=2) - timedelta(milliseconds=1))
    engine.run_until_idle()
    assert engine.get(inst.id).status == "scheduled"
    clock.advance(timedelta(milliseconds=1))
    engine.run_until_idle()
    assert engine.get(inst.id).status == "succeeded"


def test_debounced_starts_of_one_key_make_one_instance_with_the_last_input(
    engine: Engine, deploy: Callable[[str], Any], clock: Any
) -> None:
    deploy("one_task")
    seen = _worked(engine)
    first = engine.start("one_task", {"n": 1}, key="customer-7", debounce=30)
    clock.advance(20)
    second = engine.start("one_task", {"n": 2}, key="customer-7", debounce=30)
    clock.advance(20)  # 40s after the first start: the window restarted at the second
    engine.run_until_idle()
    third = engine.start("one_task", {"n": 3}, key="customer-7", debounce=30)
    assert first.id == second.id == third.id
    assert (third.status, third.context, third.due_at) == (
        "scheduled",
        {"n": 3},
        clock.now + timedelta(seconds=30),
    )
    assert len(engine.instances(definition="one_task")) == 1
    clock.advance(29)
    engine.run_until_idle()
    assert seen == []
    clock.advance(1)
    engine.run_until_idle()
    assert seen == [{"n": 3}]
    assert engine.get(first.id).status == "succeeded"
    # The key names that instance for good: a later debounced start of it is refused.
    with pytest.raises(DuplicateKey):
        engine.start("one_task", {"n": 4}, key="customer-7", debounce=30)


def test_a_debounced_starts_priority_replaces_the_pending_ones(
    engine: Engine, deploy: Callable[[str], Any], clock: Any
) -> None:
    deploy("one_task")
    pending = engine.start("one_task", {"n": 1}, key="k", debounce=30, priority=9)
    assert priority_of_instance(engine, pending.id) == 9
    engine.start("one_task", {"n": 2}, key="k", debounce=30, priority=2)
    assert priority_of_instance(engine, pending.id) == 2
    engine.start("one_task", {"n": 3}, key="k", debounce=30)
    assert priority_of_instance(engine, pending.id) == 0
    engine.start("one_task", {"n": 4}, key="k", debounce=30, priority=-1)
    clock.advance(30)
    engine.fire_due_timers()
    engine.limit_task("jobs.work")  # claims in priority order
    urgent = engine.start("one_task", {"n": 5}).id  # priority 0, after it, yet ahead
    assert [task.instance_id for task in engine.claim_tasks(["jobs.work"])] == [urgent]
    assert [task.instance_id for task in engine.claim_tasks(["jobs.work"])] == [pending.id]


def priority_of_instance(engine: Engine, instance_id: str) -> int:
    with engine.store.core() as conn:
        return priority_of(conn, instance_id)


def test_debounce_max_bounds_the_wait_from_the_keys_first_start(
    engine: Engine, deploy: Callable[[str], Any], clock: Any
) -> None:
    deploy("one_task")
    seen = _worked(engine)
    first = engine.start("one_task", {"n": 0}, key="k", debounce=30, debounce_max=100)
    for n in range(1, 4):  # a start every 25 s: the window alone would wait for ever
        clock.advance(25)
        later = engine.start("one_task", {"n": n}, key="k", debounce=30, debounce_max=100)
        assert later.id == first.id
    assert later.due_at == first.created_at + timedelta(seconds=100)  # not 75 + 30
    clock.advance(24)
    engine.run_until_idle()
    assert seen == []
    clock.advance(1)
    engine.run_until_idle()
    assert seen == [{"n": 3}]
    # A bound first given by a later start still counts from the key's first start.
    first = engine.start("one_task", {"n": 0}, key="j", debounce=30)
    clock.advance(25)
    engine.start("one_task", {"n": 1}, key="j", debounce=30, debounce_max=60)
    clock.advance(25)
    later = engine.start("one_task", {"n": 2}, key="j", debounce=30)
    assert later.due_at == first.created_at + timedelta(seconds=60)  # not 50 + 30


def test_debounce_does_not_take_over_a_key_started_without_it(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")
    engine.start("one_task", {}, key="k", delay=60)
    with pytest.raises(DuplicateKey):
        engine.start("one_task", {"n": 2}, key="k", debounce=30)


def test_scheduled_start_survives_a_new_engine_over_the_same_database(
    store_url: str, clock: Any, deploy_on: Callable[[Engine, str], Any]
) -> None:
    first = Engine(store_url, clock=clock)
    deploy_on(first, "one_task")
    inst = first.start("one_task", {"n": 1}, delay=3600)
    pending = first.start("one_task", {"n": 1}, key="k", debounce=600)
    first.close()
    again = Engine(store_url, clock=clock)
    try:
        seen = _worked(again)
        assert again.get(inst.id).status == "scheduled"
        assert again.start("one_task", {"n": 2}, key="k", debounce=600).id == pending.id
        clock.advance(3600)
        again.run_until_idle()
        assert again.get(inst.id).status == "succeeded"
        assert again.get(pending.id).status == "succeeded"
        assert sorted(item["n"] for item in seen) == [1, 2]
    finally:
        again.close()


def test_cancelling_a_scheduled_start_drops_it(
    engine: Engine, deploy: Callable[[str], Any], clock: Any
) -> None:
    deploy("one_task")
    seen = _worked(engine)
    inst = engine.start("one_task", {}, delay=60)
    with pytest.raises(EventRejected):
        engine.send(inst.id, "done")
    with pytest.raises(ResetRefused):
        engine.reset(inst.id, "work", reason="operator")
    with pytest.raises(RedriveRefused):
        engine.redrive(inst.id, reason="operator")
    cancelled = engine.cancel(inst.id, reason="not needed")
    assert (cancelled.status, cancelled.due_at) == ("cancelled", None)
    assert [e.kind for e in engine.history(inst.id)] == ["cancel"]
    clock.advance(3600)
    assert engine.run_until_idle() == 0
    assert seen == []
    assert engine.get(inst.id).status == "cancelled"


def test_start_many_with_a_delay_schedules_every_item(
    engine: Engine, deploy: Callable[[str], Any], clock: Any
) -> None:
    deploy("one_task")
    seen = _worked(engine)
    ids = engine.start_many("one_task", [{"n": n} for n in range(5)], delay="5m", batch=2)
    assert {engine.get(i).status for i in ids} == {"scheduled"}
    clock.advance(300)
    engine.run_until_idle()
    assert {engine.get(i).status for i in ids} == {"succeeded"}
    assert sorted(item["n"] for item in seen) == list(range(5))


def test_async_engine_schedules_a_start(store_url: str, clock: Any) -> None:
    async def scenario() -> None:
        async with AsyncEngine(store_url, clock=clock) as aeng:
            await aeng.deploy(
                "name: later\ninitial: wait\nstates:\n  wait: {after: {1h: gone}}\n"
                "  gone: {final: true}\n"
            )
            inst = await aeng.start("later", {}, delay=120)
            assert (await aeng.get(inst.id)).status == "scheduled"
            clock.advance(120)
            await aeng.run_until_idle()
            assert (await aeng.get(inst.id)).state == "wait"

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "timing",
    [
        {"at": "2026-01-02T00:00:00"},  # no time zone
        {"at": "2026-01-02T00:00:00Z", "delay": 5},
        {"delay": -5},
        {"delay": "soon"},
        {"debounce": 30},  # no key
        {"key": "k", "debounce": 30, "debounce_max": 10},  # a bound shorter than the window
        {"key": "k", "debounce_max": 60},  # a bound without a window
        {"deadline": 0},
    ],
)
def test_a_bad_timing_is_invalid_input_and_writes_nothing(
    engine: Engine, deploy: Callable[[str], Any], timing: dict[str, Any]
) -> None:
    deploy("one_task")
    with pytest.raises(InvalidInput):
        engine.start("one_task", {}, **timing)
    assert engine.instances() == []

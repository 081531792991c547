"""The instance deadline: from the definition's `deadline` or a start's `deadline=`, a
running instance past it fails with DeadlineExceeded and its completed steps are undone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from engine import Engine


@pytest.fixture
def undone(engine: Engine, deploy: Callable[[str], Any]) -> list[str]:
    deploy("deadline_saga")
    log: list[str] = []

    @engine.task("stock.reserve")
    def reserve(data: Any) -> Any:
        log.append("reserve")
        return {"held": 1}

    @engine.task("stock.release")
    def release(data: Any) -> None:
        log.append("release")

    return log


def test_definition_deadline_fails_the_instance_and_compensates(
    engine: Engine, clock: Any, undone: list[str]
) -> None:
    inst = engine.start("deadline_saga", {"order": 7})
    engine.run_until_idle()
    clock.advance(timedelta(minutes=59, seconds=59))
    engine.run_until_idle()
    assert engine.get(inst.id).state == "await_payment"
    clock.advance(1)
    engine.run_until_idle()
    failed = engine.get(inst.id)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error["type"] == "DeadlineExceeded"
    assert "1h" in failed.error["message"]
    assert undone == ["reserve", "release"]
    kinds = [(e.kind, e.event) for e in engine.history(inst.id)]
    assert ("timer", "deadline") in kinds
    assert kinds[-1][0] == "compensate"


def test_instance_that_finishes_in_time_is_left_alone(
    engine: Engine, clock: Any, undone: list[str]
) -> None:
    inst = engine.start("deadline_saga", {})
    engine.run_until_idle()
    engine.send(inst.id, "paid")
    clock.advance(timedelta(hours=2))
    assert engine.run_until_idle() == 0  # its deadline timer went when it ended
    assert engine.get(inst.id).status == "succeeded"
    assert undone == ["reserve"]


def test_start_deadline_overrides_the_definitions(
    engine: Engine, clock: Any, undone: list[str]
) -> None:
    short = engine.start("deadline_saga", {}, deadline="10m")
    long = engine.start("deadline_saga", {}, deadline=timedelta(hours=3))
    engine.run_until_idle()
    clock.advance(600)
    engine.run_until_idle()
    assert engine.get(short.id).status == "failed"
    assert engine.get(long.id).status == "running"
    clock.advance(timedelta(hours=2))  # past the definition's hour
    engine.run_until_idle()
    assert engine.get(long.id).status == "running"
    clock.advance(timedelta(hours=1))
    engine.run_until_idle()
    failed = engine.get(long.id)
    assert failed.status == "failed"
    assert failed.error is not None and failed.error["type"] == "DeadlineExceeded"


def test_deadline_of_a_scheduled_start_runs_from_when_it_starts(
    engine: Engine, clock: Any, undone: list[str]
) -> None:
    inst = engine.start("deadline_saga", {}, delay=timedelta(hours=5), deadline=60)
    clock.advance(timedelta(hours=5))
    engine.run_until_idle()
    assert engine.get(inst.id).state == "await_payment"
    clock.advance(60)
    engine.run_until_idle()
    assert engine.get(inst.id).status == "failed"


def test_deadline_survives_a_new_engine_over_the_same_database(
    store_url: str, clock: Any, deploy_on: Callable[[Engine, str], Any]
) -> None:
    first = Engine(store_url, clock=clock)
    deploy_on(first, "deadline_saga")
    first.task("stock.reserve")(lambda data: {})
    inst = first.start("deadline_saga", {})
    first.run_until_idle()
    first.close()
    again = Engine(store_url, clock=clock)
    try:
        released: list[Any] = []
        again.task("stock.release")(released.append)
        clock.advance(timedelta(hours=1))
        again.run_until_idle()
        assert again.get(inst.id).status == "failed"
        assert len(released) == 1
    finally:
        again.close()


def test_a_reset_keeps_a_running_instances_deadline_and_a_failed_one_runs_on_without(
    engine: Engine, clock: Any, undone: list[str]
) -> None:
    inst = engine.start("deadline_saga", {})
    engine.run_until_idle()
    clock.advance(timedelta(minutes=30))
    engine.reset(inst.id, "await_payment", reason="payment page reopened")
    clock.advance(timedelta(minutes=30))  # the hour from the start, not from the reset
    engine.run_until_idle()
    failed = engine.get(inst.id)
    assert failed.error is not None and failed.error["type"] == "DeadlineExceeded"
    engine.reset(inst.id, "await_payment", reason="customer is paying now")
    clock.advance(timedelta(days=1))
    engine.run_until_idle()
    assert engine.get(inst.id).status == "running"  # its deadline ended with it


def test_a_redriven_instance_runs_under_its_deadline_again_from_the_redrive(
    engine: Engine, deploy: Callable[[str], Any], clock: Any
) -> None:
    deploy("fragile")
    calls: list[int] = []

    @engine.task("jobs.fragile")
    def fragile(data: Any) -> Any:
        calls.append(1)
        raise RuntimeError("the service is down")

    inst = engine.start("fragile", {}, deadline="1h")
    engine.run_until_idle()
    assert engine.get(inst.id).status == "failed"
    clock.advance(timedelta(hours=5))  # long past the deadline it started with
    engine.redrive(inst.id, reason="the service is back")
    clock.advance(timedelta(minutes=59))
    assert engine.fire_due_timers() == 0
    assert engine.get(inst.id).status == "running"
    clock.advance(timedelta(minutes=1))
    assert engine.fire_due_timers() == 1
    failed = engine.get(inst.id)
    assert failed.error is not None and failed.error["type"] == "DeadlineExceeded"


DEADLINE_V1 = """
name: parcel
deadline: 1h
initial: waiting
states:
  waiting: {on: {park: parked, go: gone}}
  parked: {on: {go: gone}}
  gone: {final: true}
"""
DEADLINE_V2 = """
name: parcel
deadline: 3h
initial: waiting
states:
  waiting: {on: {go: gone}}
  gone: {final: true}
"""


def test_a_migration_keeps_a_starts_deadline_and_gives_the_others_the_new_versions(
    engine: Engine, clock: Any
) -> None:
    engine.deploy(DEADLINE_V1)
    own = engine.start("parcel", {}, deadline="90m").id
    plain = engine.start("parcel", {}).id
    parked = engine.send(engine.start("parcel", {}).id, "park").id
    engine.deploy(DEADLINE_V2)
    clock.advance(timedelta(minutes=10))
    plan = engine.plan_migration("parcel", 1, state_map={"parked": "waiting"})
    assert {entry.id: entry.kind for entry in plan.instances} == {
        own: "safe",
        plain: "safe",
        parked: "mapped",
    }
    engine.migrate(plan)
    clock.advance(timedelta(minutes=80))  # 1h30 from the start: the start's own deadline
    assert engine.fire_due_timers() == 1
    assert _error_type(engine, own) == "DeadlineExceeded"
    clock.advance(timedelta(minutes=60))  # 2h30: past version 1's hour, not version 2's 3h
    assert engine.fire_due_timers() == 0
    assert {engine.get(i).status for i in (plain, parked)} == {"running"}
    clock.advance(timedelta(minutes=30))
    assert engine.fire_due_timers() == 2
    assert {_error_type(engine, i) for i in (plain, parked)} == {"DeadlineExceeded"}


def _error_type(engine: Engine, instance_id: str) -> str | None:
    error = engine.get(instance_id).error
    return None if error is None else error["type"]

"""How a call's parent and child end each other (SQLite and PostgreSQL): every way a parent
ends (succeeded, failed by its machine or by an engine fault, cancelled) cancels its running
children with their compensation, in the same transaction; a child failed by an engine fault
still tells its parent; a child its parent cancelled queues nothing for it; a `failed`
handled without leaving the calling state keeps that state, waiting."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine import AsyncEngine, Engine
from engine.tables import instances_t, timers_t

DEFINITIONS = Path(__file__).parent / "definitions"


@pytest.fixture
def undone(engine: Engine, deploy: Callable[[str], Any]) -> list[dict[str, Any]]:
    """Deploys the calling definitions and the child; what `child.undo` was given."""
    for name in ("call_child", "call_parent", "call_grandparent", "call_region", "call_patient"):
        deploy(name)
    compensated: list[dict[str, Any]] = []

    @engine.task("child.work")
    def work(data: dict[str, Any]) -> dict[str, Any]:
        if data["n"] == 0:
            raise ValueError("n must not be 0")
        return {"doubled": data["n"] * 2}

    engine.task("child.undo")(compensated.append)
    return compensated


def _corrupt(engine: Engine, instance_id: str, **values: Any) -> None:
    with engine.store.engine.begin() as conn:
        conn.execute(sa.update(instances_t).where(instances_t.c.id == instance_id).values(values))


def _timer_keys(engine: Engine, instance_id: str) -> list[str]:
    query = sa.select(timers_t.c.key).where(timers_t.c.instance_id == instance_id)
    with engine.store.engine.connect() as conn:
        return [str(key) for key in conn.execute(query).scalars()]


def _child(engine: Engine, parent: str) -> str:
    (child,) = engine.get(parent).children
    return child


def _cancel_reason(engine: Engine, instance_id: str) -> str:
    (entry,) = [e for e in engine.history(instance_id) if e.kind == "cancel"]
    return str(entry.data["reason"])


# -- a parent that ends --------------------------------------------------------------------------
def test_a_parent_failed_by_an_engine_fault_cancels_and_compensates_its_running_child(
    engine: Engine, clock: Any, undone: list[dict[str, Any]]
) -> None:
    parent = engine.start("call_parent", {"n": 1, "hold": True})
    engine.run_until_idle()
    child = _child(engine, parent.id)
    assert engine.get(child).state == "hold"
    _corrupt(engine, parent.id, version=99)  # its call's timeout can no longer be applied
    clock.advance(timedelta(hours=1, seconds=1))
    engine.fire_due_timers()
    failed = engine.get(parent.id)
    assert (failed.status, engine.history(parent.id)[-1].kind) == ("failed", "error")
    assert engine.get(child).status == "compensating"  # in the same transaction
    engine.run_until_idle()
    assert engine.get(child).status == "cancelled"
    assert undone == [{"n": 1, "hold": True, "doubled": 2}]
    assert _cancel_reason(engine, child) == f"its calling instance {parent.id} ended (failed)"
    assert engine.next_due() is None  # the child's end queued nothing for its ended parent


def test_a_child_failed_by_an_engine_fault_cancels_its_own_child_and_fails_its_parents_call(
    engine: Engine, clock: Any, undone: list[dict[str, Any]]
) -> None:
    top = engine.start("call_grandparent", {"n": 3})
    engine.run_until_idle()
    middle = _child(engine, top.id)
    bottom = _child(engine, middle)
    _corrupt(engine, middle, version=99)
    clock.advance(timedelta(hours=1, seconds=1))  # the middle's call timeout fires, and fails
    engine.run_until_idle()
    assert engine.get(middle).status == "failed"
    assert engine.get(bottom).status == "cancelled"
    assert undone == [{"n": 3, "hold": True, "doubled": 6}]
    ended = engine.get(top.id)  # its call state has no `failed`: it fails with the fault's type
    assert ended.status == "failed"
    assert ended.error is not None and ended.error["type"] == "DefinitionNotFound"
    (delivered,) = [e for e in engine.history(top.id) if e.event == "failed"]
    assert delivered.data["child"] == middle
    assert delivered.data["error"]["type"] == "DefinitionNotFound"


def test_a_child_whose_task_answer_cannot_be_applied_fails_its_parents_call_by_type(
    engine: Engine, undone: list[dict[str, Any]]
) -> None:
    parent = engine.start("call_parent", {"n": 1})
    child = _child(engine, parent.id)
    _corrupt(engine, child, version=99)
    engine.run_until_idle()
    assert engine.get(child).status == "failed"
    after = engine.get(parent.id)
    assert (after.status, after.state) == ("failed", "other_failure")  # caught by "*"
    (delivered,) = [e for e in engine.history(parent.id) if e.event == "failed"]
    assert delivered.data["error"]["type"] == "DefinitionNotFound"


def test_a_child_too_corrupt_to_name_its_calling_state_leaves_the_call_to_its_timeout(
    engine: Engine, clock: Any, undone: list[dict[str, Any]]
) -> None:
    parent = engine.start("call_parent", {"n": 1})
    child = _child(engine, parent.id)
    _corrupt(engine, child, machine="not a machine")
    engine.run_until_idle()
    assert engine.get(child).status == "failed"
    assert engine.get(parent.id).state == "ask"  # it cannot be told
    clock.advance(timedelta(hours=1, seconds=1))
    engine.run_until_idle()
    assert engine.get(parent.id).state == "timed_out"


def test_a_child_that_cannot_be_cancelled_is_failed_and_its_parent_goes_on(
    engine: Engine, clock: Any, undone: list[dict[str, Any]]
) -> None:
    parent = engine.start("call_parent", {"n": 1, "hold": True})
    engine.run_until_idle()
    child = _child(engine, parent.id)
    _corrupt(engine, child, version=99)
    engine.send(parent.id, "stop")
    assert engine.get(parent.id).state == "stopped"
    assert engine.get(child).status == "failed"
    last = engine.history(child)[-1]
    assert (last.kind, last.data["type"]) == ("error", "DefinitionNotFound")
    assert engine.next_due() is None


@pytest.mark.parametrize(
    ("event", "status"), [("enough", "succeeded"), ("broken", "failed")], ids=["final", "failed"]
)
def test_a_parent_ending_from_another_region_cancels_the_child_of_a_call_in_a_region(
    engine: Engine, undone: list[dict[str, Any]], event: str, status: str
) -> None:
    parent = engine.start("call_region")
    engine.run_until_idle()
    child = _child(engine, parent.id)
    assert engine.get(child).state == "hold"
    assert engine.send(parent.id, event).status == status
    assert engine.get(child).status == "compensating"  # in the same transaction
    engine.run_until_idle()
    assert engine.get(child).status == "cancelled"
    assert undone == [{"n": 1, "hold": True, "doubled": 2}]
    assert _cancel_reason(engine, child) == f"its calling instance {parent.id} ended ({status})"
    assert engine.get(parent.id).status == status
    assert engine.next_due() is None


# -- a child its parent cancelled ----------------------------------------------------------------
def test_a_child_cancelled_by_its_parent_queues_no_timer_for_it(
    engine: Engine, undone: list[dict[str, Any]]
) -> None:
    parent = engine.start("call_parent", {"n": 1, "hold": True})
    at_once = engine.start("call_parent", {"n": 1, "hold": True})
    engine.send(at_once.id, "stop")  # its child has no compensation: cancelled in this step
    assert engine.get(_child(engine, at_once.id)).status == "cancelled"
    assert _timer_keys(engine, at_once.id) == []
    engine.run_until_idle()
    engine.send(parent.id, "stop")  # its child compensates first, in its own steps
    child = _child(engine, parent.id)
    [undo] = engine.claim_tasks(["child.undo"])
    assert engine.complete_task(undo.id, None, None)
    assert engine.get(child).status == "cancelled"
    assert _timer_keys(engine, parent.id) == []
    assert engine.next_due() is None


# -- a `failed` handled without leaving the calling state ---------------------------------------
def test_a_failed_handled_in_place_keeps_the_calling_state_waiting_for_its_timeout(
    engine: Engine, clock: Any, undone: list[dict[str, Any]]
) -> None:
    parent = engine.start("call_patient", {"n": 0})
    engine.run_until_idle()
    child = _child(engine, parent.id)
    waiting = engine.get(parent.id)
    assert (waiting.status, waiting.state) == ("running", "ask")
    assert waiting.context["problem"] == "ValueError"
    assert engine.get(child).status == "failed"
    handled = engine.history(parent.id)[-1]
    assert (handled.kind, handled.event, handled.from_state) == ("call", "failed", "ask")
    assert handled.data["error"]["type"] == "ValueError"
    assert _timer_keys(engine, parent.id) == ["timeout"]
    assert engine.allowed(parent.id) == ["again", "stop"]
    clock.advance(timedelta(hours=1, seconds=1))
    engine.run_until_idle()
    ended = engine.get(parent.id)
    assert (ended.status, ended.state) == ("failed", "gave_up")
    assert engine.get(child).status == "failed"  # its end stays its own
    assert engine.get(parent.id).children == [child]


def test_a_calling_state_entered_again_after_a_failed_handled_in_place_calls_again(
    engine: Engine, undone: list[dict[str, Any]]
) -> None:
    parent = engine.start("call_patient", {"n": 0})
    engine.run_until_idle()
    engine.send(parent.id, "again")
    engine.run_until_idle()
    first, second = engine.get(parent.id).children
    assert [engine.get(child).status for child in (first, second)] == ["failed", "failed"]
    assert engine.get(parent.id).state == "ask"
    assert engine.send(parent.id, "stop").state == "stopped"
    assert engine.next_due() is None


# -- the asyncio interface -----------------------------------------------------------------------
def test_the_async_engine_links_parent_and_children_and_cancels_them_together(
    store_url: str, clock: Any
) -> None:
    async def scenario() -> None:
        async with AsyncEngine(store_url, clock) as aeng:
            for name in ("call_child", "call_parent"):
                await aeng.deploy(DEFINITIONS / f"{name}.yaml")
            parent = await aeng.start("call_parent", {"n": 1, "hold": True})
            (child,) = (await aeng.get(parent.id)).children
            assert (await aeng.get(child)).parent == parent.id
            listed = await aeng.instances(parent=parent.id)
            assert [instance.id for instance in listed] == [child]
            assert await aeng.instances(parent=child) == []
            assert (await aeng.cancel(parent.id)).status == "cancelled"
            assert (await aeng.get(child)).status == "cancelled"

    asyncio.run(scenario())


def test_a_parent_that_compensates_before_it_fails_cancels_its_child_first(
    engine: Engine, deploy: Callable[[str], Any], undone: list[dict[str, Any]]
) -> None:
    deploy("call_compensating")
    engine.task("parent.prepare")(lambda data: {"prepared": True})
    engine.task("parent.unprepare")(lambda data: None)
    parent = engine.start("call_compensating", {"n": 1, "hold": True})
    engine.run_until_idle()
    child = _child(engine, parent.id)
    engine.send(parent.id, "go")
    [task] = engine.claim_tasks(["parent.check"])
    engine.fail_task(task.id, None, {"type": "RuntimeError", "message": "a problem"})
    assert engine.get(parent.id).status == "compensating"
    assert engine.get(child).status == "compensating"  # cancelled in the same transaction
    reason = f"its calling instance {parent.id} ended (failed, compensating first)"
    assert _cancel_reason(engine, child) == reason
    engine.run_until_idle()
    assert [engine.get(i).status for i in (parent.id, child)] == ["failed", "cancelled"]
    assert undone == [{"n": 1, "hold": True, "doubled": 2}]
    assert engine.next_due() is None

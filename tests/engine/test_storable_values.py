"""Every value that enters an instance is stored by one rule (`statemachines.storable`).

Datetimes become ISO-8601 text and tuples lists, whether an expression, a handler or a caller
made them; what JSON cannot hold is refused before anything is written (start and event data),
fails its expression (`assign`, `input`) or fails the attempt (a handler's result). The same on
SQLite and PostgreSQL, and the same as `simulate`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import statemachines
from engine import Engine, InvalidInput, ValueNotStorable
from statemachines import simulate

DEFINITIONS = Path(__file__).parent / "definitions"
HOUR = "2026-01-01T01:00:00+00:00"


def _state_and_history(engine: Engine, instance_id: str) -> tuple[Any, list[Any]]:
    return engine.get(instance_id), engine.history(instance_id)


def _failure(engine: Engine, instance_id: str) -> dict[str, Any]:
    entry = next(e for e in engine.history(instance_id) if e.event == "failed")
    return dict(entry.data["error"])


def test_now_assigned_on_a_timer_transition_is_stored_as_iso_text(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("escalation")
    inst = engine.start("escalation", {})
    clock.advance(timedelta(hours=1))
    engine.run_until_idle()
    escalated = engine.get(inst.id)
    assert escalated.state == "escalated"
    assert escalated.context == {"escalated_at": HOUR}


def test_a_work_loop_fires_a_timer_that_assigns_now_and_goes_on_with_tasks(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("escalation")
    engine.task("clerk.stamp")(lambda stamped_at: {"seen": stamped_at})
    inst = engine.start("escalation", {})
    clock.advance(timedelta(hours=1))
    stop = threading.Event()
    worker = threading.Thread(
        target=engine.work, kwargs={"concurrency": 1, "stop": stop, "poll_interval": 0.05}
    )
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while engine.get(inst.id).state != "escalated" and time.monotonic() < deadline:
            time.sleep(0.05)
        engine.send(inst.id, "stamp")
        while engine.get(inst.id).status == "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.is_alive()
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not worker.is_alive()
    closed = engine.get(inst.id)
    assert closed.state == "closed"
    assert closed.context["escalated_at"] == HOUR
    assert closed.context["stamped"] == {"seen": HOUR}


def test_now_assigned_by_an_event_is_iso_text_in_the_answer_and_when_read_back(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("escalation")
    inst = engine.start("escalation", {})
    touched = engine.send(inst.id, "touch")
    expected = {"touched_at": "2026-01-01T00:00:00+00:00", "pair": [1, "a"]}
    assert touched.context == expected
    assert engine.get(inst.id).context == expected


def test_task_input_now_reaches_the_handler_as_iso_text(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("escalation")
    received: list[Any] = []
    engine.task("clerk.stamp")(lambda stamped_at: received.append(stamped_at) or "ok")
    inst = engine.start("escalation", {})
    clock.advance(timedelta(minutes=5))
    engine.send(inst.id, "stamp")
    engine.run_until_idle()
    assert received == ["2026-01-01T00:05:00+00:00"]
    assert engine.get(inst.id).context["stamped"] == "ok"


def test_an_assign_yielding_infinity_leaves_its_key_unwritten_and_records_an_error(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("escalation")
    inst = engine.start("escalation", {})
    answered = engine.send(inst.id, "overflow")
    assert answered.context == {"kept": "yes"}
    assert engine.get(inst.id).context == {"kept": "yes"}
    error = next(e for e in engine.history(inst.id) if e.kind == "error")
    assert error.data["where"] == "assign ratio in open"
    assert "context.ratio is the float inf" in error.data["message"]


def test_simulate_and_the_engine_end_with_the_same_context(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("escalation")
    engine.task("clerk.stamp")(lambda stamped_at: {"at": stamped_at, "pair": ("x", 2)})
    inst = engine.start("escalation", {})
    for event in ("touch", "overflow"):
        engine.send(inst.id, event)
    clock.advance(timedelta(hours=1))
    engine.run_until_idle()
    engine.send(inst.id, "stamp")
    engine.run_until_idle()
    run = simulate(
        statemachines.load(DEFINITIONS / "escalation.yaml"),
        ["touch", "overflow", "after:1h", "stamp"],
        results={"clerk.stamp": lambda stamped_at: {"at": stamped_at, "pair": ("x", 2)}},
    )
    finished = engine.get(inst.id)
    assert (run.state, run.status) == (finished.state, finished.status) == ("closed", "succeeded")
    assert run.context == finished.context
    assert finished.context["stamped"] == {"at": HOUR, "pair": ["x", 2]}


@pytest.mark.parametrize(
    "data",
    [
        {"ratio": float("nan")},
        {"limits": [0, float("inf")]},
        {"limits": {"low": float("-inf")}},
        {1: "a", "1": "b"},
        {"tags": {"a", "b"}},
        {"raw": b"\x00"},
    ],
    ids=["nan", "inf", "minus-inf", "int-and-str-key", "set", "bytes"],
)
def test_event_data_json_cannot_hold_is_refused_and_changes_nothing(
    engine: Engine, deploy: Callable[[str], Any], data: dict[Any, Any]
) -> None:
    deploy("escalation")
    inst = engine.start("escalation", {})
    before = _state_and_history(engine, inst.id)
    with pytest.raises(InvalidInput) as refused:
        engine.send(inst.id, "touch", data)
    assert isinstance(refused.value, ValueNotStorable)
    assert refused.value.path.startswith("event data")
    assert _state_and_history(engine, inst.id) == before


def test_event_data_with_an_int_key_beside_the_same_string_key_is_not_collapsed(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("escalation")
    inst = engine.start("escalation", {})
    with pytest.raises(ValueNotStorable, match="has the key 1 of type int"):
        engine.send(inst.id, "touch", {"pick": {1: "a", "1": "b"}})
    assert [e.kind for e in engine.history(inst.id)] == ["start"]


def test_start_data_nested_deeper_than_64_levels_is_refused_before_anything_is_written(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("escalation")
    deep: dict[str, Any] = {}
    inner = deep
    for _ in range(900):
        inner["a"] = {}
        inner = inner["a"]
    with pytest.raises(ValueNotStorable, match="nested deeper than 64 levels"):
        engine.start("escalation", {"deep": deep})
    assert engine.instances() == []


def test_event_data_at_64_levels_is_stored_and_one_more_level_is_refused(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("escalation")
    inst = engine.start("escalation", {})
    deepest: list[Any] = []
    for _ in range(63):
        deepest = [deepest]
    engine.send(inst.id, "touch", deepest)
    assert engine.history(inst.id)[-1].data == deepest
    with pytest.raises(ValueNotStorable, match="nested deeper than 64 levels"):
        engine.send(inst.id, "touch", [deepest])


def test_start_and_event_data_are_stored_by_the_rule_datetimes_as_iso_text(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("escalation")
    due = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    inst = engine.start("escalation", {"due": due, "window": (1, 2)})
    assert inst.context == {"due": "2026-03-01T12:30:00+00:00", "window": [1, 2]}
    engine.send(inst.id, "touch", {"at": due})
    assert engine.history(inst.id)[-1].data == {"at": "2026-03-01T12:30:00+00:00"}
    assert engine.get(inst.id).context["due"] == "2026-03-01T12:30:00+00:00"


def test_a_handler_result_with_a_datetime_and_a_tuple_is_stored_converted(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")
    stamped = datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)
    result = {"at": stamped, "span": (1, 2), "wait": timedelta(hours=1)}
    engine.task("jobs.work")(lambda data: result)
    inst = engine.start("one_task", {})
    engine.run_until_idle()
    finished = engine.get(inst.id)
    assert finished.state == "finished"
    assert finished.context == {"at": "2026-02-03T04:05:06+00:00", "span": [1, 2], "wait": 3600.0}


def test_a_handler_result_holding_a_set_fails_the_attempt_naming_where(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")
    engine.task("jobs.work")(lambda data: {"tags": [{"a", "b"}]})
    inst = engine.start("one_task", {})
    engine.run_until_idle()
    assert engine.get(inst.id).state == "broken"
    assert engine.get(inst.id).context == {}
    error = _failure(engine, inst.id)
    assert error["type"] == "ResultError"
    assert error["message"].startswith("result.tags[0] is a set")


def test_a_failure_reported_with_a_value_json_cannot_hold_is_refused_and_changes_nothing(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")
    inst = engine.start("one_task", {})
    [task] = engine.claim_tasks(["jobs.work"], "w1")
    before = _state_and_history(engine, inst.id)
    with pytest.raises(ValueNotStorable, match=r"^error\.ratio is the float nan"):
        engine.fail_task(task.id, "w1", {"type": "Odd", "message": "x", "ratio": float("nan")})
    assert _state_and_history(engine, inst.id) == before
    assert engine.fail_task(task.id, "w1", {"type": "Odd", "message": "x", "at": (1, 2)})
    assert _state_and_history(engine, inst.id) != before

"""Timers read from data on the engine clock: a delay from the context or the event, an
ISO-8601 instant (with an offset), a past instant at once, and a missing or malformed value
failing the state with `TimerError` (caught, or failing the instance)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from engine import Engine

LATER = {"grace_seconds": 86_400 * 365, "trial_ends": "2027-01-01T00:00:00Z"}


@pytest.fixture
def trial(deploy: Callable[[str], Any]) -> None:
    deploy("data_timers")


def _timers(engine: Engine, instance_id: str) -> list[tuple[str | None, str | None]]:
    return [(e.event, e.to_state) for e in engine.history(instance_id) if e.kind == "timer"]


def _error(engine: Engine, instance_id: str) -> dict[str, Any]:
    [failed] = [e for e in engine.history(instance_id) if e.event == "failed"]
    return dict(failed.data["error"])


@pytest.mark.usefixtures("trial")
def test_a_delay_from_the_context_fires_at_exactly_that_many_seconds(
    engine: Engine, clock: Any
) -> None:
    inst = engine.start("data_timers", {**LATER, "grace_seconds": 90})
    clock.advance(89)
    assert engine.run_until_idle() == 0
    assert engine.get(inst.id).state == "trial"
    clock.advance(1)
    assert engine.run_until_idle() == 1
    over = engine.get(inst.id)
    assert (over.state, over.status) == ("grace_over", "failed")
    assert _timers(engine, inst.id) == [("after context.grace_seconds", "grace_over")]


@pytest.mark.usefixtures("trial")
def test_a_delay_from_the_event_that_entered_the_state(engine: Engine, clock: Any) -> None:
    inst = engine.start("data_timers", LATER)
    clock.advance(timedelta(hours=5))
    engine.send(inst.id, "extend", {"wait": "90m"})  # counted from this entry
    clock.advance(timedelta(minutes=90) - timedelta(seconds=1))
    assert engine.run_until_idle() == 0
    clock.advance(1)
    assert engine.run_until_idle() == 1
    assert engine.get(inst.id).state == "grace_over"
    assert _timers(engine, inst.id) == [("after event.wait", "grace_over")]


@pytest.mark.usefixtures("trial")
def test_an_absolute_instant_fires_then(engine: Engine, clock: Any) -> None:
    inst = engine.start("data_timers", {**LATER, "trial_ends": "2026-01-03T12:00:00+02:00"})
    clock.advance(timedelta(days=2, hours=10) - timedelta(seconds=1))  # 2026-01-03T09:59:59Z
    assert engine.run_until_idle() == 0
    clock.advance(1)
    assert engine.run_until_idle() == 1
    assert engine.get(inst.id).state == "trial_over"


@pytest.mark.usefixtures("trial")
def test_the_offset_form_fires_two_days_before_the_instant(engine: Engine, clock: Any) -> None:
    inst = engine.start("data_timers", {**LATER, "booking": {"starts": "2026-01-10T09:00:00"}})
    engine.send(inst.id, "book")
    clock.advance(timedelta(days=7, hours=9) - timedelta(seconds=1))  # just before the 8th, 9:00
    assert engine.run_until_idle() == 0
    clock.advance(1)
    assert engine.run_until_idle() == 1
    reminded = engine.get(inst.id)
    assert (reminded.state, reminded.context["reminded"]) == ("booked", True)
    clock.advance(timedelta(days=2))
    assert engine.run_until_idle() == 1
    assert engine.get(inst.id).status == "succeeded"
    assert _timers(engine, inst.id) == [
        ("at context.booking.starts - 2d", "booked"),
        ("at context.booking.starts", "started"),
    ]


@pytest.mark.usefixtures("trial")
def test_a_past_instant_fires_in_the_next_round_without_the_clock_moving(
    engine: Engine,
) -> None:
    inst = engine.start("data_timers", {**LATER, "trial_ends": "2025-12-01T00:00:00Z"})
    assert engine.get(inst.id).state == "trial"
    assert engine.run_until_idle() == 1
    assert engine.get(inst.id).state == "trial_over"


@pytest.mark.usefixtures("trial")
@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"trial_ends": "2027-01-01"}, "context.grace_seconds has no value"),
        ({"grace_seconds": 90, "trial_ends": "soon"}, "context.trial_ends gave 'soon', which is"),
    ],
    ids=["missing", "malformed"],
)
def test_a_missing_or_malformed_value_is_a_timer_error_the_state_catches(
    engine: Engine, data: dict[str, Any], message: str
) -> None:
    inst = engine.start("data_timers", data)
    broken = engine.get(inst.id)
    assert (broken.state, broken.status) == ("broken", "failed")
    error = _error(engine, inst.id)
    assert error["type"] == "TimerError"
    assert message in error["message"]
    assert engine.run_until_idle() == 0  # the other timer left with the state


@pytest.mark.usefixtures("trial")
def test_an_uncaught_timer_error_fails_the_instance(engine: Engine, clock: Any) -> None:
    inst = engine.start("data_timers", LATER)
    failed = engine.send(inst.id, "extend", {})
    assert failed.status == "failed"
    assert _error(engine, inst.id) == {
        "type": "TimerError",
        "message": "timer 'after event.wait': event.wait has no value",
    }
    clock.advance(timedelta(days=400))
    assert engine.run_until_idle() == 0

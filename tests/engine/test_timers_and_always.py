"""`after` timers on the engine clock, dropped on exit; `always` chains and their 100-step cut."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import statemachines
from engine import Engine


def test_timer_fires_when_due_by_the_engine_clock(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("reminder")
    inst = engine.start("reminder", {})
    clock.advance(timedelta(minutes=10) - timedelta(seconds=1))
    assert engine.run_until_idle() == 0
    assert engine.get(inst.id).context == {}
    clock.advance(1)
    assert engine.run_until_idle() == 1
    reminded = engine.get(inst.id)
    assert reminded.state == "waiting"
    assert reminded.context == {"reminded": 1}
    timer_entries = [e for e in engine.history(inst.id) if e.kind == "timer"]
    assert len(timer_entries) == 1


def test_timer_fires_once_per_entry(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("reminder")
    inst = engine.start("reminder", {})
    clock.advance(timedelta(minutes=10))
    engine.run_until_idle()
    clock.advance(timedelta(minutes=10))
    engine.run_until_idle()
    assert engine.get(inst.id).context == {"reminded": 1}


def test_overdue_timers_fire_in_due_order(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("reminder")
    inst = engine.start("reminder", {})
    clock.advance(timedelta(hours=2))  # both the 10m reminder and the 1h expiry are due
    engine.run_until_idle()
    done = engine.get(inst.id)
    assert done.state == "expired"
    assert done.status == "failed"
    assert done.context == {"reminded": 1}


def test_timer_is_dropped_when_its_state_is_left(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("reminder")
    inst = engine.start("reminder", {})
    clock.advance(timedelta(minutes=5))
    engine.send(inst.id, "snooze")
    clock.advance(timedelta(hours=3))
    assert engine.run_until_idle() == 0
    snoozed = engine.get(inst.id)
    assert snoozed.state == "snoozed"
    assert snoozed.context == {}
    assert "timer" not in [e.kind for e in engine.history(inst.id)]


def test_timer_restarts_from_each_new_entry(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("reminder")
    inst = engine.start("reminder", {})
    clock.advance(timedelta(minutes=50))
    engine.send(inst.id, "snooze")
    engine.send(inst.id, "wake")  # back in `waiting`: its timers count from now
    clock.advance(timedelta(minutes=50))
    engine.run_until_idle()
    assert engine.get(inst.id).state == "waiting"
    clock.advance(timedelta(minutes=10))
    engine.run_until_idle()
    assert engine.get(inst.id).state == "expired"


def test_timers_of_a_finished_instance_never_fire(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("reminder")
    inst = engine.start("reminder", {})
    engine.send(inst.id, "answer")
    history = engine.history(inst.id)
    clock.advance(timedelta(days=1))
    assert engine.run_until_idle() == 0
    assert engine.history(inst.id) == history


def test_always_picks_the_first_transition_whose_guard_holds(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("routing")
    big = engine.start("routing", {"amount": 150})
    small = engine.start("routing", {"amount": 5})
    assert big.state == "big"
    assert small.state == "small"
    kinds = [e.kind for e in engine.history(big.id)]
    assert kinds[0] == "start" and "always" in kinds


def test_always_is_evaluated_again_on_each_entry(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("routing")
    inst = engine.start("routing", {"amount": 150})
    assert engine.send(inst.id, "again").state == "big"
    history = engine.history(inst.id)
    assert [(e.from_state, e.to_state) for e in history if e.kind == "always"] == [
        ("route", "big"),
        ("route", "big"),
    ]


def test_always_chain_below_the_limit_runs_to_the_end(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("looping")
    inst = engine.start("looping", {"n": 0, "limit": 50})
    assert inst.status == "running"
    assert inst.state == "spin"
    assert inst.context == {"n": 50, "limit": 50}
    assert [e.kind for e in engine.history(inst.id)].count("always") == 50
    assert engine.send(inst.id, "stop").status == "succeeded"


def test_endless_always_chain_is_cut_after_100_steps_with_an_error(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("looping")
    inst = engine.start("looping", {"n": 0, "limit": 1_000_000})
    history = engine.history(inst.id)
    steps = [e.kind for e in history].count("always")
    assert 99 <= steps <= 101
    assert 99 <= inst.context["n"] <= 101
    errors = [e for e in history if e.kind == "error"]
    assert errors, "the cut is recorded as an error"
    assert "100" in str(errors[-1].data)
    assert engine.get(inst.id) == inst


def test_always_chain_looping_between_states_is_cut_with_an_error(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("pingpong")
    inst = engine.start("pingpong", {"loop": True})
    history = engine.history(inst.id)
    assert 99 <= [e.kind for e in history].count("always") <= 101
    assert "error" in [e.kind for e in history]
    assert inst.status != "running" or inst.state in ("ping", "pong")


def test_always_guard_that_does_not_hold_leaves_the_instance_waiting(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("pingpong")
    inst = engine.start("pingpong", {"loop": False})
    assert inst.state == "ping"
    assert inst.status == "running"
    assert engine.send(inst.id, "stop").status == "succeeded"


def test_work_loop_fires_due_timers(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("reminder")
    inst = engine.start("reminder", {})
    clock.advance(timedelta(hours=1))
    stop = threading.Event()
    worker = threading.Thread(target=engine.work, kwargs={"concurrency": 1, "stop": stop})
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while engine.get(inst.id).status == "running" and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not worker.is_alive()
    assert engine.get(inst.id).state == "expired"


def test_always_is_evaluated_again_after_an_internal_assign(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("threshold")
    inst = engine.start("threshold", {})
    assert engine.send(inst.id, "vote").state == "collecting"
    assert engine.send(inst.id, "vote").state == "collecting"
    decided = engine.send(inst.id, "vote")
    assert decided.state == "decided"
    assert decided.status == "succeeded"
    assert decided.context == {"votes": 3}


def test_timers_inside_a_parallel_region_are_dropped_when_the_parallel_state_is_left(
    engine: Engine, clock: Any
) -> None:
    approval = next(p for p in statemachines.examples() if p.stem == "document_approval")
    engine.deploy(approval)  # review: 2d expiry; its finance region: a 1d reminder
    inst = engine.start("document_approval", {"document_id": "D-1", "author": "ann"})
    engine.send(inst.id, "submit", {"by": "bob"})
    withdrawn = engine.send(inst.id, "withdraw")
    history = engine.history(inst.id)
    clock.advance(timedelta(days=3))
    assert engine.run_until_idle() == 0
    assert engine.get(inst.id) == withdrawn
    assert engine.history(inst.id) == history
    assert "reminded" not in withdrawn.context


def test_timer_inside_a_parallel_region_fires_while_the_region_waits(
    engine: Engine, clock: Any
) -> None:
    approval = next(p for p in statemachines.examples() if p.stem == "document_approval")
    engine.deploy(approval)
    inst = engine.start("document_approval", {"document_id": "D-1", "author": "ann"})
    engine.send(inst.id, "submit", {"by": "bob"})
    clock.advance(timedelta(days=1))
    engine.run_until_idle()
    reminded = engine.get(inst.id)
    assert reminded.state == "review"
    assert reminded.context["reminded"] is True

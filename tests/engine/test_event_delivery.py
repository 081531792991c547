"""Events: transitions and assignments, rejection that changes nothing, atomicity, idempotency."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from engine import Engine, EventRejected, TurnoutError


def _snapshot(engine: Engine, instance_id: str) -> tuple[Any, list[Any]]:
    return engine.get(instance_id), engine.history(instance_id)


def test_event_moves_instance_and_runs_assign_with_event_payload(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("signup")
    inst = engine.start("signup", {"email": "ann@example.com"})
    clock.advance(60)
    moved = engine.send(inst.id, "confirm", {"by": "support"})
    assert moved.state == "active"
    assert moved.context == {"email": "ann@example.com", "confirmed_by": "support"}
    assert moved.revision > inst.revision
    assert moved.updated_at == clock.now
    assert moved.created_at == inst.created_at
    assert engine.get(inst.id) == moved


def test_internal_transition_assigns_without_leaving_the_state(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    inst = engine.start("counter", {"count": 0})
    for _ in range(3):
        inst = engine.send(inst.id, "increment")
    assert inst.state == "counting"
    assert inst.context == {"count": 3}


def test_reaching_a_final_state_ends_the_instance(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("signup")
    inst = engine.start("signup", {"email": "ann@example.com"})
    done = engine.send(inst.id, "reject")
    assert done.state == "closed"
    assert done.status == "succeeded"


def test_rejected_event_leaves_state_and_revision_unchanged(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("signup")
    inst = engine.start("signup", {"email": "ann@example.com"})
    before, history = _snapshot(engine, inst.id)
    with pytest.raises(EventRejected) as raised:
        engine.send(inst.id, "suspend", {"why": "nope"})
    assert raised.value.state == "pending"
    assert sorted(raised.value.allowed) == ["confirm", "reject"]
    assert "pending" in str(raised.value)
    assert _snapshot(engine, inst.id) == (before, history)


def test_rejected_event_is_a_turnout_error(engine: Engine, deploy: Callable[[str], Any]) -> None:
    deploy("signup")
    inst = engine.start("signup", {"email": "ann@example.com"})
    with pytest.raises(TurnoutError):
        engine.send(inst.id, "unknown_event")


def test_event_whose_guard_does_not_hold_is_rejected_and_changes_nothing(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    inst = engine.start("counter", {"count": 5})
    before, history = _snapshot(engine, inst.id)
    with pytest.raises(EventRejected):
        engine.send(inst.id, "add", {"amount": -3})
    assert _snapshot(engine, inst.id) == (before, history)
    assert engine.send(inst.id, "add", {"amount": 3}).context == {"count": 8}


def test_guard_that_fails_at_run_time_rejects_the_event_and_changes_nothing(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    inst = engine.start("counter", {"count": 5})
    before, history = _snapshot(engine, inst.id)
    with pytest.raises(EventRejected):
        engine.send(inst.id, "add", {"amount": "three"})  # str > int: a type error
    assert _snapshot(engine, inst.id) == (before, history)


def test_guard_failure_is_recorded_with_the_transition_that_fired_instead(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    inst = engine.start("counter", {"count": 5})
    seen = len(engine.history(inst.id))
    after = engine.send(inst.id, "checked_add", {"amount": "three"})
    assert after.context == {"count": 5, "bad_adds": 1}
    added = engine.history(inst.id)[seen:]
    kinds = [entry.kind for entry in added]
    assert "error" in kinds and "event" in kinds
    error = next(entry for entry in added if entry.kind == "error")
    assert "event.amount > 0" in str(error.data)


def test_events_to_a_finished_instance_are_rejected(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("signup")
    inst = engine.start("signup", {"email": "ann@example.com"})
    done = engine.send(inst.id, "reject")
    history = engine.history(inst.id)
    with pytest.raises(EventRejected) as raised:
        engine.send(inst.id, "confirm")
    assert raised.value.allowed == []
    assert engine.get(inst.id) == done
    assert engine.history(inst.id) == history


def test_allowed_lists_the_events_of_the_active_state(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("signup")
    inst = engine.start("signup", {"email": "ann@example.com"})
    assert sorted(engine.allowed(inst.id)) == ["confirm", "reject"]
    engine.send(inst.id, "confirm", {"by": "x"})
    assert sorted(engine.allowed(inst.id)) == ["close", "note", "suspend"]
    engine.send(inst.id, "close")
    assert engine.allowed(inst.id) == []


def test_allowed_of_a_snapshot_answers_for_that_snapshot(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("signup")
    started = engine.start("signup", {"email": "ann@example.com"})
    confirmed = engine.send(started.id, "confirm", {"by": "x"})
    assert sorted(engine.allowed(started)) == ["confirm", "reject"]
    assert sorted(engine.allowed(confirmed)) == ["close", "note", "suspend"]
    assert engine.allowed(engine.send(started.id, "close")) == []
    assert engine.allowed(started.id) == []


def test_allowed_ignores_guards(engine: Engine, deploy: Callable[[str], Any]) -> None:
    deploy("counter")
    inst = engine.start("counter", {"count": 0})
    assert sorted(engine.allowed(inst.id)) == ["add", "checked_add", "increment", "stop"]


def test_payload_that_cannot_be_stored_fails_the_call_and_leaves_nothing_behind(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("signup")
    inst = engine.start("signup", {"email": "ann@example.com"})
    before, history = _snapshot(engine, inst.id)
    with pytest.raises((TurnoutError, TypeError, ValueError)):
        engine.send(inst.id, "confirm", {"by": {1, 2, 3}})  # a set is not JSON
    assert _snapshot(engine, inst.id) == (before, history)
    # the instance is intact: the next event applies on top of the same revision
    moved = engine.send(inst.id, "confirm", {"by": "support"})
    assert moved.state == "active"
    assert [entry.seq for entry in engine.history(inst.id)] == list(range(1, len(history) + 2))


def test_idempotency_key_already_accepted_is_not_applied_again(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    inst = engine.start("counter", {"count": 0})
    first = engine.send(inst.id, "add", {"amount": 5}, idempotency_key="msg-1")
    history = engine.history(inst.id)
    again = engine.send(inst.id, "add", {"amount": 5}, idempotency_key="msg-1")
    assert again == first
    assert engine.history(inst.id) == history
    assert engine.get(inst.id).context == {"count": 5}


def test_idempotency_key_ignores_a_different_payload(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    inst = engine.start("counter", {"count": 0})
    engine.send(inst.id, "add", {"amount": 5}, idempotency_key="msg-1")
    engine.send(inst.id, "increment")
    current = engine.get(inst.id)
    replay = engine.send(inst.id, "add", {"amount": 100}, idempotency_key="msg-1")
    assert replay == current
    assert engine.get(inst.id).context == {"count": 6}


def test_idempotency_key_replay_returns_current_instance_even_if_now_rejected(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("signup")
    inst = engine.start("signup", {"email": "ann@example.com"})
    engine.send(inst.id, "reject", idempotency_key="close-1")
    replay = engine.send(inst.id, "reject", idempotency_key="close-1")
    assert replay.state == "closed"
    assert replay == engine.get(inst.id)


def test_rejected_event_does_not_use_up_its_idempotency_key(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("signup")
    inst = engine.start("signup", {"email": "ann@example.com"})
    with pytest.raises(EventRejected):
        engine.send(inst.id, "suspend", idempotency_key="msg-7")
    engine.send(inst.id, "confirm", {"by": "x"})
    suspended = engine.send(inst.id, "suspend", idempotency_key="msg-7")
    assert suspended.state == "suspended"


def test_idempotency_keys_are_per_instance(engine: Engine, deploy: Callable[[str], Any]) -> None:
    deploy("counter")
    first = engine.start("counter", {"count": 0})
    second = engine.start("counter", {"count": 0})
    engine.send(first.id, "increment", idempotency_key="same")
    assert engine.send(second.id, "increment", idempotency_key="same").context == {"count": 1}
    assert engine.get(first.id).context == {"count": 1}


def test_idempotency_key_works_through_send_by_key(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    engine.start("counter", {"count": 0}, key="c-1")
    engine.send_by_key("counter", "c-1", "increment", idempotency_key="m")
    engine.send_by_key("counter", "c-1", "increment", idempotency_key="m")
    assert engine.instances(definition="counter", key="c-1")[0].context == {"count": 1}


def test_revision_grows_with_every_accepted_event(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    inst = engine.start("counter", {"count": 0})
    revisions = [inst.revision]
    for _ in range(4):
        revisions.append(engine.send(inst.id, "increment").revision)
    assert revisions == sorted(set(revisions))

"""Time travel on the durable engine (SQLite and PostgreSQL): `get(at=SEQ)` rebuilds an
instance from its history exactly as it stood once entry SEQ had committed, and
`diagram(at=SEQ)` draws it so."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from engine import Engine, HistoryEntry, Instance, TaskFailure
from statemachines.errors import EventRejected, InvalidInput


def _recorder(engine: Engine) -> dict[tuple[str, int], Instance]:
    """Every instance's snapshot right after each of its entries committed, by (id, seq)."""
    seen: dict[tuple[str, int], Instance] = {}

    def remember(entry: HistoryEntry) -> None:
        seen[(entry.instance_id, entry.seq)] = engine.get(entry.instance_id)

    engine.subscribe(remember)
    return seen


def _drive(engine: Engine, clock: Any, seed: int, operations: int) -> None:
    """A seeded walk over `nested_order` instances: events their states allow, tasks that
    succeed or fail, the clock moved past the phase timer now and then, a cancel."""
    chance = random.Random(seed)

    def charge(order: dict[str, Any]) -> dict[str, Any]:
        if chance.random() < 0.4:
            raise TaskFailure("CardDeclined", "declined")
        return {"charged": chance.randint(1, 99)}

    engine.task("payments.charge")(charge)
    engine.task("warehouse.pack")(lambda order: {"parcel": chance.randint(1, 9)})
    ids = [engine.start("nested_order", {"n": number}).id for number in range(3)]
    for _ in range(operations):
        instance = engine.get(chance.choice(ids))
        allowed = [event for event in engine.allowed(instance) if event not in ("cancel", "lost")]
        roll = chance.random()
        if roll < 0.06:
            clock.advance(timedelta(minutes=chance.choice([1, 2, 3, 4, 61])))
            engine.fire_due_timers()
        elif roll < 0.07 and not instance.finished:
            engine.cancel(instance.id, "seeded walk")
        elif allowed:
            try:
                engine.send(instance.id, chance.choice(allowed), {"roll": round(roll, 3)})
            except EventRejected:
                pass
        engine.run_until_idle()
        if all(engine.get(one).finished for one in ids):
            ids = [engine.start("nested_order", {"n": len(ids)}).id, *ids]


@pytest.mark.parametrize("seed", [1, 2])
def test_get_at_each_entry_equals_the_snapshot_recorded_when_it_committed(
    engine: Engine, deploy: Callable[[str], Any], clock: Any, seed: int
) -> None:
    deploy("nested_order")
    seen = _recorder(engine)
    _drive(engine, clock, seed, operations=200)
    longest = max(sum(1 for key in seen if key[0] == one) for one, _ in seen)
    assert longest >= 30, "the walk makes long histories"
    for (instance_id, seq), recorded in seen.items():
        assert engine.get(instance_id, at=seq) == recorded, (instance_id, seq)


def test_get_at_the_last_entry_is_the_instance_now_and_earlier_ones_differ(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    instance = engine.start("counter", {"count": 0})
    for _ in range(5):
        engine.send(instance.id, "increment")
    now = engine.get(instance.id)
    assert engine.get(instance.id, at=now.revision) == now
    second = engine.get(instance.id, at=2)
    assert (second.context, second.revision, second.status) == ({"count": 1}, 2, "running")
    assert engine.get(instance.id, at=1).context == {"count": 0}


def test_get_at_outside_the_history_is_refused(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    instance = engine.start("counter", {"count": 0})
    for at in (0, 2, -1):
        with pytest.raises(InvalidInput, match="between 1 and 1"):
            engine.get(instance.id, at=at)


def test_the_diagram_at_an_entry_marks_the_state_active_then(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("nested_order")
    instance = engine.start("nested_order")
    engine.send(instance.id, "add")
    engine.send(instance.id, "pause")
    then, now = engine.diagram(instance.id, at=1), engine.diagram(instance.id)
    assert then != now
    assert then == engine.diagram(instance.id, at=1)
    drawn_now = engine.diagram(instance.id, at=engine.get(instance.id).revision)
    assert drawn_now == now


def test_get_at_each_entry_holds_across_a_redrive_and_a_reset(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("mailing")
    seen = _recorder(engine)
    bounced = {"cy"}

    @engine.task("mail.send")
    def send(message: dict[str, Any]) -> str:
        if message["to"] in bounced:
            raise TaskFailure("Bounce", f"no mailbox {message['to']}")
        return f"sent:{message['to']}"

    instance = engine.start("mailing", {"recipients": ["al", "bo", "cy", "di"]})
    engine.run_until_idle()
    assert engine.get(instance.id).status == "failed"
    bounced.clear()
    engine.redrive(instance.id, reason="mailbox created")
    engine.run_until_idle()
    engine.reset(instance.id, "send", {"recipients": ["ed"]}, reason="send to ed as well")
    engine.run_until_idle()
    final = engine.get(instance.id)
    assert (final.status, final.context["receipts"]) == ("succeeded", ["sent:ed"])
    kinds = [entry.kind for entry in engine.history(instance.id)]
    assert "redrive" in kinds and "reset" in kinds
    for (instance_id, seq), recorded in seen.items():
        assert engine.get(instance_id, at=seq) == recorded, (instance_id, seq)
    timeline = engine.timeline(instance.id)
    assert timeline.complete and timeline.points[-1].revision == final.revision

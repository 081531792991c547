"""`Engine.timeline` on the durable engine (SQLite and PostgreSQL): every commit of an
instance's history, each as `get(at=...)` sees it, with context changes that add up to the
context at that point; a history that stops replaying gives the points before it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from engine import Engine, TaskFailure
from engine.tables import history_t
from engine.timeline import ContextChanges, Timeline
from engine.travel import HistoryNotReplayable


def _applied(timeline: Timeline, upto: int) -> dict[str, Any]:
    """The context at point `upto` (an index), by applying the changes up to it in turn."""
    context: dict[str, Any] = {}
    for point in timeline.points[: upto + 1]:
        context |= point.changes.added
        for key in point.changes.removed:
            del context[key]
        context |= {key: new for key, (_, new) in point.changes.changed.items()}
    return context


def _order_with_tasks(engine: Engine, clock: Any) -> str:
    """A nested_order through its charge task (failing once, then paying), a pause, and a
    parallel shipping state: commits of one entry and of several. Its id."""
    attempts: list[int] = []

    def charge(order: dict[str, Any]) -> dict[str, Any]:
        attempts.append(1)
        if len(attempts) == 1:
            raise TaskFailure("CardDeclined", "declined")
        return {"charged": 42}

    engine.task("payments.charge")(charge)
    engine.task("warehouse.pack")(lambda order: {"parcel": 7})
    instance = engine.start("nested_order", {"customer": "ana"})
    for event in ("add", "checkout"):
        engine.send(instance.id, event, {"by": event})
    engine.run_until_idle()
    for event in ("pause", "resume", "checkout"):  # back in the cart, paid, then shipping
        clock.advance(timedelta(minutes=1))
        engine.send(instance.id, event)
        engine.run_until_idle()
    engine.send(instance.id, "posted")
    return instance.id


def test_each_point_is_what_get_at_its_entries_returns_and_the_changes_add_up(
    engine: Engine, deploy: Callable[[str], Any], clock: Any
) -> None:
    deploy("nested_order")
    instance_id = _order_with_tasks(engine, clock)
    timeline = engine.timeline(instance_id)
    now = engine.get(instance_id)
    assert timeline.complete and timeline.divergence is None
    assert timeline.entries == len(engine.history(instance_id))
    assert [point.revision for point in timeline.points] == list(range(1, now.revision + 1))
    assert timeline.points[0].first == 1 and timeline.points[-1].last == timeline.entries
    for before, after in zip(timeline.points, timeline.points[1:], strict=False):
        assert after.first == before.last + 1
    assert any(point.last > point.first for point in timeline.points), "a commit of several"
    for index, point in enumerate(timeline.points):
        for seq in range(point.first, point.last + 1):
            then = engine.get(instance_id, at=seq)
            seen = (then.state, then.active, then.status, then.revision, then.updated_at)
            assert seen == (point.state, point.active, point.status, point.revision, point.at)
            assert then.context == _applied(timeline, index), (seq, index)
    assert (timeline.points[-1].state, now.status) == (now.state, "succeeded")
    assert timeline.points[0].changes == ContextChanges(added={"customer": "ana"})
    charged = [point for point in timeline.points if "charged" in point.changes.added]
    assert len(charged) == 1 and charged[0].changes.added["charged"] == 42


def test_the_json_form_lists_each_point_with_its_changes(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    instance = engine.start("counter", {"count": 0, "note": "x"})
    engine.send(instance.id, "increment")
    body = engine.timeline(instance.id).to_json()
    assert (body["instance"], body["entries"], body["complete"]) == (instance.id, 2, True)
    assert body["divergence"] is None
    first, second = body["points"]
    assert first["context"] == {"added": {"count": 0, "note": "x"}, "removed": {}, "changed": {}}
    assert second["context"]["changed"] == {"count": {"old": 0, "new": 1}}
    assert (second["first"], second["last"], second["revision"]) == (2, 2, 2)
    assert second["at"].endswith("Z")


def test_context_changes_name_added_removed_and_changed_keys() -> None:
    changes = ContextChanges.between({"a": 1, "b": [1], "c": None}, {"a": 2, "c": None, "d": {}})
    assert changes == ContextChanges(added={"d": {}}, removed={"b": [1]}, changed={"a": (1, 2)})
    assert changes.to_json()["changed"] == {"a": {"old": 1, "new": 2}}
    assert not ContextChanges.between({"a": 1}, {"a": 1})


def test_a_history_changed_by_hand_gives_the_points_before_it_and_refuses_after(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    instance = engine.start("counter", {"count": 0})
    for _ in range(3):
        engine.send(instance.id, "increment")
    with engine.store.engine.begin() as conn:
        conn.execute(
            sa.update(history_t)
            .where(history_t.c.instance_id == instance.id, history_t.c.seq == 3)
            .values(event="teleport")
        )
    timeline = engine.timeline(instance.id)
    assert not timeline.complete and timeline.divergence is not None
    assert timeline.divergence.seq == 3
    assert [point.revision for point in timeline.points] == [1, 2]
    assert timeline.to_json()["divergence"]["seq"] == 3
    assert engine.get(instance.id, at=2).context == {"count": 1}
    with pytest.raises(HistoryNotReplayable, match="does not replay past entry 2"):
        engine.get(instance.id, at=4)
    with pytest.raises(HistoryNotReplayable):
        engine.diagram(instance.id, at=3)

"""The change feed: one change per committed step, written in the step's transaction, read in
commit order from any engine, with named cursors, pruning and wake-ups."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from engine import Change, Engine, EventRejected, InvalidInput, changes
from engine.worker import Worker


def test_each_committed_step_is_one_change_in_order(engine: Engine, deploy: Callable[..., Any]):
    deploy("counter")
    deploy("one_task")
    first = engine.start("counter", {"count": 0}, key="c-1")
    engine.send(first.id, "increment")
    engine.send(first.id, "stop")
    second = engine.start("one_task", {})

    changes = engine.changes()

    assert [(c.instance_id, c.revision) for c in changes] == [
        (first.id, 1),
        (first.id, 2),
        (first.id, 3),
        (second.id, 1),
    ]
    assert [c.position for c in changes] == sorted({c.position for c in changes})
    start, increment, stop = changes[:3]
    assert (start.kind, start.event, start.from_state, start.to_state) == (
        "start",
        None,
        None,
        "counting",
    )
    assert (increment.kind, increment.event, increment.from_state, increment.to_state) == (
        "event",
        "increment",
        "counting",
        "counting",
    )
    assert (stop.to_state, stop.status, stop.key, stop.definition) == (
        "stopped",
        "succeeded",
        "c-1",
        "counter",
    )
    assert stop.id == f"{first.id}.3"
    assert [entry.seq for entry in engine.history(first.id)] == [1, 2, 3]
    assert (stop.first_entry, stop.last_entry) == (3, 3)


def test_a_refused_event_writes_no_change(engine: Engine, deploy: Callable[..., Any]):
    deploy("counter")
    instance = engine.start("counter", {"count": 0})
    top = engine.latest_change()
    with pytest.raises(EventRejected):
        engine.send(instance.id, "no_such_event")
    assert engine.changes(after=top) == []
    assert engine.latest_change() == top


def test_reading_on_from_a_position_pages_through_the_feed(
    engine: Engine, deploy: Callable[..., Any]
):
    deploy("counter")
    deploy("one_task")
    instance = engine.start("counter", {"count": 0})
    for _ in range(6):
        engine.send(instance.id, "increment")
    engine.start("one_task", {})
    seen: list[Change] = []
    after = 0
    while page := engine.changes(after=after, limit=3):
        seen.extend(page)
        after = page[-1].position
    assert [c.revision for c in seen if c.instance_id == instance.id] == list(range(1, 8))
    assert len(seen) == 8
    assert [c.definition for c in engine.changes(definitions=["one_task"])] == ["one_task"]
    with pytest.raises(InvalidInput):
        engine.changes(limit=0)


def test_a_change_travels_as_json_and_back(engine: Engine, deploy: Callable[..., Any]):
    deploy("counter")
    engine.start("counter", {"count": 0}, key="k")
    (change,) = engine.changes()
    assert Change.from_json(change.to_json()) == change
    assert change.to_json()["id"] == change.id


def test_a_named_cursor_only_moves_forward_and_can_be_dropped(engine: Engine):
    assert engine.change_cursor("mailer") is None
    engine.save_change_cursor("mailer", 7)
    engine.save_change_cursor("mailer", 3)
    assert engine.change_cursor("mailer") == 7
    engine.save_change_cursor("mailer", 9)
    assert engine.change_cursor("mailer") == 9
    assert engine.drop_change_cursor("mailer") is True
    assert engine.change_cursor("mailer") is None
    assert engine.drop_change_cursor("mailer") is False


def test_pruning_keeps_what_a_reader_has_not_passed(
    engine: Engine, deploy: Callable[..., Any], clock: Any
):
    deploy("counter")
    instance = engine.start("counter", {"count": 0})
    for _ in range(4):
        engine.send(instance.id, "increment")
    old = engine.changes()
    clock.advance(timedelta(days=2))
    engine.send(instance.id, "increment")
    engine.save_change_cursor("slow", old[1].position)
    engine.save_change_cursor("fast", old[-1].position)

    assert engine.prune_changes(timedelta(days=1), batch=1) == 2  # up to the slow reader

    assert [c.revision for c in engine.changes()] == [3, 4, 5, 6]
    engine.drop_change_cursor("slow")
    assert engine.prune_changes(timedelta(days=1)) == 3  # all old ones, none newer
    assert [c.revision for c in engine.changes()] == [6]


def test_another_engine_reads_what_one_committed(
    store_url: str, engine: Engine, deploy: Callable[..., Any]
):
    deploy("counter")
    instance = engine.start("counter", {"count": 0})
    engine.send(instance.id, "increment")
    with Engine(store_url) as other:
        assert [c.id for c in other.changes()] == [f"{instance.id}.1", f"{instance.id}.2"]


def test_a_commit_wakes_a_reader_waiting_in_this_engine(engine: Engine, deploy: Callable[..., Any]):
    deploy("counter")
    assert engine.wait_for_changes(0.05) is False
    instance = engine.start("counter", {"count": 0})
    assert engine.wait_for_changes(5) is True
    engine.send(instance.id, "increment")
    assert engine.wait_for_changes(5) is True


@pytest.mark.postgres
def test_on_postgres_another_process_commit_wakes_a_waiting_reader(
    postgres_url: str, deploy_on: Callable[..., Any]
):
    with Engine(postgres_url) as reader, Engine(postgres_url) as writer:
        deploy_on(writer, "counter")
        assert reader.wait_for_changes(0.05) is False  # listening from here on
        woke: list[bool] = []
        waiting = threading.Thread(target=lambda: woke.append(reader.wait_for_changes(30)))
        waiting.start()
        writer.start("counter", {"count": 0})
        waiting.join(60)
        assert woke == [True]


@pytest.mark.postgres
def test_on_postgres_a_change_committed_late_is_not_passed_over(
    postgres_url: str, deploy_on: Callable[..., Any]
):
    """A transaction that wrote its change first but commits last still comes after what the
    reader has read: the feed is in commit order, not in the order rows were written."""
    with Engine(postgres_url) as engine:
        deploy_on(engine, "counter")
        early = engine.start("counter", {"count": 0})
        late = engine.start("counter", {"count": 0})
        seen = engine.latest_change()
        written, release, done = threading.Event(), threading.Event(), threading.Event()

        def slow_step() -> None:
            with engine.store.transaction() as tx:
                row = tx.lock_instance(early.id)
                assert row is not None
                moved = dataclasses.replace(row, revision=row.revision + 1)
                tx.update_instance(moved, row)
                tx.insert_change(moved, row.state, [])
                tx.find_by_key("counter", "none")  # a read: what was sent before has run
                written.set()
                release.wait(30)
            done.set()

        holder = threading.Thread(target=slow_step)
        holder.start()
        assert written.wait(30)
        engine.send(late.id, "increment")  # written after, committed first
        first_read = engine.changes(after=seen)
        release.set()
        holder.join(30)
        assert done.is_set()
        second_read = engine.changes(after=first_read[-1].position)

        assert [c.id for c in first_read] == [f"{late.id}.2"]
        assert [c.id for c in second_read] == [f"{early.id}.2"]


@pytest.mark.parametrize("retention", [timedelta(days=1), None])
def test_workers_apply_the_engine_retention(
    store_url: str, clock: Any, deploy_on: Callable[..., Any], retention: timedelta | None
):
    with Engine(store_url, clock=clock, change_retention=retention) as engine:
        deploy_on(engine, "counter")
        instance = engine.start("counter", {"count": 0})
        engine.send(instance.id, "increment")
        clock.advance(timedelta(days=2))
        engine.send(instance.id, "increment")
        worker = Worker(engine)
        worker.prune()  # not due yet: a worker prunes once a minute
        assert len(engine.changes()) == 3
        worker.pruned_at = float("-inf")
        worker.prune()
        assert [c.revision for c in engine.changes()] == ([3] if retention else [1, 2, 3])


@pytest.mark.postgres
def test_on_postgres_a_read_places_what_it_needs_beyond_one_placing_batch(
    postgres_url: str, deploy_on: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(changes, "PLACED_AT_ONCE", 3)
    with Engine(postgres_url) as engine:
        deploy_on(engine, "counter")
        deploy_on(engine, "one_task")
        engine.start_many("counter", [{"count": 0}] * 10)
        engine.start("one_task", {})
        assert len(engine.changes(0, 8)) == 8
        assert len(engine.changes(0, 100)) == 11
        assert [c.definition for c in engine.changes(0, 5, definitions=["one_task"])] == [
            "one_task"
        ]

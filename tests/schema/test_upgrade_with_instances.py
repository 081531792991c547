"""A database written by a release, with instances in every status, upgraded to this
release's schema (by `turnout db upgrade`, and by the Python API) and run to completion:
every unfinished instance ends as its definition says, the finished ones stay as they were.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from release_rows import REVISION, START, load
from schema_helpers import revision_of, turnout_db

from engine import Engine, schema
from engine.store import Store

FINISHED = ("done", "failed", "cancelled")


def written_by_the_release(url: str) -> None:
    """The database at `url`: the release's schema revision, then its rows."""
    result = turnout_db("upgrade", "--to", REVISION, "--db", url)
    assert result.exit_code == 0, result.output
    assert revision_of(url) == REVISION
    database = sa.create_engine(url)
    try:
        with database.begin() as conn:
            load(conn)
    finally:
        database.dispose()


class Clock:
    """The clock the rows were written at, moved on by the test."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> Any:
        return self.now


def finished_snapshot(engine: Engine) -> dict[str, Any]:
    """The finished instances by key, with their histories."""
    return {
        key: (
            engine.get_by_key(definition, key),
            engine.history(engine.get_by_key(definition, key).id),
        )
        for definition, key in (
            ("one_task", "done"),
            ("fragile", "failed"),
            ("approvals", "cancelled"),
        )
    }


def run_to_completion(url: str) -> None:
    """Open the upgraded database, check what the release left, finish the rest."""
    clock = Clock()
    with Engine(url, clock=clock) as engine:
        before = finished_snapshot(engine)
        assert [before[key][0].status for key in FINISHED] == ["succeeded", "failed", "cancelled"]
        engine.task("jobs.work")(lambda data: {"worked": True})
        engine.task("child.work")(lambda data: {"child": "worked"})
        engine.task("child.undo")(lambda data: None)
        engine.run_until_idle()  # the waiting tasks: `on-task`'s, `calling-task`'s child's
        on_task = engine.get_by_key("one_task", "on-task")
        assert (on_task.state, on_task.status) == ("finished", "succeeded")
        for key in ("calling-held", "calling-task"):
            parent = engine.get_by_key("call_parent", key)
            assert parent.state == "ask"
            (child_id,) = engine.get(parent.id).children
            assert engine.get(child_id).state == "hold"
            engine.send(child_id, "finish")
            engine.run_until_idle()
            assert engine.get(parent.id).state == "answered"
            assert engine.get(parent.id).status == "succeeded"
            assert engine.get(child_id).status == "succeeded"
        on_events = engine.get_by_key("approvals", "on-events")
        engine.send(on_events.id, "finance_ok")
        assert engine.get(on_events.id).state == "accepted"
        on_timer = engine.get_by_key("reminder", "on-timer")
        clock.now = START + timedelta(minutes=11)
        assert engine.fire_due_timers() == 1  # the 10-minute reminder
        assert engine.get(on_timer.id).context["reminded"] == 1
        engine.send(on_timer.id, "answer")
        assert (engine.get(on_timer.id).state, engine.get(on_timer.id).status) == (
            "answered",
            "succeeded",
        )
        assert engine.instances(status="running") == []
        assert finished_snapshot(engine) == before


def test_upgraded_by_the_command_and_run_to_completion(store_url: str) -> None:
    written_by_the_release(store_url)
    result = turnout_db("upgrade", "--db", store_url)
    assert result.exit_code == 0, result.output
    assert revision_of(store_url) == schema.head()
    run_to_completion(store_url)


def test_upgraded_by_the_python_api_and_run_to_completion(store_url: str) -> None:
    written_by_the_release(store_url)
    store = Store(store_url, schema="leave")
    try:
        assert schema.upgrade_to(store) == (REVISION, schema.head())
    finally:
        store.close()
    run_to_completion(store_url)


def test_upgraded_by_the_engine_opening_it_and_run_to_completion(store_url: str) -> None:
    written_by_the_release(store_url)
    Engine(store_url, upgrade=True).close()  # SQLite would without being asked
    assert revision_of(store_url) == schema.head()
    run_to_completion(store_url)

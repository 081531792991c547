"""Call states on the durable engine (SQLite and PostgreSQL): a parent's call starts a child
instance in the same transaction; the child's end fires `done` or `failed` on the parent
once; leaving the calling state, or cancelling the parent, cancels the child with its
compensation; parent and children are linked both ways."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from engine import Engine
from engine.schema.versions import v0001_baseline
from statemachines.model import MAX_CALL_DEPTH


@pytest.fixture
def calls(engine: Engine, deploy: Callable[[str], Any]) -> list[dict[str, Any]]:
    """Deploys the parent and the child; the child's handlers; what `child.undo` was given."""
    for name in ("call_child", "call_parent"):
        deploy(name)
    undone: list[dict[str, Any]] = []

    @engine.task("child.work")
    def work(data: dict[str, Any]) -> dict[str, Any]:
        if data["n"] == 0:
            raise ValueError("n must not be 0")
        return {"doubled": data["n"] * 2}

    @engine.task("child.undo")
    def undo(data: dict[str, Any]) -> None:
        undone.append(data)

    return undone


def _child(engine: Engine, parent: str) -> str:
    (child,) = engine.get(parent).children
    return child


def test_a_child_that_succeeds_fires_done_with_its_final_context(
    engine: Engine, calls: list[dict[str, Any]]
) -> None:
    parent = engine.start("call_parent", {"n": 2})
    child = engine.get(_child(engine, parent.id))  # started in the parent's transaction
    assert (child.parent, child.definition, child.status) == (parent.id, "call_child", "running")
    engine.run_until_idle()
    finished = engine.get(parent.id)
    assert (finished.status, finished.state) == ("succeeded", "answered")
    assert finished.context["answer"] == {"n": 2, "hold": None, "doubled": 4}
    kinds = [(e.kind, e.event, e.from_state, e.to_state) for e in engine.history(parent.id)]
    assert kinds == [
        ("start", None, None, "ask"),
        ("call", None, "ask", None),
        ("call", "done", "ask", "answered"),
    ]
    call = engine.history(parent.id)[1].data
    assert call == {"child": child.id, "definition": "call_child", "version": 1}
    assert engine.get(child.id).to_json()["parent"] == parent.id
    assert engine.get(parent.id).to_json()["children"] == [child.id]


def test_a_child_that_fails_fires_failed_with_its_error_caught_by_type(
    engine: Engine, calls: list[dict[str, Any]]
) -> None:
    parent = engine.start("call_parent", {"n": 0})
    engine.run_until_idle()
    assert engine.get(parent.id).state == "child_failed"
    failed = [e for e in engine.history(parent.id) if e.event == "failed"]
    assert failed[0].data["error"]["type"] == "ValueError"
    assert failed[0].data["child"] == _child(engine, parent.id)
    assert engine.get(_child(engine, parent.id)).status == "failed"


def test_a_child_past_the_calls_timeout_is_cancelled_and_compensated(
    engine: Engine, clock: Any, calls: list[dict[str, Any]]
) -> None:
    parent = engine.start("call_parent", {"n": 1, "hold": True})
    engine.run_until_idle()
    child = _child(engine, parent.id)
    assert engine.get(child).state == "hold"
    clock.advance(timedelta(hours=1, seconds=1))
    engine.run_until_idle()
    assert engine.get(parent.id).state == "timed_out"
    assert engine.get(child).status == "cancelled"
    assert calls == [{"n": 1, "hold": True, "doubled": 2}]  # its compensation ran


def test_a_child_cancelled_by_someone_else_fails_the_call_with_child_cancelled(
    engine: Engine, calls: list[dict[str, Any]]
) -> None:
    parent = engine.start("call_parent", {"n": 1, "hold": True})
    engine.run_until_idle()
    engine.cancel(_child(engine, parent.id), reason="not needed")
    engine.run_until_idle()
    assert engine.get(parent.id).state == "child_cancelled"


def test_leaving_the_calling_state_by_an_event_cancels_the_child(
    engine: Engine, calls: list[dict[str, Any]]
) -> None:
    parent = engine.start("call_parent", {"n": 1, "hold": True})
    engine.run_until_idle()
    engine.send(parent.id, "stop")
    child = engine.get(_child(engine, parent.id))
    assert child.status in ("compensating", "cancelled")  # in the same transaction
    engine.run_until_idle()
    assert engine.get(child.id).status == "cancelled"
    assert engine.get(parent.id).state == "stopped"  # the child's end changes nothing there
    assert [e.kind for e in engine.history(parent.id)].count("call") == 1


def test_cancelling_a_parent_cancels_and_compensates_its_children_and_theirs(
    engine: Engine, deploy: Callable[[str], Any], calls: list[dict[str, Any]]
) -> None:
    deploy("call_grandparent")
    top = engine.start("call_grandparent", {"n": 3})
    engine.run_until_idle()
    middle = _child(engine, top.id)
    bottom = _child(engine, middle)
    assert engine.get(bottom).state == "hold"
    engine.cancel(top.id, reason="customer asked")
    engine.run_until_idle()
    statuses = [engine.get(instance).status for instance in (top.id, middle, bottom)]
    assert statuses == ["cancelled", "cancelled", "cancelled"]
    assert calls == [{"n": 3, "hold": True, "doubled": 6}]
    assert engine.history(bottom)[-2].kind == "compensate"


def test_a_definition_not_deployed_fails_the_call_with_call_error(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("call_missing")
    instance = engine.start("call_missing")
    assert (instance.status, instance.state) == ("succeeded", "not_called")
    failed = [e for e in engine.history(instance.id) if e.event == "failed"]
    assert failed[0].data["error"]["type"] == "CallError"
    assert "'nowhere'" in failed[0].data["error"]["message"]
    assert engine.get(instance.id).children == []


def test_calls_nest_at_most_max_call_depth_deep(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("call_recursive")
    top = engine.start("call_recursive")
    assert len(engine.instances(definition="call_recursive", limit=100)) == MAX_CALL_DEPTH + 1
    engine.run_until_idle()
    finished = engine.get(top.id)
    assert finished.status == "succeeded"
    levels, context = 0, finished.context
    while "inner" in context:
        levels, context = levels + 1, context["inner"]
    assert (levels, context["level"]) == (MAX_CALL_DEPTH, MAX_CALL_DEPTH)


def test_instances_filter_by_parent(engine: Engine, calls: list[dict[str, Any]]) -> None:
    first = engine.start("call_parent", {"n": 1, "hold": True})
    second = engine.start("call_parent", {"n": 2, "hold": True})
    children = engine.instances(parent=first.id)
    assert [child.id for child in children] == engine.get(first.id).children
    assert all(child.parent == first.id for child in children)
    assert engine.instances(parent=second.id)[0].id != children[0].id
    assert engine.get(first.id).parent is None


def test_a_database_without_the_parent_column_is_brought_up_to_date(
    store_url: str, clock: Any, deploy_on: Callable[[Engine, str], Any]
) -> None:
    url = store_url
    metadata = sa.MetaData()
    for table in v0001_baseline.tables(sa.MetaData()):  # as the release before calls made them
        columns = [
            sa.Column(column.name, column.type, primary_key=column.primary_key)
            for column in table.c
            if column.name != "parent_id"
        ]
        sa.Table(table.name, metadata, *columns)
    database = sa.create_engine(url)
    metadata.create_all(database)
    database.dispose()
    # A release before schema revisions: PostgreSQL is upgraded only when asked to.
    with Engine(url, clock=clock, upgrade=True) as engine:
        for name in ("call_child", "call_parent"):
            deploy_on(engine, name)
        engine.task("child.work")(lambda data: {"ok": True})
        parent = engine.start("call_parent", {"n": 1})
        engine.run_until_idle()
        assert engine.get(parent.id).state == "answered"
        assert engine.instances(parent=parent.id)[0].parent == parent.id
    database = sa.create_engine(url)
    columns = sa.inspect(database).get_columns("turnout_instances")
    database.dispose()
    assert "parent_id" in [column["name"] for column in columns]

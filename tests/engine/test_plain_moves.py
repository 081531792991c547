"""Events that are plain moves (statemachines/flat.py) as the engine applies them: the
state, history and revision as the full run writes them, the context neither copied nor
written, and an assigning event writing it as before."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine import Engine

CONTEXT = {"order": "A-1", "lines": [{"sku": "x", "qty": 2}], "note": None}


def test_a_plain_move_changes_state_and_history_and_keeps_the_context(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("plain_moves")
    started = engine.start("plain_moves", CONTEXT)
    clock.advance(5)
    moved = engine.send(started.id, "go", {"by": "ann"})
    assert (moved.state, moved.active, moved.status) == ("busy", ["busy"], "running")
    assert moved.context == CONTEXT
    assert moved.revision == started.revision + 1
    assert moved.updated_at == clock.now
    assert engine.get(moved.id) == moved
    last = engine.history(moved.id)[-1]
    assert (last.kind, last.event, last.from_state, last.to_state) == (
        "event",
        "go",
        "idle",
        "busy",
    )
    assert last.data == {"by": "ann"}
    back = engine.send(moved.id, "back")
    assert (back.state, back.context, back.revision) == ("idle", CONTEXT, moved.revision + 1)


def test_an_assigning_event_after_plain_moves_writes_the_context(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("plain_moves")
    instance = engine.start("plain_moves", CONTEXT)
    instance = engine.send(engine.send(instance.id, "go").id, "back")
    noted = engine.send(instance.id, "note", {"text": "fragile"})
    assert noted.context == {**CONTEXT, "noted": "fragile"}
    assert engine.get(noted.id).context == {**CONTEXT, "noted": "fragile"}
    finished = engine.send(noted.id, "finish")
    assert (finished.status, engine.get(noted.id).context) == ("succeeded", noted.context)


def test_what_a_caller_does_to_a_returned_context_reaches_no_later_event(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("plain_moves")
    moved = engine.send(engine.start("plain_moves", CONTEXT).id, "go")
    moved.context["lines"].append({"sku": "y", "qty": 1})
    moved.context["order"] = "changed"
    back = engine.send(moved.id, "back")
    assert back.context == CONTEXT
    assert engine.get(moved.id).context == CONTEXT

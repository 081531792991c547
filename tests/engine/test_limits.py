"""Limits that keep one instance from growing without bound: its context and its history.

The limits are settings of the engine (`engine.transaction`, `engine.runtime`); the tests lower
them so that a few small events reach them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import statemachines
from engine import Engine, EventRejected, InvalidInput, runtime, transaction


def test_an_event_that_would_make_the_context_too_large_is_refused_and_changes_nothing(
    engine: Engine, deploy: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transaction, "MAX_CONTEXT_BYTES", 200)
    deploy("notes")
    inst = engine.start("notes", {})
    engine.send(inst.id, "note", {"text": "short"})
    before = engine.get(inst.id)
    with pytest.raises(InvalidInput, match="over the limit of 200"):
        engine.send(inst.id, "note", {"text": "x" * 300})
    after = engine.get(inst.id)
    assert (after.revision, after.context) == (before.revision, before.context)
    assert len(engine.history(inst.id)) == 2


def test_a_result_that_would_make_the_context_too_large_fails_the_attempt(
    engine: Engine, deploy: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transaction, "MAX_CONTEXT_BYTES", 200)
    deploy("notes")
    engine.task("notes.fetch")(lambda data: {"body": "y" * 300})
    inst = engine.start("notes", {})
    engine.send(inst.id, "attach")
    engine.run_until_idle()
    done = engine.get(inst.id)
    assert done.state == "open"
    assert "attachment" not in done.context
    failed = [e for e in engine.history(inst.id) if e.event == "failed"]
    assert failed[0].data["error"]["type"] == "ResultError"
    assert "over the limit of 200" in failed[0].data["error"]["message"]


def test_an_instance_whose_history_is_full_rejects_further_events(
    engine: Engine, deploy: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "MAX_HISTORY", 4)
    deploy("notes")
    inst = engine.start("notes", {})
    for number in range(3):
        engine.send(inst.id, "note", {"text": str(number)})
    with pytest.raises(EventRejected, match="history holds 4 entries") as rejected:
        engine.send(inst.id, "note", {"text": "one too many"})
    assert rejected.value.state == "open"
    assert engine.get(inst.id).context == {"last": "2"}
    assert len(engine.history(inst.id)) == 4


def test_start_data_over_a_megabyte_is_refused_and_starts_nothing(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("notes")
    with pytest.raises(InvalidInput, match="over the limit of 1000000"):
        engine.start("notes", {"blob": "x" * 1_000_001})
    assert engine.instances(definition="notes") == []


def test_an_event_payload_over_a_megabyte_is_refused_and_changes_nothing(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("notes")
    inst = engine.start("notes", {})
    with pytest.raises(InvalidInput, match="over the limit of 1000000"):
        engine.send(inst.id, "note", {"text": "x" * 1_000_001})
    assert engine.get(inst.id).revision == inst.revision


def test_a_page_of_instances_is_at_most_ten_thousand(engine: Engine) -> None:
    with pytest.raises(InvalidInput, match="limit"):
        engine.instances(limit=10_001)
    with pytest.raises(InvalidInput, match="limit"):
        engine.instances(limit=0)
    assert engine.instances(limit=10_000) == []


def test_a_definition_with_more_than_five_thousand_states_is_refused() -> None:
    lines = ["name: huge", "initial: s0", "states:"]
    lines += [f"  s{n}: {{on: {{go: s{n + 1}}}}}" for n in range(5001)]
    lines.append("  s5001: {final: true}")
    with pytest.raises(statemachines.DefinitionError, match="at most 5000 states"):
        statemachines.load("\n".join(lines))

"""The plain moves (flat.py) an event makes without a run, and each reason it leaves one to
the full run instead; where it moves, it makes the full run's step."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

import statemachines
from statemachines import EventRejected, Snapshot, compile_definition

NOW = datetime(2026, 1, 1, tzinfo=UTC)
HERE = Path(__file__).parent / "flat"


@pytest.fixture(scope="module")
def compiled() -> statemachines.CompiledMachine:
    return compile_definition(statemachines.load((HERE / "moves.yaml").read_text()))


def idle(compiled: statemachines.CompiledMachine) -> Snapshot:
    return compiled.start({"n": 1, "items": [1, 2]}, NOW).snapshot


@pytest.mark.parametrize("event", ["go", "again", "first_unguarded"])
def test_a_plain_move_makes_the_full_runs_step(
    compiled: statemachines.CompiledMachine, event: str
) -> None:
    snapshot = idle(compiled)
    quick = compiled.send_flat(snapshot, event, {"by": "test"})
    assert quick is not None
    assert quick == compiled.send_by_run(snapshot, event, {"by": "test"}, NOW)
    assert quick.context is snapshot.context  # not copied: the move does not touch it


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ("guarded", "the first transition has a guard"),
        ("counted", "the transition assigns"),
        ("noted", "the transition is internal"),
        ("work", "the target schedules a task"),
        ("wait", "the target starts a timer"),
        ("check", "the target has `always`"),
        ("finish", "the target is final"),
        ("open", "the target is compound"),
        ("resume", "the target is a history pseudo-state"),
        ("inner", "the target is nested"),
        ("split", "the target is parallel"),
        ("fan", "the target fans out"),
        ("ask", "the target calls a child"),
        ("unknown", "no transition takes the event"),
        ("done", "the event is the engine's"),
        ("after:1h", "the event is a timer's"),
    ],
)
def test_an_event_that_is_no_plain_move_is_left_to_the_full_run(
    compiled: statemachines.CompiledMachine, event: str, reason: str
) -> None:
    snapshot = idle(compiled)
    assert compiled.send_flat(snapshot, event, None) is None, reason
    try:
        expected = compiled.send_by_run(snapshot, event, None, NOW)
    except EventRejected as exc:
        with pytest.raises(EventRejected) as raised:
            compiled.send(snapshot, event, None, NOW)
        assert str(raised.value) == str(exc)
    else:
        assert compiled.send(snapshot, event, None, NOW) == expected


def test_a_nested_state_is_no_plain_source(compiled: statemachines.CompiledMachine) -> None:
    inside = compiled.send(idle(compiled), "open", None, NOW).snapshot
    assert compiled.send_flat(inside, "go", None) is None
    assert compiled.send(inside, "go", None, NOW).state == "ready"


def test_a_parallel_state_is_no_plain_source(compiled: statemachines.CompiledMachine) -> None:
    both = compiled.send(idle(compiled), "split", None, NOW).snapshot
    assert compiled.send_flat(both, "go", None) is None
    assert compiled.send(both, "go", None, NOW).state == "ready"


def test_an_instance_not_running_is_left_to_the_full_run(
    compiled: statemachines.CompiledMachine,
) -> None:
    over = compiled.send(idle(compiled), "finish", None, NOW).snapshot
    assert over.status == "succeeded"
    assert compiled.send_flat(over, "go", None) is None
    with pytest.raises(EventRejected):
        compiled.send(over, "go", None, NOW)


@pytest.mark.parametrize("entering", ["work", "fan", "ask", "wait", "check"])
def test_leaving_a_state_with_work_by_a_plain_move_is_the_full_runs_step(
    compiled: statemachines.CompiledMachine, entering: str
) -> None:
    there = compiled.send(idle(compiled), entering, None, NOW).snapshot
    quick = compiled.send_flat(there, "go", None)
    assert quick is not None
    assert quick == compiled.send_by_run(there, "go", None, NOW)
    assert quick.state == "idle"
    assert quick.cancelled == [(there.state, there.machine["active"][there.state])]


def test_a_chart_with_history_books_it_on_a_plain_move_as_the_run_does(
    compiled: statemachines.CompiledMachine,
) -> None:
    snapshot = idle(compiled)
    assert "history" not in snapshot.machine
    quick = compiled.send_flat(snapshot, "go", None)
    assert quick is not None and quick.machine["history"] == {}
    assert list(quick.machine) == list(compiled.send_by_run(snapshot, "go", None, NOW).machine)

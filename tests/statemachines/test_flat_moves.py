"""Property: an event applied by a plain move (flat.py) makes exactly the step the full run
(run.py) makes, on large randomly generated charts with every kind of state, and leaves the
snapshot it read as it was; and the moves it knows are the `transitions` machine's choices."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import yaml
from generated import tangled
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import statemachines
from statemachines import EventRejected, Snapshot, Step, compile_definition

NOW = datetime(2026, 1, 1, tzinfo=UTC)
EVENTS = ("e0", "e1", "e2", "e3")
KINDS = ("plain", "plain", "plain", "task", "timer", "always", "final", "compound", "foreach")
SENT = (*EVENTS, "done", "next", "stop", "x")


@st.composite
def large_charts(draw: Any) -> str:
    """YAML of 20-80 top-level states of every kind (plain ones most), each reacting to up
    to three events with one or two transitions, guarded or not, assigning or not, to a
    top-level state, into a compound state, to its history, or internal."""
    count = draw(st.integers(20, 80))
    tops = [f"s{number}" for number in range(count)]
    kinds = {name: draw(st.sampled_from(KINDS)) for name in tops}
    kinds["s0"] = "plain"
    targets = [*tops, "end"]
    for name, kind in kinds.items():
        if kind == "compound":
            targets += [f"{name}.x0", f"{name}.x1", f"{name}.back"]
        elif kind == "final":
            targets.append(f"{name}_end")

    def transitions() -> list[dict[str, Any]]:
        written = []
        for _ in range(draw(st.integers(1, 2))):
            edge: dict[str, Any] = {}
            target = draw(st.sampled_from([*targets, None]))
            if target is not None:
                edge["to"] = target
            if draw(st.integers(0, 3)) == 0:
                edge["if"] = f"context.n > {draw(st.integers(0, 3))}"
            if target is None or draw(st.integers(0, 3)) == 0:
                edge["assign"] = {"n": "context.n + 1"}
            written.append(edge)
        return written

    states: dict[str, Any] = {}
    for number, (name, kind) in enumerate(kinds.items()):
        # A chain of `next` events reaches every state.
        on: dict[str, Any] = {"next": tops[number + 1] if number + 1 < count else "end"}
        for event in draw(st.lists(st.sampled_from(EVENTS), max_size=3, unique=True)):
            on[event] = transitions()
        state: dict[str, Any] = {}
        if kind == "final":
            on["stop"] = f"{name}_end"
            states[f"{name}_end"] = {"final": True}
        elif kind == "task":
            state["task"] = f"work.{name}"
            on["done"] = draw(st.sampled_from(tops))
        elif kind == "timer":
            state["after"] = {"1h": draw(st.sampled_from(tops))}
        elif kind == "always":
            state["always"] = [{"to": draw(st.sampled_from(tops)), "if": "context.n > 100"}]
        elif kind == "foreach":
            state["foreach"] = {"items": "context.items", "task": f"work.{name}"}
            on["done"] = draw(st.sampled_from(tops))
        elif kind == "compound":
            state["initial"] = "x0"
            state["states"] = {
                "x0": {"on": {"e0": "x1", "e3": draw(st.sampled_from(tops))}},
                "x1": {"on": {"e1": "x0", "e2": {"to": draw(st.sampled_from(tops))}}},
                "back": {"history": draw(st.sampled_from(["shallow", "deep"]))},
            }
        states[name] = {**state, "on": on}
    states["end"] = {"final": True}
    document = {"name": "flat_generated", "initial": "s0", "states": states}
    return yaml.safe_dump(document, sort_keys=False, width=1000)


def steps_alike(quick: Step, full: Step) -> None:
    assert quick == full
    # The same JSON text too: the machine data's keys in the same order.
    assert json.dumps(quick.machine) == json.dumps(full.machine)
    assert json.dumps(quick.context) == json.dumps(full.context)


def by_run(compiled: statemachines.CompiledMachine, snapshot: Snapshot, event: str) -> Any:
    """The full run's step, or the EventRejected it raises."""
    try:
        return compiled.send_by_run(snapshot, event, {"sent": event}, NOW)
    except EventRejected as exc:
        return exc


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(text=large_charts(), sent=st.lists(st.sampled_from(SENT), max_size=60))
def test_a_plain_move_makes_the_step_the_full_run_makes(text: str, sent: list[str]) -> None:
    compiled = compile_definition(statemachines.load(text))
    started = compiled.start({"n": 0, "items": [1, 2]}, NOW).snapshot
    # Every event offered in every state, entered as an operator's move enters it ...
    for path, state in compiled.chart.states.items():
        if state.history is None:  # a history pseudo-state is entered by a transition
            offered_in(compiled, compiled.enter(started, [path], NOW).snapshot)
    # ... and along a walk of events.
    current = started
    for event in sent:
        offered_in(compiled, current)
        full = by_run(compiled, copy.deepcopy(current), event)
        try:
            step = compiled.send(current, event, {"sent": event}, NOW)
        except EventRejected as exc:
            assert isinstance(full, EventRejected)
            assert (exc.allowed, str(exc)) == (full.allowed, str(full))
            continue
        steps_alike(step, full)
        current = step.snapshot


def offered_in(compiled: statemachines.CompiledMachine, current: Snapshot) -> None:
    """Each event to the instance at `current`: a plain move, if it makes one, makes the
    full run's step, and changes nothing it reads."""
    for offered in SENT:
        as_read = copy.deepcopy(current)
        quick = compiled.send_flat(current, offered, {"sent": offered})
        assert current == as_read, "a plain move changes nothing it reads"
        if quick is not None:
            steps_alike(quick, by_run(compiled, copy.deepcopy(current), offered))


def test_every_move_of_a_tangled_chart_is_plain_and_the_same_as_the_run() -> None:
    compiled = compile_definition(statemachines.load(tangled(200)))
    current = compiled.start({}, NOW).snapshot
    for number in range(600):
        event = f"e{number % 3}"
        quick = compiled.send_flat(current, event, None)
        assert quick is not None, (current.state, event)
        steps_alike(quick, compiled.send_by_run(current, event, None, NOW))
        current = quick.snapshot
    assert compiled.send_flat(current, "quit", None) is None  # to a final state


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=large_charts())
def test_the_plain_moves_are_the_choices_of_the_transitions_machine(text: str) -> None:
    compiled = compile_definition(statemachines.load(text))
    names = {"context": {"n": 0}, "event": None, "result": None, "now": NOW}
    for (source, event), target in compiled.flat.moves.items():
        spec, chosen, errors = compiled.machine.choose_by_machine(source, event, names)
        assert (chosen, errors) == (target, [])
        assert spec is not None and spec.guard is None and not spec.assign

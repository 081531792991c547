"""Property: the transition table every event reads (`ChartMachine.choose`) and the
`transitions` machine it is derived from (`choose_by_machine`) make the same choice, on large
randomly generated charts with guards that hold, fail or cannot be evaluated: for every node
and every trigger, the same transition (or none), the same target, the same guards tried in
the same order, the same guard errors; and on generated nested charts, the same step after
every event of a random sequence."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nested_charts import Chart, charts, events

import statemachines
from statemachines import EventRejected, compile_definition
from statemachines.regions import Choice

NOW = datetime(2026, 1, 1, tzinfo=UTC)
EVENTS = ("e0", "e1", "e2", "e3", "e4")
OUTCOMES = ("holds", "fails", "error")


class Probe:
    """A guard's value: records that the guard was tried, then holds, fails, or raises the
    TypeError an expression reports as an ExpressionError."""

    def __init__(self, name: str, outcome: str, tried: list[str]) -> None:
        self.name, self.outcome, self.tried = name, outcome, tried

    def __gt__(self, other: Any) -> bool:
        self.tried.append(self.name)
        if self.outcome == "error":
            raise TypeError(f"{self.name} cannot be compared")
        return self.outcome == "holds"


@st.composite
def large_charts(draw: Any) -> tuple[str, int]:
    """YAML of 30-120 states (a third of them compound, of 1-3 states), each node with up
    to three events of 1-3 transitions, most guarded by a guard of its own (`context.gN > 0`),
    to anywhere or internal, and guarded `always` transitions; a chain of `next` events
    reaches every state. Also the number of guards."""
    count = draw(st.integers(30, 120))
    tops = [f"s{number}" for number in range(count)]
    compound = {name: draw(st.integers(1, 3)) for name in tops if draw(st.integers(0, 2)) == 0}
    paths = [
        path
        for name in tops
        for path in [name, *(f"{name}.x{inner}" for inner in range(compound.get(name, 0)))]
    ]
    guards = 0

    def transitions() -> list[dict[str, Any]]:
        nonlocal guards
        written = []
        for _ in range(draw(st.integers(1, 3))):
            edge: dict[str, Any] = {"assign": {"n": "1"}}
            target = draw(st.sampled_from([*paths, None]))
            if target is not None:
                edge["to"] = target
            if draw(st.integers(0, 3)):
                edge["if"] = f"context.g{guards} > 0"
                guards += 1
            written.append(edge)
        return written

    def reactions(chain: str) -> dict[str, Any]:
        on: dict[str, Any] = {"next": chain}
        for event in draw(st.lists(st.sampled_from(EVENTS), max_size=3, unique=True)):
            on[event] = transitions()
        if draw(st.integers(0, 4)) == 0:
            guarded = [edge for edge in transitions() if "if" in edge]
            if guarded:
                on["always"] = guarded
        return {"on": on}

    states: dict[str, Any] = {}
    for number, name in enumerate(tops):
        after = tops[number + 1] if number + 1 < count else "end"
        inner = compound.get(name, 0)
        if not inner:
            states[name] = reactions(after)
            continue
        children = {
            f"x{index}": reactions(f"{name}.x{index + 1}" if index + 1 < inner else after)
            for index in range(inner)
        }
        states[name] = {"initial": "x0", "states": children, **reactions(after)}
    states["end"] = {"final": True}
    document = {"name": "large_generated", "initial": "s0", "states": states}
    return yaml.safe_dump(document, sort_keys=False, width=1000), guards


def same(choice: Choice) -> tuple[Any, ...]:
    spec, target, errors = choice
    return (id(spec), target, [str(error) for error in errors])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chart=large_charts(), data=st.data())
def test_the_table_and_the_machine_choose_alike_for_every_node_and_trigger(
    chart: tuple[str, int], data: st.DataObject
) -> None:
    text, guards = chart
    compiled = compile_definition(statemachines.load(text))
    picker, nodes = compiled.machine, list(compiled.chart.order)
    triggers = [*picker.table, "unknown", "done", "failed"]
    assert picker.table, "the table holds the chart's transitions"
    for _ in range(3):  # guard outcomes drawn anew for every node and trigger
        outcomes = data.draw(st.lists(st.sampled_from(OUTCOMES), min_size=guards, max_size=guards))
        tried: list[str] = []
        context = {f"g{number}": Probe(f"g{number}", o, tried) for number, o in enumerate(outcomes)}
        names = {"context": context, "event": None, "result": None, "now": NOW}
        for node in nodes:
            for trigger in triggers:
                chosen = picker.choose(node, trigger, names)
                by_table = tried[:]
                tried.clear()
                reference = picker.choose_by_machine(node, trigger, names)
                assert same(chosen) == same(reference), (node, trigger)
                assert chosen[0] is reference[0]
                assert by_table == tried, (node, trigger)  # the same guards, in order
                tried.clear()


def by_machine(text: str) -> statemachines.CompiledMachine:
    """A compiled machine whose every choice is the `transitions` machine's own."""
    compiled = compile_definition(statemachines.load(text))
    compiled.machine.choose = compiled.machine.choose_by_machine  # type: ignore[method-assign]
    return compiled


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(chart=charts(), sent=events)
def test_every_step_is_the_same_by_the_table_and_by_the_machine(
    chart: Chart, sent: list[str]
) -> None:
    table = compile_definition(statemachines.load(chart.text))
    machine = by_machine(chart.text)
    ours = table.start({"trace": []}, NOW)
    theirs = machine.start({"trace": []}, NOW)
    assert ours == theirs
    for event in sent:
        try:
            step = table.send(ours.snapshot, event, None, NOW)
        except EventRejected as exc:
            rejected = exc
            try:
                machine.send(theirs.snapshot, event, None, NOW)
            except EventRejected as other:
                assert (other.allowed, str(other)) == (rejected.allowed, str(rejected))
                continue
            raise AssertionError(f"{event} rejected by the table only") from None
        assert step == machine.send(theirs.snapshot, event, None, NOW), event
        ours = theirs = step

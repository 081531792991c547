"""Property: on randomly generated nested charts (states four deep, parallel states,
history, final states) the compiled machine, and `simulate`, agree with an independent
reference model (tests/nested_reference.py) on the active states, the status and the
transitions taken (each appends its label to `context.trace`) after every event."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from nested_charts import Chart, Node, charts, events, parse
from nested_reference import Reference

import statemachines
from statemachines import EventRejected, compile_definition, simulate
from statemachines.steps import atomic

NOW = datetime(2026, 1, 1, tzinfo=UTC)
# run.py offers the event to the nodes around a transition an earlier region's preempted
# (SCXML does not): the properties hold the reference to that, and the test below to SCXML.
PREEMPTED_TAKES_THE_EVENT = True


def observed(snapshot: statemachines.Snapshot) -> tuple[list[str], str, list[str]]:
    return sorted(atomic(snapshot.machine["active"])), snapshot.status, snapshot.context["trace"]


def expected(reference: Reference) -> tuple[list[str], str, list[str]]:
    return reference.atomic(), reference.status, reference.trace


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chart=charts())
def test_every_generated_chart_loads_without_errors(chart: Chart) -> None:
    definition = statemachines.load(chart.text)
    assert {state.path for state in definition.walk()} == {
        node.path for node in chart.nodes() if node.kind != "region"
    }
    # The YAML reads back into the same tree (how a reported example is replayed).
    assert shape(parse(chart.text)) == shape(chart)


def shape(chart: Chart) -> list[tuple[object, ...]]:
    def edges(node: Node) -> dict[str, list[tuple[object, ...]]]:
        return {
            event: [(edge.label, edge.target and edge.target.path, edge.guard) for edge in listed]
            for event, listed in node.on.items()
        }

    return [
        (node.path, node.kind, node.initial and node.initial.path, node.outcome, node.history)
        + (node.default and node.default.path, edges(node))
        for node in chart.nodes()
    ]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(chart=charts(), sent=events)
def test_the_compiled_machine_and_simulate_agree_with_the_reference_after_every_event(
    chart: Chart, sent: list[str]
) -> None:
    definition = statemachines.load(chart.text)
    compiled = compile_definition(definition)
    reference = Reference(chart, PREEMPTED_TAKES_THE_EVENT)
    snapshot = compiled.start({"trace": []}, NOW).snapshot
    assert observed(snapshot) == expected(reference), "after the start"
    rejected = 0
    for number, event in enumerate(sent, 1):
        accepted = reference.send(event)
        try:
            snapshot = compiled.send(snapshot, event, None, NOW).snapshot
        except EventRejected:
            rejected += 1
            assert not accepted, f"event {number} ({event}) rejected, the reference took it"
        else:
            assert accepted, f"event {number} ({event}) taken, the reference rejected it"
        assert observed(snapshot) == expected(reference), f"after event {number} ({event})"
    run = simulate(definition, sent, data={"trace": []}, strict=False)
    assert (sorted(run.active), run.status, run.context["trace"]) == expected(reference)
    assert len(run.rejected) == rejected


PREEMPTED = """\
name: preempted
initial: both
states:
  both:
    parallel:
      left:
        initial: a
        states:
          a: {on: {go: {to: both.left.b, assign: {trace: "context.trace + ['a_to_b']"}}}}
          b: {on: {go: both.left.a}}
      right:
        initial: c
        states:
          c:
            initial: x
            states:
              x: {on: {go: {to: out, assign: {trace: "context.trace + ['x_to_out']"}}}}
              y: {on: {back: both.right.c.x}}
            on: {go: {to: both.right.c.y, assign: {trace: "context.trace + ['c_to_y']"}}}
    on: {done: out}
  out: {final: true}
"""


def test_a_transition_preempted_by_an_earlier_regions_keeps_the_nodes_around_it_out() -> None:
    # `left` moves inside itself; `x`'s transition would leave the parallel state, so it is
    # preempted (SCXML's conflict rule). `x` chose it all the same: as the innermost state
    # with a transition for `go`, it took the event, and `c` around it is not offered `go`.
    chart = parse(PREEMPTED)
    reference = Reference(chart)
    assert reference.send("go")
    assert (reference.atomic(), reference.trace) == (
        ["both.left.b", "both.right.c.x"],
        ["a_to_b"],
    )
    run = simulate(statemachines.load(PREEMPTED), ["go"], data={"trace": []})
    assert (sorted(run.active), run.context["trace"]) == (reference.atomic(), reference.trace)

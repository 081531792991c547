"""Property: on randomly generated nested charts, the durable engine (SQLite and PostgreSQL)
agrees with the independent reference model (tests/nested_reference.py) after every event:
the active states, the status, the transitions taken (`context.trace`), and which events
it rejects."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from nested_charts import Chart, charts, events
from nested_reference import Reference

from engine import Engine, EventRejected

# As in tests/statemachines/test_nesting_properties.py: the reference follows run.py where
# it lets the nodes around a preempted transition take the event.
PREEMPTED_TAKES_THE_EVENT = True


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(chart=charts(), sent=events)
def test_the_engine_agrees_with_the_reference_after_every_event(
    engine: Engine, chart: Chart, sent: list[str]
) -> None:
    # Each example deploys its own definition (named by its digest) and starts its own
    # instance, so one engine and database serve them all.
    engine.deploy(chart.text)
    reference = Reference(chart, PREEMPTED_TAKES_THE_EVENT)
    instance = engine.start(chart.name, {"trace": []})

    def agrees(when: str) -> None:
        current = engine.get(instance.id)
        found = (sorted(current.active), current.status, current.context["trace"])
        assert found == (reference.atomic(), reference.status, reference.trace), when

    agrees("after the start")
    for number, event in enumerate(sent, 1):
        accepted = reference.send(event)
        try:
            engine.send(instance.id, event)
        except EventRejected:
            assert not accepted, f"event {number} ({event}) rejected, the reference took it"
        else:
            assert accepted, f"event {number} ({event}) taken, the reference rejected it"
        agrees(f"after event {number} ({event})")

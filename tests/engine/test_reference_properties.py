"""Property: for any sequence of events, the engine accepts, rejects and ends like `simulate`."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import statemachines
from engine import Engine, EventRejected

DOOR_LOCK = next(p for p in statemachines.examples() if p.stem == "door_lock")
CODES = ["1234", "0000", "9999"]

door_events = st.one_of(
    st.builds(lambda code: ("code_entered", {"code": code}), st.sampled_from(CODES)),
    st.sampled_from(
        [
            "open",
            "close",
            "lock",
            "reset",
            "power_lost",
            "power_restored",
            "decommission",
            "no_such_event",
        ]
    ),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(events=st.lists(door_events, max_size=12))
def test_any_event_sequence_matches_the_reference_model(engine: Engine, events: list[Any]) -> None:
    # each example starts its own instance, so one engine and database serve them all
    engine.deploy(DOOR_LOCK)
    expected = statemachines.simulate(
        statemachines.load(DOOR_LOCK), events, data={"code": "1234"}, strict=False
    )
    inst = engine.start("door_lock", {"code": "1234"})
    rejected = 0
    for event in events:
        name, payload = (event, None) if isinstance(event, str) else event
        try:
            inst = engine.send(inst.id, name, payload)
        except EventRejected:
            rejected += 1
    assert rejected == len(expected.rejected)
    assert (inst.state, inst.status, inst.context) == (
        expected.state,
        expected.status,
        expected.context,
    )
    history = engine.history(inst.id)
    assert [e.seq for e in history] == list(range(1, len(history) + 1))
    assert len([e for e in history if e.kind == "event"]) == len(events) - rejected

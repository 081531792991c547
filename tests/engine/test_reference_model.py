"""The engine against the reference model: the bundled examples, run both ways, end alike.

`statemachines.simulate` is the dry run of a definition; the engine, given the same events,
task results and timer firings, must end in the same state, status and context.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

import statemachines
from engine import Engine, TaskFailure
from statemachines import Failure
from statemachines.durations import parse_duration

EXAMPLES = {path.stem: path for path in statemachines.examples()}


@dataclass(frozen=True)
class Wait:
    """Let time pass until the timer `key` of an active state fires (`advance` from now)."""

    key: str
    advance: str


Step = str | tuple[str, Any] | Wait


@dataclass(frozen=True)
class Scenario:
    example: str
    data: dict[str, Any]
    steps: Sequence[Step]
    results: Mapping[str, Any]
    expected_state: str
    expected_status: str
    label: str = field(default="")
    calls: tuple[str, ...] = ()  # the examples it calls, deployed (given to simulate) first


ORDER_RESULTS: dict[str, Any] = {
    "payments.validate": {"approved": True},
    "inventory.reserve": {"id": "R-1"},
    "inventory.release": None,
    "warehouse.pack": {"box": 2},
    "shipping.buy_label": "LBL-9",
    "mail.send": lambda recipient: f"sent:{recipient}",
    "payments.refund": None,
}
TRIP_RESULTS: dict[str, Any] = {
    "flights.book": {"pnr": "F-1"},
    "flights.cancel": None,
    "hotels.book": {"room": 12},
    "hotels.cancel": None,
    "cars.book": {"plate": "AA-00"},
    "cars.cancel": None,
    "trips.confirm": {"confirmed": True},
}
NEWSLETTER_RESULTS: dict[str, Any] = {
    "newsletter.render": lambda data: f"<h1>{data['issue']}</h1>",
    "mail.send": lambda data: f"{data['to']}#{data['position']}",
    "newsletter.report": {"reported": True},
}
DOCUMENT_RESULTS: dict[str, Any] = {"documents.publish": {"url": "https://docs.example/D-1"}}
DOCUMENT = {"document_id": "D-1", "author": "ann", "amount": 100}
LOAN = {"applicant": "ann", "amount": 5000}
LOAN_RESULTS: dict[str, Any] = {"credit.check": {"score": 710}, "loans.send_offer": {"rate": 4}}
INCIDENT_RESULTS: dict[str, Any] = {
    "ops.diagnose": {"cause": "disk"},
    "ops.patch": {"patched": True},
    "ops.page_on_call": {"paged": "on-call"},
}
PARCELS = [{"id": f"P-{n}", "address": f"{n} Quay Street"} for n in range(1, 13)]
SHIPPING_RESULTS: dict[str, Any] = {
    "carriers.book": lambda data: {"carrier": "north", "parcel": data["parcel_id"]},
    "labels.print": lambda data: f"LBL-{data['parcel_id']}",
    "consignments.notify": {"notified": True},
}


def _rejecting(*parcels: str) -> Callable[[Any], Any]:
    def book(data: Any) -> Any:
        if data["parcel_id"] in parcels:
            return Failure(f"no {data['address']}", "AddressRejected")
        return {"carrier": "north", "parcel": data["parcel_id"]}

    return book


SCENARIOS = [
    Scenario(
        "order_fulfillment",
        {"order_id": 7, "amount": 120, "express": True, "recipients": ["a@x", "b@x"]},
        [("delivered", {"at": "2026-01-03"})],
        ORDER_RESULTS,
        "completed",
        "succeeded",
        "express-delivery",
    ),
    Scenario(
        "order_fulfillment",
        {"order_id": 8, "amount": 20000, "recipients": []},
        ["approve", "picked_up"],
        ORDER_RESULTS,
        "completed",
        "succeeded",
        "manual-review-pickup",
    ),
    Scenario(
        "order_fulfillment",
        {"order_id": 9, "amount": 50000, "recipients": []},
        [Wait("2d", "2d")],
        ORDER_RESULTS,
        "declined",
        "failed",
        "review-expires",
    ),
    Scenario(
        "trip_booking",
        {"trip_id": "T-1", "traveller": "ann", "car": True},
        [],
        TRIP_RESULTS,
        "booked",
        "succeeded",
        "with-car",
    ),
    Scenario(
        "trip_booking",
        {"trip_id": "T-2", "traveller": "bob"},
        [],
        TRIP_RESULTS,
        "booked",
        "succeeded",
        "without-car",
    ),
    Scenario(
        "trip_booking",
        {"trip_id": "T-3", "traveller": "cy", "car": True},
        [],
        {**TRIP_RESULTS, "cars.book": Failure("no cars left")},
        "book_car",
        "failed",
        "car-fails-compensates",
    ),
    Scenario(
        "newsletter",
        {"issue": "May", "subscribers": ["a", "b", "c", "d", "e", "f", "g"]},
        [],
        NEWSLETTER_RESULTS,
        "sent",
        "succeeded",
        "seven-subscribers",
    ),
    Scenario(
        "newsletter",
        {"issue": "June", "subscribers": []},
        [],
        NEWSLETTER_RESULTS,
        "nobody_to_send",
        "succeeded",
        "no-subscribers",
    ),
    Scenario(
        "door_lock",
        {"code": "1234"},
        [
            ("code_entered", {"code": "0000"}),
            ("code_entered", {"code": "1111"}),
            ("code_entered", {"code": "2222"}),
            Wait("15m", "15m"),
            ("code_entered", {"code": "1234"}),
            "open",
            Wait("5m", "5m"),
            "reset",
            "power_lost",
            "decommission",
        ],
        {},
        "retired",
        "succeeded",
        "lockout-alarm-retire",
    ),
    Scenario(
        "door_lock",
        {"code": "1234"},
        [("code_entered", {"code": "1234"}), Wait("30s", "30s"), "power_lost", "power_restored"],
        {},
        "locked",
        "running",
        "auto-relock",
    ),
    Scenario(
        "document_approval",
        DOCUMENT,
        [("submit", {"by": "bob"}), "legal_approve", ("finance_approve", {"limit": 500})],
        DOCUMENT_RESULTS,
        "published",
        "succeeded",
        "approved",
    ),
    Scenario(
        "document_approval",
        DOCUMENT,
        [("submit", {"by": "bob"}), Wait("1d", "1d"), Wait("2d", "1d")],
        DOCUMENT_RESULTS,
        "expired",
        "failed",
        "reminded-then-expired",
    ),
    Scenario(
        "document_approval",
        DOCUMENT,
        [("submit", {"by": "bob"}), ("finance_approve", {"limit": 50}), "submit", "withdraw"],
        DOCUMENT_RESULTS,
        "withdrawn",
        "failed",
        "over-limit-resubmit-withdraw",
    ),
    Scenario(
        "document_approval",
        DOCUMENT,
        [("submit", {"by": "bob"}), "legal_approve", "finance_approve"],
        {"documents.publish": Failure("storage down")},
        "publish_failed",
        "failed",
        "publish-fails",
    ),
    Scenario(
        "loan_application",
        LOAN,
        ["documents_received", "hold", "resume", "approve"],
        LOAN_RESULTS,
        "signed",
        "succeeded",
        "hold-resumes-where-it-stopped",
    ),
    Scenario(
        "loan_application",
        LOAN,
        ["documents_received", Wait("2d", "2d")],
        LOAN_RESULTS,
        "expired",
        "failed",
        "phase-deadline",
    ),
    Scenario(
        "loan_application",
        LOAN,
        ["documents_received"],
        {**LOAN_RESULTS, "credit.check": {"score": 420}},
        "declined",
        "failed",
        "refused-inside-the-phase",
    ),
    Scenario(
        "incident_response",
        {},
        ["all_clear"],
        INCIDENT_RESULTS,
        "resolved",
        "succeeded",
        "fixed-and-quiet",
    ),
    Scenario(
        "incident_response",
        {},
        [Wait("30m", "30m")],
        INCIDENT_RESULTS,
        "major_incident",
        "running",
        "watch-escalates",
    ),
    Scenario(
        "incident_response",
        {},
        ["page", "resolve"],
        INCIDENT_RESULTS,
        "resolved",
        "succeeded",
        "page-to-the-watch-region",
    ),
    Scenario(
        "ship_parcel",
        {"parcel_id": "P-1", "address": "1 Quay Street"},
        [],
        SHIPPING_RESULTS,
        "shipped",
        "succeeded",
        "booked-and-labelled",
    ),
    Scenario(
        "ship_parcel",
        {"parcel_id": "P-1", "address": "nowhere"},
        [],
        {**SHIPPING_RESULTS, "carriers.book": _rejecting("P-1")},
        "undeliverable",
        "failed",
        "address-rejected-is-not-retried",
    ),
    Scenario(
        "bulk_shipment",
        {"consignment": "C-1", "parcels": PARCELS},
        [],
        {**SHIPPING_RESULTS, "carriers.book": _rejecting("P-4")},
        "dispatched",
        "succeeded",
        "one-parcel-in-ten-tolerated",
        calls=("ship_parcel",),
    ),
    Scenario(
        "bulk_shipment",
        {"consignment": "C-1", "parcels": PARCELS},
        [],
        {**SHIPPING_RESULTS, "carriers.book": _rejecting("P-2", "P-4")},
        "held",
        "failed",
        "two-parcels-are-too-many",
        calls=("ship_parcel",),
    ),
]


def _handler(outcome: Any) -> Callable[[Any], Any]:
    def run(data: Any) -> Any:
        result = outcome(data) if callable(outcome) else outcome
        if isinstance(result, Failure):
            raise TaskFailure(result.type, result.message)
        return result

    return run


def _simulate(scenario: Scenario) -> Any:
    events: list[str | tuple[str, Any]] = []
    for step in scenario.steps:
        events.append(f"after:{step.key}" if isinstance(step, Wait) else step)
    definition = statemachines.load(EXAMPLES[scenario.example])
    called = [statemachines.load(EXAMPLES[name]) for name in scenario.calls]
    return statemachines.simulate(
        definition,
        events,
        data=scenario.data,
        results=dict(scenario.results),
        definitions=called,
    )


def _run_on_engine(engine: Engine, clock: Any, scenario: Scenario) -> Any:
    for name in (*scenario.calls, scenario.example):
        engine.deploy(EXAMPLES[name])
    for name, outcome in scenario.results.items():
        engine.task(name)(_handler(outcome))
    inst = engine.start(scenario.example, dict(scenario.data))
    engine.run_until_idle()
    for step in scenario.steps:
        if isinstance(step, Wait):
            clock.advance(parse_duration(step.advance))
        elif isinstance(step, str):
            engine.send(inst.id, step)
        else:
            engine.send(inst.id, step[0], step[1])
        engine.run_until_idle()
    return engine.get(inst.id)


def test_every_bundled_example_has_a_scenario() -> None:
    assert {s.example for s in SCENARIOS} == set(EXAMPLES)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda case: f"{case.example}-{case.label}")
def test_engine_ends_where_the_reference_model_ends(
    engine: Engine, clock: Any, scenario: Scenario
) -> None:
    expected = _simulate(scenario)
    assert (expected.state, expected.status) == (scenario.expected_state, scenario.expected_status)
    actual = _run_on_engine(engine, clock, scenario)
    assert actual.status == expected.status
    assert actual.state == expected.state
    assert _children_unnamed(actual.context) == _children_unnamed(expected.context)


def _children_unnamed(value: Any) -> Any:
    """`value` with each `child` (an instance id, or a name in a dry run) as '<child>'."""
    if isinstance(value, dict):
        return {k: "<child>" if k == "child" else _children_unnamed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_children_unnamed(item) for item in value]
    return value

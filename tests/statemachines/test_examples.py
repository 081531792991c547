"""Every bundled example loads cleanly and `simulate` walks it to a final state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import statemachines
from statemachines import EXAMPLES, EventRejected, Failure, simulate


def example(name: str) -> statemachines.Definition:
    return statemachines.load(EXAMPLES / f"{name}.yaml")


def test_the_nine_examples_are_bundled_two_of_them_nested_one_calling_another() -> None:
    names = [path.stem for path in statemachines.examples()]
    assert names == [
        "bulk_shipment",
        "document_approval",
        "door_lock",
        "incident_response",
        "loan_application",
        "newsletter",
        "order_fulfillment",
        "ship_parcel",
        "trip_booking",
    ]


@pytest.mark.parametrize("path", statemachines.examples(), ids=lambda path: Path(path).stem)
def test_each_example_loads_without_warnings_and_compiles(path: Path) -> None:
    definition = statemachines.load(path)
    assert definition.warnings == ()
    assert definition.name == path.stem
    compiled = statemachines.compile_definition(definition)
    assert compiled.definition is definition


# -- order_fulfillment ---------------------------------------------------------------------

ORDER = {"order_id": 7, "amount": 120, "express": True, "recipients": ["ana@x", "rui@x"]}


def test_order_approved_and_delivered_succeeds() -> None:
    run = simulate(
        example("order_fulfillment"),
        [("delivered", {"at": "2026-01-02"})],
        data=ORDER,
        results={"validate_payment": {"approved": True}, "reserve_stock": {"id": "r1"}},
    )
    assert (run.state, run.status) == ("completed", "succeeded")
    assert run.path == [
        (None, None, "validate_payment"),
        ("done", "validate_payment", "reserve_stock"),
        ("done", "reserve_stock", "ship"),
        ("done", "ship.pack.pack", "ship.pack.finished"),
        ("done", "ship.label.buy_label", "ship.label.printed"),
        ("done", "ship", "notify"),
        ("done", "notify", "route"),
        (None, "route", "await_delivery"),
        ("delivered", "await_delivery", "completed"),
    ]
    assert run.context["reservation"] == {"id": "r1"}
    assert run.context["delivered_at"] == "2026-01-02"
    assert run.context["receipts"] == [None, None]


def test_order_not_approved_goes_to_manual_review_and_expires_after_two_days() -> None:
    run = simulate(
        example("order_fulfillment"),
        ["after:2d"],
        data={**ORDER, "express": False},
        results={"validate_payment": {"approved": False}},
    )
    assert run.path[-2:] == [
        ("done", "validate_payment", "manual_review"),
        ("after 2d", "manual_review", "declined"),
    ]
    assert (run.state, run.status) == ("declined", "failed")


def test_order_approved_by_hand_is_picked_up() -> None:
    run = simulate(
        example("order_fulfillment"),
        ["approve", "picked_up"],
        data={**ORDER, "express": False, "recipients": []},
        results={"validate_payment": {"approved": False}},
    )
    assert ("approve", "manual_review", "reserve_stock") in run.path
    assert run.path[-2:] == [
        (None, "route", "await_pickup"),
        ("picked_up", "await_pickup", "completed"),
    ]
    assert run.status == "succeeded"


def test_order_with_a_failing_label_is_refunded_and_the_reservation_is_not_undone() -> None:
    run = simulate(
        example("order_fulfillment"),
        data=ORDER,
        results={
            "validate_payment": {"approved": True},
            "shipping.buy_label": Failure("printer jam"),
        },
    )
    assert run.path[-2:] == [("failed", "ship", "refund"), ("done", "refund", "cancelled_order")]
    assert (run.state, run.status) == ("cancelled_order", "failed")
    assert not any(entry.kind == "compensate" for entry in run.history)


def test_order_rejects_an_event_it_does_not_expect() -> None:
    with pytest.raises(EventRejected) as caught:
        simulate(
            example("order_fulfillment"),
            ["picked_up"],
            data=ORDER,
            results={"validate_payment": {"approved": True}},
        )
    assert caught.value.state == "await_delivery"
    assert caught.value.allowed == ["delivered"]
    run = simulate(
        example("order_fulfillment"),
        ["picked_up"],
        data=ORDER,
        strict=False,
        results={"validate_payment": {"approved": True}},
    )
    assert [exc.event for exc in run.rejected] == ["picked_up"]
    assert run.state == "await_delivery"


# -- trip_booking --------------------------------------------------------------------------

TRIP = {"trip_id": "t1", "traveller": "ana", "car": True}


def test_trip_booked_in_full() -> None:
    run = simulate(
        example("trip_booking"),
        data=TRIP,
        results={"book_flight": "F1", "book_hotel": "H1", "book_car": "C1"},
    )
    assert (run.state, run.status) == ("booked", "succeeded")
    assert [step[2] for step in run.path] == [
        "book_flight",
        "book_hotel",
        "need_car",
        "book_car",
        "confirm",
        "booked",
    ]
    booked = [run.context[key] for key in ("flight", "hotel", "car_booking")]
    assert booked == ["F1", "H1", "C1"]


def test_trip_with_a_failing_step_compensates_in_reverse_order() -> None:
    undone: list[Any] = []
    run = simulate(
        example("trip_booking"),
        data=TRIP,
        results={
            "book_flight": "F1",
            "book_hotel": "H1",
            "book_car": Failure("no cars left"),
            "hotels.cancel": lambda ctx: undone.append(("hotel", ctx["hotel"])),
            "flights.cancel": lambda ctx: undone.append(("flight", ctx["flight"])),
        },
    )
    assert run.status == "failed"
    assert undone == [("hotel", "H1"), ("flight", "F1")]
    started = [
        (entry.from_state, entry.data["task"])
        for entry in run.history
        if entry.kind == "compensate" and entry.data and "task" in entry.data
    ]
    assert started == [("book_hotel", "hotels.cancel"), ("book_flight", "flights.cancel")]


def test_trip_without_a_car_skips_the_car() -> None:
    run = simulate(example("trip_booking"), data={**TRIP, "car": False})
    assert (None, "need_car", "confirm") in run.path
    assert run.state == "booked"


# -- document_approval ---------------------------------------------------------------------

DOCUMENT = {"document_id": "d1", "author": "ana", "amount": 50}


def test_document_approved_by_both_reviewers_after_a_reminder_is_published() -> None:
    run = simulate(
        example("document_approval"),
        [
            ("submit", {"by": "rui"}),
            "after:1d",
            "legal_approve",
            ("finance_approve", {"limit": 100}),
        ],
        data=DOCUMENT,
    )
    assert run.path == [
        (None, None, "draft"),
        ("submit", "draft", "review"),
        ("after 1d", "review.finance.waiting", "review.finance.waiting"),
        ("legal_approve", "review.legal.waiting", "review.legal.approved"),
        ("finance_approve", "review.finance.waiting", "review.finance.approved"),
        ("done", "review", "publish"),
        ("done", "publish", "published"),
    ]
    assert run.status == "succeeded"
    assert (run.context["reminded"], run.context["submitted_by"]) == (True, "rui")


def test_document_not_reviewed_within_two_days_expires() -> None:
    run = simulate(example("document_approval"), ["submit", "after:1d", "after:2d"], data=DOCUMENT)
    assert run.path[-1] == ("after 2d", "review", "expired")
    assert (run.state, run.status, run.active) == ("expired", "failed", ["expired"])


def test_document_rejected_by_legal_can_be_resubmitted() -> None:
    run = simulate(
        example("document_approval"),
        ["submit", "legal_reject", "submit", "legal_approve", "finance_approve"],
        data=DOCUMENT,
    )
    assert ("failed", "review", "changes_requested") in run.path
    assert run.context["revision"] == 2
    assert (run.state, run.status) == ("published", "succeeded")


def test_document_timer_of_a_state_not_active_is_rejected() -> None:
    with pytest.raises(EventRejected):
        simulate(example("document_approval"), ["after:2d"], data=DOCUMENT)


# -- newsletter ----------------------------------------------------------------------------


def test_newsletter_sends_to_each_subscriber_and_keeps_results_in_order() -> None:
    people = [f"p{i}@x" for i in range(12)]
    inputs: list[Any] = []

    def send(task_input: dict[str, Any]) -> dict[str, Any]:
        inputs.append(task_input)
        return {"to": task_input["to"]}

    run = simulate(
        example("newsletter"),
        data={"issue": "n1", "subscribers": people},
        results={"mail.send": send, "render": "<p>"},
    )
    assert (run.state, run.status) == ("sent", "succeeded")
    assert run.context["deliveries"] == [{"to": p} for p in people]
    assert run.context["sent"] == 12
    assert inputs[0] == {"to": "p0@x", "position": 0, "issue": "n1"}
    assert run.context["html"] == "<p>"


def test_newsletter_with_a_failed_delivery_ends_partly_sent() -> None:
    run = simulate(
        example("newsletter"),
        data={"issue": "n1", "subscribers": ["a", "b"]},
        results={"mail.send": [{"ok": 1}, Failure("bounced")]},
    )
    assert (run.state, run.status) == ("partly_sent", "failed")


def test_newsletter_without_subscribers_sends_nothing() -> None:
    run = simulate(example("newsletter"), data={"issue": "n1", "subscribers": []})
    assert run.path[-1] == (None, "check_audience", "nobody_to_send")
    assert run.status == "succeeded"


# -- door_lock -----------------------------------------------------------------------------


def test_door_lock_opens_with_the_right_code_and_relocks_itself() -> None:
    wrong, right = ("code_entered", {"code": "0000"}), ("code_entered", {"code": "1234"})
    events = [wrong, right, "open", "after:5m", "close", "after:30s", "power_lost", "decommission"]
    run = simulate(example("door_lock"), events, data={"code": "1234"})
    assert run.path[1:] == [
        ("code_entered", "locked", "locked"),
        ("code_entered", "locked", "unlocked"),
        ("open", "unlocked", "open"),
        ("after 5m", "open", "alarm"),
        ("close", "alarm", "unlocked"),
        ("after 30s", "unlocked", "locked"),
        ("power_lost", "locked", "offline"),
        ("decommission", "offline", "retired"),
    ]
    assert (run.state, run.status, run.context["failures"]) == ("retired", "succeeded", 0)


def test_door_lock_locks_out_after_three_wrong_codes_until_the_timer() -> None:
    wrong = [("code_entered", {"code": str(n)}) for n in range(3)]
    run = simulate(example("door_lock"), [*wrong, "after:15m"], data={"code": "1234"})
    assert run.path[-2:] == [
        ("code_entered", "locked", "lockout"),
        ("after 15m", "lockout", "locked"),
    ]
    assert (run.state, run.status, run.context["failures"]) == ("locked", "running", 0)


# -- bulk_shipment and ship_parcel ---------------------------------------------------------

PARCELS = [{"id": f"P{n}", "address": f"{n} Quay Street"} for n in range(1, 13)]
SHIPPING = [example("ship_parcel")]


def booking(*rejected: str, slow: tuple[str, ...] = ()) -> Any:
    """`carriers.book`: parcels in `rejected` have their address refused; those in `slow`
    time out on their first three attempts."""
    tries: dict[str, int] = {}

    def book(parcel: dict[str, Any]) -> Any:
        tries[parcel["parcel_id"]] = tries.get(parcel["parcel_id"], 0) + 1
        if parcel["parcel_id"] in rejected:
            return Failure(f"no such street: {parcel['address']}", "AddressRejected")
        if parcel["parcel_id"] in slow and tries[parcel["parcel_id"]] <= 3:
            return Failure("the carrier did not answer", "Timeout")
        return {"carrier": "north", "pickup": parcel["parcel_id"]}

    return book


def test_a_parcel_is_booked_after_three_carrier_timeouts_but_a_rejected_address_once() -> None:
    slow = booking(slow=("P1",))
    run = simulate(
        example("ship_parcel"),
        data={"parcel_id": "P1", "address": "1 Quay Street"},
        results={"carriers.book": slow, "labels.print": "L1"},
    )
    assert (run.state, run.status, run.context["label"]) == ("shipped", "succeeded", "L1")
    rejected = simulate(
        example("ship_parcel"),
        data={"parcel_id": "P9", "address": "nowhere"},
        results={"carriers.book": booking("P9")},
    )
    assert (rejected.state, rejected.status) == ("undeliverable", "failed")
    assert rejected.error is not None
    assert rejected.error["type"] == "AddressRejected"
    assert rejected.error["message"] == "parcel P9: no such street: nowhere"
    attempts = [e for e in rejected.history if e.kind == "task" and e.event == "failed"]
    assert [entry.data["attempts"] for entry in attempts] == [1]  # not retried


def test_a_consignment_ships_every_parcel_through_its_own_child_in_parcel_order() -> None:
    run = simulate(
        example("bulk_shipment"),
        data={"consignment": "C1", "parcels": PARCELS},
        definitions=SHIPPING,
        results={"carriers.book": booking(slow=("P3",)), "labels.print": "L"},
    )
    assert (run.state, run.status) == ("dispatched", "succeeded")
    shipments = run.context["shipments"]
    assert [shipment["parcel_id"] for shipment in shipments] == [p["id"] for p in PARCELS]
    assert shipments[0]["booking"] == {"carrier": "north", "pickup": "P1"}
    assert run.context["undelivered"] == []


def test_one_rejected_parcel_in_twelve_is_tolerated_and_recorded() -> None:
    run = simulate(
        example("bulk_shipment"),
        data={"consignment": "C1", "parcels": PARCELS},
        definitions=SHIPPING,
        results={"carriers.book": booking("P5")},
    )
    assert (run.state, run.status) == ("dispatched", "succeeded")
    [failure] = run.context["undelivered"]
    assert failure["index"] == 4
    assert failure["error"]["type"] == "AddressRejected"
    assert run.context["shipments"][4] is None


def test_two_rejected_parcels_hold_the_consignment_with_a_named_failure() -> None:
    run = simulate(
        example("bulk_shipment"),
        data={"consignment": "C1", "parcels": PARCELS},
        definitions=SHIPPING,
        results={"carriers.book": booking("P2", "P5")},
    )
    assert (run.state, run.status) == ("held", "failed")
    assert run.error is not None and run.error["type"] == "ConsignmentHeld"
    assert run.context["why"] == "2 of 12 items failed, more than the 1 tolerated"
    assert [failure["index"] for failure in run.context["undelivered"]] == [1, 4]

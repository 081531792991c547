"""`turnout demo`: the bundled workflows run end to end on a fresh SQLite file.

Real handlers (deterministic, so every run tells the same story) and a simulated clock that
the demo moves forward, so two days of timers pass in a second. The CLI draws the progress.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import statemachines

from .engine import Engine
from .records import Instance, TaskFailure


class DemoClock:
    """A clock the demo moves forward by hand; starts at the real current time."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class DemoTaskError(Exception):
    """A failure the demo's handlers raise on purpose (a declined card, a full hotel)."""


@dataclass
class Demo:
    """The demo's engine, handlers and instances; `steps()` yields progress labels."""

    directory: Path
    clock: DemoClock = field(default_factory=DemoClock)
    calls: Counter[str] = field(default_factory=Counter)
    started: list[Instance] = field(default_factory=list)
    events_sent: int = 0
    rejected: int = 0

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.database = self.directory / "turnout.db"
        for stale in self.directory.glob("turnout.db*"):
            stale.unlink()
        self.engine = Engine(f"sqlite:///{self.database}", clock=self.clock)
        self._register_handlers()

    # -- handlers --------------------------------------------------------------------------
    def _handler(self, name: str) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
        def register(function: Callable[[Any], Any]) -> Callable[[Any], Any]:
            def counted(value: Any) -> Any:
                self.calls[name] += 1
                return function(value)

            self.engine.task(name)(counted)
            return function

        return register

    def _register_handlers(self) -> None:
        attempts: Counter[str] = Counter()

        @self._handler("payments.validate")
        def validate(order: dict[str, Any]) -> dict[str, Any]:
            attempts[f"pay-{order['order_id']}"] += 1
            if order.get("flaky_payment") and attempts[f"pay-{order['order_id']}"] == 1:
                raise DemoTaskError("payment provider timed out")
            return {"approved": order["amount"] < 50_000}

        @self._handler("inventory.reserve")
        def reserve(order: dict[str, Any]) -> str:
            return f"R-{order['order_id']}"

        @self._handler("inventory.release")
        def release(order: dict[str, Any]) -> dict[str, Any]:
            return {"released": order.get("reservation")}

        @self._handler("warehouse.pack")
        def pack(order: dict[str, Any]) -> dict[str, Any]:
            if order.get("out_of_boxes"):
                raise DemoTaskError("no box fits")
            return {"parcel": f"P-{order['order_id']}"}

        @self._handler("shipping.buy_label")
        def buy_label(order: dict[str, Any]) -> dict[str, Any]:
            return {"tracking": f"TRK{order['order_id']:06d}"}

        @self._handler("mail.send")
        def send_mail(item: Any) -> dict[str, Any]:
            to = item["to"] if isinstance(item, dict) else item
            if "bounce" in str(to):
                raise DemoTaskError(f"mailbox {to} does not exist")
            return {"to": to, "status": "sent"}

        @self._handler("payments.refund")
        def refund(order: dict[str, Any]) -> dict[str, Any]:
            return {"refunded": order["amount"]}

        @self._handler("flights.book")
        def book_flight(trip: dict[str, Any]) -> str:
            attempts[f"flight-{trip['trip_id']}"] += 1
            if trip.get("flaky_airline") and attempts[f"flight-{trip['trip_id']}"] == 1:
                raise DemoTaskError("airline busy, try again")
            return f"FL-{trip['trip_id']}"

        @self._handler("flights.cancel")
        def cancel_flight(trip: dict[str, Any]) -> dict[str, Any]:
            return {"cancelled": trip.get("flight")}

        @self._handler("hotels.book")
        def book_hotel(trip: dict[str, Any]) -> str:
            if trip.get("hotel_full"):
                raise DemoTaskError("no room left")
            return f"HT-{trip['trip_id']}"

        @self._handler("hotels.cancel")
        def cancel_hotel(trip: dict[str, Any]) -> dict[str, Any]:
            return {"cancelled": trip.get("hotel")}

        @self._handler("cars.book")
        def book_car(trip: dict[str, Any]) -> str:
            return f"CAR-{trip['trip_id']}"

        @self._handler("cars.cancel")
        def cancel_car(trip: dict[str, Any]) -> dict[str, Any]:
            return {"cancelled": trip.get("car_booking")}

        @self._handler("trips.confirm")
        def confirm(trip: dict[str, Any]) -> dict[str, Any]:
            return {"confirmed": trip["trip"]}

        @self._handler("documents.publish")
        def publish(document: dict[str, Any]) -> str:
            return f"https://docs.example/{document['document_id']}"

        @self._handler("newsletter.render")
        def render(issue: dict[str, Any]) -> str:
            return f"<h1>{issue['issue']}</h1>"

        @self._handler("newsletter.report")
        def report(newsletter: dict[str, Any]) -> dict[str, Any]:
            return {"sent": newsletter.get("sent")}

        @self._handler("credit.check")
        def check_credit(loan: dict[str, Any]) -> dict[str, Any]:
            return {"score": 420 if loan["amount"] > 50_000 else 710}

        @self._handler("loans.send_offer")
        def send_offer(loan: dict[str, Any]) -> dict[str, Any]:
            return {"rate": 4.5, "amount": loan["amount"]}

        @self._handler("ops.diagnose")
        def diagnose(incident: dict[str, Any]) -> str:
            return f"disk full on {incident['host']}"

        @self._handler("ops.patch")
        def patch(incident: dict[str, Any]) -> dict[str, Any]:
            attempts[f"patch-{incident['host']}"] += 1
            if incident.get("unreachable") and attempts[f"patch-{incident['host']}"] == 1:
                raise DemoTaskError(f"{incident['host']} does not answer")
            return {"patched": incident["host"]}

        @self._handler("carriers.book")
        def book_carrier(parcel: dict[str, Any]) -> dict[str, Any]:
            attempts[f"parcel-{parcel['parcel_id']}"] += 1
            if "unknown" in parcel["address"]:
                raise TaskFailure("AddressRejected", f"no such address: {parcel['address']}")
            if parcel["parcel_id"].endswith("-3") and attempts[f"parcel-{parcel['parcel_id']}"] < 3:
                raise TaskFailure("Timeout", "the carrier did not answer in time")
            return {"carrier": "north", "pickup": f"PU-{parcel['parcel_id']}"}

        @self._handler("labels.print")
        def print_label(parcel: dict[str, Any]) -> str:
            return f"LBL-{parcel['parcel_id']}"

        @self._handler("consignments.notify")
        def notify(consignment: dict[str, Any]) -> dict[str, Any]:
            return {"notified": consignment["consignment"]}

        @self._handler("ops.page_on_call")
        def page_on_call(incident: dict[str, Any]) -> dict[str, Any]:
            return {"paged": "on-call", "host": incident["host"]}

    # -- the story -------------------------------------------------------------------------
    def settle(self, horizon: timedelta) -> None:
        """Run work, moving the clock to each due retry or timer up to now + `horizon`."""
        until = self.clock.now + horizon
        while True:
            self.engine.run_until_idle()
            due = self.engine.next_due()
            if due is None or due > until:
                break
            self.clock.now = max(self.clock.now, due)
        self.clock.now = max(self.clock.now, until)

    def send(self, instance: Instance, event: str, data: Any = None) -> None:
        try:
            self.engine.send(instance.id, event, data)
            self.events_sent += 1
        except statemachines.EventRejected:
            self.rejected += 1

    def start(self, name: str, data: dict[str, Any], key: str) -> Instance:
        instance = self.engine.start(name, data, key=key)
        self.started.append(instance)
        return instance

    def steps(self) -> Iterator[str]:
        """Run the demo, yielding a label after each step (for a progress bar)."""
        for path in statemachines.examples():
            self.engine.deploy(path)
        yield "deployed the bundled definitions"

        orders = []
        for number in range(1, 13):
            data: dict[str, Any] = {
                "order_id": number,
                "amount": 40 + number * 35,
                "express": number % 2 == 0,
                "recipients": [f"customer{number}@example.com", "shop@example.com"],
                "flaky_payment": number == 3,
                "out_of_boxes": number == 5,
            }
            if number in (7, 11):
                data["amount"] = 12_500  # over the automatic limit: manual review
            orders.append(self.start("order_fulfillment", data, f"order-{number}"))
        trips = [
            self.start(
                "trip_booking",
                {
                    "trip_id": f"T{n}",
                    "traveller": name,
                    "car": n % 2 == 1,
                    "flaky_airline": n == 2,
                    "hotel_full": n == 4,
                },
                f"trip-{n}",
            )
            for n, name in enumerate(["ana", "bo", "chen", "dita", "eli", "femi"], 1)
        ]
        documents = [
            self.start(
                "document_approval",
                {"document_id": f"D{n}", "author": "ana", "amount": 900 * n},
                f"doc-{n}",
            )
            for n in range(1, 5)
        ]
        letters = [
            self.start(
                "newsletter",
                {
                    "issue": f"2026-{n:02d}",
                    "subscribers": [f"reader{i}@example.com" for i in range(12)]
                    + (["bounce@example.com"] if n == 2 else []),
                },
                f"issue-{n}",
            )
            for n in range(1, 3)
        ]
        doors = [self.start("door_lock", {"code": "2468"}, f"door-{n}") for n in range(1, 3)]
        loans = [
            self.start("loan_application", {"applicant": name, "amount": amount}, f"loan-{n}")
            for n, (name, amount) in enumerate(
                [("ana", 9_000), ("bo", 20_000), ("chen", 80_000), ("dita", 5_000)], 1
            )
        ]
        incidents = [
            self.start("incident_response", {"host": host, "unreachable": n == 2}, f"inc-{n}")
            for n, host in enumerate(["db-1", "web-2", "cache-3"], 1)
        ]
        # Consignments: each parcel shipped by its own ship_parcel instance, five at a time;
        # one parcel in twelve may fail (its address is rejected), two hold the consignment.
        consignments = [
            self.start(
                "bulk_shipment",
                {
                    "consignment": f"C{n}",
                    "parcels": [
                        {
                            "id": f"C{n}-{p}",
                            "address": "unknown" if p in unknown else f"{p} Quay Street",
                        }
                        for p in range(1, 13)
                    ],
                },
                f"consignment-{n}",
            )
            for n, unknown in enumerate([(), (7,), (2, 9)], 1)
        ]
        yield f"started {len(self.started)} instances"

        self.settle(timedelta(minutes=1))
        yield "ran tasks: payments, stock, packing and labels, mail, bookings, parcels"

        for order in orders:
            if order.context["amount"] >= 10_000 and order.key == "order-7":
                self.send(order, "approve", {"by": "ana"})
        self.settle(timedelta(minutes=1))
        for order in orders:
            current = self.engine.get(order.id)
            if current.state == "await_delivery":
                self.send(current, "delivered", {"at": self.clock.now.isoformat()})
            elif current.state == "await_pickup" and current.key != "order-9":
                self.send(current, "picked_up")
        self.engine.cancel(orders[8].id, reason="customer changed their mind")
        yield "approved, delivered and cancelled orders"

        for n, document in enumerate(documents, 1):
            self.send(document, "submit", {"by": "ana"})
            if n in (1, 2):
                self.send(document, "legal_approve")
                self.send(document, "finance_approve", {"limit": 10_000})
            elif n == 3:
                self.send(document, "legal_reject")
        door_one, door_two = doors
        self.send(door_one, "code_entered", {"code": "2468"})
        self.send(door_one, "open")
        self.send(door_one, "close")
        for wrong in ("1111", "2222", "3333"):
            self.send(door_two, "code_entered", {"code": wrong})
        self.send(door_two, "open")  # rejected: a locked-out door does not open
        self.settle(timedelta(minutes=1))
        yield "sent reviews and door events"

        # Loans: one approved after a hold (it resumes at underwriting), one withdrawn in
        # the middle of the phase, one refused by the credit check, one left to expire.
        for loan in loans[:3]:
            self.send(loan, "documents_received")
        self.settle(timedelta(minutes=1))
        self.send(loans[0], "hold")
        self.send(loans[0], "resume")
        self.send(loans[0], "approve")
        self.send(loans[1], "withdraw")
        # Incidents: one quiet, one paged while its patch waits for a retry (the page
        # leaves the parallel state and the patch is dropped), one left to escalate.
        self.send(incidents[0], "all_clear")
        self.send(incidents[1], "page")
        self.settle(timedelta(minutes=40))
        self.send(incidents[1], "resolve")
        yield "moved loans through their phase, and incidents through fix and watch"

        self.settle(timedelta(days=3))
        yield "moved the clock three days: reminders, expiries, relocks"
        _ = (trips, letters, loans, incidents, consignments)

    # -- the summary -----------------------------------------------------------------------
    def summary(self) -> list[dict[str, Any]]:
        """One row per definition: instances by status, tasks run, retries, compensations."""
        rows: dict[str, dict[str, Any]] = {}
        children = [
            child
            for instance in self.started
            if instance.definition == "bulk_shipment"
            for child in self.engine.instances(parent=instance.id, limit=100)
        ]
        for instance in [*self.started, *children]:
            current = self.engine.get(instance.id)
            row = rows.setdefault(
                current.definition,
                {
                    "definition": current.definition,
                    "instances": 0,
                    "succeeded": 0,
                    "failed": 0,
                    "cancelled": 0,
                    "running": 0,
                    "retries": 0,
                    "compensations": 0,
                    "timers": 0,
                },
            )
            row["instances"] += 1
            row[current.status if current.status in row else "running"] += 1
            for entry in self.engine.history(instance.id):
                if entry.kind == "retry":
                    row["retries"] += 1
                elif entry.kind == "compensate" and entry.data and "task" in entry.data:
                    row["compensations"] += 1
                elif entry.kind == "timer":
                    row["timers"] += 1
        return [rows[name] for name in sorted(rows)]

    def write_diagrams(self) -> list[Path]:
        """Each definition, and one instance of each with its path, as SVG files."""
        import diagrams

        out = self.directory / "diagrams"
        out.mkdir(exist_ok=True)
        written: list[Path] = []
        for deployment in self.engine.definitions():
            target = out / f"{deployment.name}.svg"
            target.write_bytes(diagrams.render(self.engine.definition(deployment.name)))
            written.append(target)
        # One instance of each definition: the one that went through the most.
        richest: dict[str, tuple[int, Instance]] = {}
        for instance in self.started:
            steps = len(self.engine.history(instance.id))
            if steps > richest.get(instance.definition, (-1, instance))[0]:
                richest[instance.definition] = (steps, instance)
        for name in sorted(richest):
            instance = richest[name][1]
            target = out / f"{name}-{instance.key}.svg"
            target.write_bytes(self.engine.diagram(instance.id))
            written.append(target)
        return written

    def close(self) -> None:
        self.engine.close()

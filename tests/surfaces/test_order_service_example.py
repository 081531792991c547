"""The example order service (docs/examples/order_service), run in process against the
local Redis, on an SQLite file and on PostgreSQL: an order taken over HTTP is paid by an
event on the payments stream, its `async def` handlers run on the application's own loop,
and every state change reaches the changes stream in revision order. Without Redis these
tests skip, and in CI (CI=true) they fail.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from databases import in_ci
from fastapi.testclient import TestClient
from waiting import until

try:
    import redis
except ImportError:  # the turnout[redis] extra is not installed
    if in_ci():
        raise
    pytest.skip("redis-py is not installed (pip install 'turnout[redis]')", allow_module_level=True)

from docs.examples.order_service import Settings, create_app

REDIS_URL = os.environ.get("TURNOUT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
WAIT_SECONDS = 30
ORDER = {"item": "widget", "quantity": 2, "amount": 25.0, "address": "1 Harbour Road"}


@dataclass(frozen=True)
class Streams:
    """The streams of one test, named afresh so that tests never read each other's."""

    payments: str
    changes: str

    @property
    def dead(self) -> str:  # where the Redis source sets aside what cannot be applied
        return f"{self.payments}.dead"


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        client.close()
        if in_ci():
            pytest.fail(f"Redis is not running at {REDIS_URL}: {exc}")
        pytest.skip(f"Redis is not running at {REDIS_URL}")
    yield client
    client.close()


@pytest.fixture
def streams(redis_client: redis.Redis) -> Iterator[Streams]:
    tag = uuid.uuid4().hex[:10]
    names = Streams(f"test.payments.{tag}", f"test.order-changes.{tag}")
    yield names
    redis_client.delete(names.payments, names.changes, names.dead)


@pytest.fixture
def settings(store_url: str, streams: Streams) -> Settings:
    """The service's settings: an SQLite file, then a PostgreSQL schema; this test's streams."""
    return Settings(
        database=store_url,
        payments=f"{REDIS_URL}?stream={streams.payments}&group=order-service",
        changes=f"{REDIS_URL}?stream={streams.changes}",
    )


@pytest.fixture
def service(settings: Settings) -> Iterator[TestClient]:
    """The order service with its lifespan running: worker, consumer and relay started."""
    with TestClient(create_app(settings)) as client:
        yield client


def pay(client: redis.Redis, stream: str, order: str, amount: float, event_id: str) -> None:
    """What the payment provider's bridge appends: an event for the order, named by its id."""
    body = {
        "definition": "order",
        "key": order,
        "event": "paid",
        "data": {"payment_id": f"pay-{event_id}", "amount": amount},
    }
    client.xadd(stream, {"id": event_id, "body": json.dumps(body)})


def entries(client: redis.Redis, stream: str) -> list[dict[str, str]]:
    """The stream's entries' fields, oldest first."""
    return [
        {str(name): str(value) for name, value in (fields or {}).items()}
        for _, fields in client.xrange(stream) or []
    ]


def changes_of(client: redis.Redis, stream: str, instance: str) -> list[dict[str, Any]]:
    """The bodies of the changes of `instance` published so far, in stream order; each
    message's `id` field is checked to be its change's id."""
    found = []
    for fields in entries(client, stream):
        body = json.loads(fields["body"])
        assert fields["id"] == f"{body['instance_id']}.{body['revision']}"
        if body["instance_id"] == instance:
            found.append(body)
    return found


def state_of(service: TestClient) -> Any:
    """The application's state: its `engine` and its `shop`."""
    return service.app.state  # type: ignore[attr-defined]


def order_of(service: TestClient, order: str) -> dict[str, Any]:
    answer = service.get(f"/orders/{order}")
    assert answer.status_code == 200, answer.text
    shown: dict[str, Any] = answer.json()
    return shown


def test_a_paid_order_ships_and_its_changes_reach_the_stream_in_revision_order(
    service: TestClient, redis_client: redis.Redis, streams: Streams
) -> None:
    taken = service.post("/orders", json=ORDER)
    assert taken.status_code == 201, taken.text
    order = taken.json()
    assert (order["state"], order["status"]) == ("awaiting_payment", "running")

    pay(redis_client, streams.payments, order["id"], 10.0, "evt-short")  # too little
    pay(redis_client, streams.payments, order["id"], 25.0, "evt-full")
    pay(redis_client, streams.payments, order["id"], 25.0, "evt-full")  # delivered twice

    assert until(lambda: order_of(service, order["id"])["status"] != "running", WAIT_SECONDS)
    shipped = order_of(service, order["id"])
    assert (shipped["state"], shipped["status"]) == ("shipped", "succeeded"), shipped
    context = shipped["context"]
    assert context["payment"] == "pay-evt-full"
    assert context["reserved"] is True
    assert context["parcel"] == {"id": "PCL-00001", "items": 2}
    assert context["shipment"]["tracking"] == "FPC00000001"
    assert service.get("/stock").json()["widget"] == 8

    # Every handler ran on the loop the application made its lock, queue and client on.
    shop = state_of(service).shop
    ran = [(handled.task, handled.order) for handled in shop.handled]
    assert ran == [
        ("stock.reserve", order["id"]),
        ("warehouse.pack", order["id"]),
        ("carrier.book", order["id"]),
    ]
    assert all(handled.loop is shop.loop for handled in shop.handled)

    # The short payment matched no transition: set aside with the reason, not applied.
    dead = entries(redis_client, streams.dead)
    assert [letter["id"] for letter in dead] == ["evt-short"]
    assert "EventRejected" in dead[0]["reason"]
    # The full payment was applied once although delivered twice; all three acknowledged.
    history = state_of(service).engine.sync.history(order["instance"])
    assert [entry.event for entry in history].count("paid") == 1
    assert until(
        lambda: redis_client.xpending(streams.payments, "order-service")["pending"] == 0,
        WAIT_SECONDS,
    )

    # The relay published each revision once, in order, up to the end.
    assert until(
        lambda: any(
            change["to_state"] == "shipped"
            for change in changes_of(redis_client, streams.changes, order["instance"])
        ),
        WAIT_SECONDS,
    )
    published = changes_of(redis_client, streams.changes, order["instance"])
    revisions = [change["revision"] for change in published]
    assert revisions == sorted(set(revisions)), revisions
    assert revisions[-1] == shipped["revision"]
    states = [change["to_state"] for change in published]
    assert states == ["awaiting_payment", "reserving", "packing", "shipping", "shipped"]
    assert [change["event"] for change in published][1] == "paid"
    assert {change["key"] for change in published} == {order["id"]}


def test_a_waiting_order_can_be_cancelled_once_and_is_published_as_failed(
    service: TestClient, redis_client: redis.Redis, streams: Streams
) -> None:
    order = service.post("/orders", json=ORDER).json()
    cancelled = service.post(f"/orders/{order['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["state"], cancelled.json()["status"]) == ("cancelled", "failed")
    assert cancelled.json()["error"]["type"] == "OrderCancelled"
    again = service.post(f"/orders/{order['id']}/cancel")
    assert again.status_code == 409
    assert again.json()["error"] == "EventRejected"
    assert until(
        lambda: (
            [c["to_state"] for c in changes_of(redis_client, streams.changes, order["instance"])]
            == ["awaiting_payment", "cancelled"]
        ),
        WAIT_SECONDS,
    )
    assert state_of(service).shop.handled == []


def test_bad_requests_are_answered_with_4xx(service: TestClient) -> None:
    missing = service.get("/orders/ord-none")
    assert missing.status_code == 404
    assert missing.json()["error"] == "InstanceNotFound"
    assert service.post("/orders", json={**ORDER, "quantity": 0}).status_code == 422
    assert service.post("/orders", json={"item": "widget"}).status_code == 422
    assert service.post("/orders/ord-none/cancel").status_code == 404


def test_the_fake_carrier_books_once_per_idempotency_key(service: TestClient) -> None:
    booking = {"order": "ord-1", "address": "1 Harbour Road"}
    first = service.post("/carrier/shipments", json=booking, headers={"Idempotency-Key": "k1"})
    again = service.post("/carrier/shipments", json=booking, headers={"Idempotency-Key": "k1"})
    other = service.post("/carrier/shipments", json=booking, headers={"Idempotency-Key": "k2"})
    assert first.status_code == again.status_code == other.status_code == 201
    assert first.json() == again.json()
    assert other.json()["tracking"] != first.json()["tracking"]
    assert service.post("/carrier/shipments", json=booking).status_code == 422


def test_an_order_beyond_the_stock_ends_out_of_stock_and_takes_nothing(
    service: TestClient, redis_client: redis.Redis, streams: Streams
) -> None:
    order = service.post("/orders", json={**ORDER, "item": "gadget", "quantity": 4}).json()
    pay(redis_client, streams.payments, order["id"], 25.0, "evt-gadgets")
    assert until(lambda: order_of(service, order["id"])["status"] != "running", WAIT_SECONDS)
    ended = order_of(service, order["id"])
    assert (ended["state"], ended["status"]) == ("out_of_stock", "failed"), ended
    assert ended["error"]["type"] == "OutOfStock"
    assert ended["error"]["message"] == "not enough gadget in stock"
    assert service.get("/stock").json()["gadget"] == 3
    assert [handled.task for handled in state_of(service).shop.handled] == ["stock.reserve"]


def test_a_payment_sent_while_the_service_is_down_is_applied_when_it_comes_back(
    settings: Settings, redis_client: redis.Redis, streams: Streams
) -> None:
    with TestClient(create_app(settings)) as first:
        order = first.post("/orders", json=ORDER).json()
        assert until(
            lambda: len(changes_of(redis_client, streams.changes, order["instance"])) == 1,
            WAIT_SECONDS,
        )
    pay(redis_client, streams.payments, order["id"], 25.0, "evt-while-down")

    with TestClient(create_app(settings)) as second:
        assert until(lambda: order_of(second, order["id"])["status"] != "running", WAIT_SECONDS)
        assert order_of(second, order["id"])["state"] == "shipped"
        assert until(
            lambda: len(changes_of(redis_client, streams.changes, order["instance"])) == 5,
            WAIT_SECONDS,
        )
    # The relay went on from its cursor: the first change was not published again.
    published = changes_of(redis_client, streams.changes, order["instance"])
    assert [change["revision"] for change in published] == [1, 2, 3, 4, 5]

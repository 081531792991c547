"""The example shop (docs/examples/order_in_one_transaction) through FastAPI's TestClient, on
an SQLite file and on PostgreSQL: an order row and its workflow commit together or not at all."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from docs.examples.order_in_one_transaction import create_app
from engine import Engine

ORDER = {"number": "A-1", "item": "widget", "quantity": 2}


@pytest.fixture
def client(store_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(store_url)) as running:
        yield running


def workflows(client: TestClient) -> Engine:
    engine: Engine = client.app.state.workflows  # type: ignore[attr-defined]
    return engine


def count(client: TestClient, table: str) -> int:
    with workflows(client).store.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_an_order_and_its_workflow_are_created_in_one_transaction(client: TestClient) -> None:
    taken = client.post("/orders", json=ORDER)
    assert taken.status_code == 201, taken.text
    assert taken.json()["state"] == "awaiting_payment"
    shown = client.get("/orders/A-1").json()
    assert shown["workflow_id"] == taken.json()["workflow"]
    assert shown["state"] == "awaiting_payment"


def test_an_order_that_cannot_be_stored_leaves_no_workflow(client: TestClient) -> None:
    assert client.post("/orders", json=ORDER).status_code == 201
    tables = ("turnout_instances", "turnout_history", "turnout_changes", "turnout_timers")
    before = {table: count(client, table) for table in tables}
    again = client.post("/orders", json={**ORDER, "item": "gadget"})
    assert again.status_code == 409
    assert "exists already" in again.json()["detail"]
    assert {table: count(client, table) for table in tables} == before
    assert len(workflows(client).instances(definition="checkout")) == 1


def test_a_payment_is_recorded_and_applied_once_then_the_workflow_runs(
    client: TestClient,
) -> None:
    client.post("/orders", json=ORDER)
    paid = client.post("/orders/A-1/payment", json={"payment_id": "pay-1"})
    assert paid.status_code == 200, paid.text
    assert paid.json()["state"] == "reserving"
    twice = client.post("/orders/A-1/payment", json={"payment_id": "pay-1"})
    assert twice.json()["revision"] == paid.json()["revision"]  # the same payment: once
    other = client.post("/orders/A-1/payment", json={"payment_id": "pay-2"})
    assert other.status_code == 409
    assert workflows(client).run_until_idle() == 1
    shown = client.get("/orders/A-1").json()
    assert (shown["payment_id"], shown["state"], shown["status"]) == (
        "pay-1",
        "reserved",
        "succeeded",
    )
    assert client.post("/orders/B-9/payment", json={"payment_id": "p"}).status_code == 404
    assert client.post("/orders", json={**ORDER, "quantity": 0}).status_code == 422

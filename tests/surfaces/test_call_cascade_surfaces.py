"""A parent and its children as users see them: over HTTP (the application in-process,
`TestClient`, on SQLite and PostgreSQL) listing by parent, cancelling a parent cancels its
running children, and the dashboard's instance pages link both ways, before and after; the
same cancel and list with `turnout`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from turnout_processes import run_turnout

from engine import Engine
from engine.api.app import create_app

DEFINITIONS = Path(__file__).parent / "definitions"


@pytest.fixture
def client(store_url: str) -> Iterator[TestClient]:
    """The HTTP API over an Engine on an empty database with the caller and callee."""
    engine = Engine(store_url)
    try:
        for name in ("call_callee", "call_caller"):
            engine.deploy(DEFINITIONS / f"{name}.yaml")
        with TestClient(create_app(engine), raise_server_exceptions=False) as test_client:
            yield test_client
    finally:
        engine.close()


def _started(client: TestClient) -> tuple[str, str]:
    """A new caller and the child its call state started: (parent id, child id)."""
    answer = client.post("/api/instances", json={"definition": "surface_call_caller"})
    assert answer.status_code == 201, answer.text
    parent = str(answer.json()["id"])
    (child,) = client.get(f"/api/instances/{parent}").json()["children"]
    return parent, str(child)


def _listed(client: TestClient, **params: str) -> list[str]:
    answer = client.get("/api/instances", params=params)
    assert answer.status_code == 200, answer.text
    return [item["id"] for item in answer.json()["items"]]


def test_cancelling_a_parent_over_http_cancels_its_child_and_lists_stay_linked(
    client: TestClient,
) -> None:
    parent, child = _started(client)
    other, _ = _started(client)
    assert _listed(client, parent=parent) == [child]
    assert _listed(client, parent=child) == []
    assert _listed(client, parent="0" * 32) == []
    cancelled = client.post(f"/api/instances/{parent}/cancel", json={"reason": "done with it"})
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
    shown = client.get(f"/api/instances/{child}").json()
    assert (shown["status"], shown["parent"]) == ("cancelled", parent)
    last = client.get(f"/api/instances/{child}/history").json()[-1]
    assert last["kind"] == "cancel"
    assert last["data"]["reason"] == f"its calling instance {parent} ended (cancelled)"
    assert _listed(client, parent=parent, status="cancelled") == [child]
    assert _listed(client, parent=parent, status="running") == []
    assert client.get(f"/api/instances/{other}").json()["status"] == "running"


def test_a_parent_filter_the_database_cannot_hold_is_a_clear_answer_not_a_500(
    client: TestClient,
) -> None:
    answer = client.get("/api/instances", params={"parent": "a\x00b"})
    assert answer.status_code in (200, 422)  # PostgreSQL text cannot hold NUL: 422
    if answer.status_code == 422:
        assert "NUL" in answer.json()["message"]
    else:
        assert answer.json()["items"] == []


def test_the_dashboard_pages_of_a_cancelled_parent_and_child_link_each_other(
    client: TestClient,
) -> None:
    parent, child = _started(client)
    client.post(f"/api/instances/{parent}/cancel", json={})
    parent_page = client.get(f"/instances/{parent}")
    child_page = client.get(f"/instances/{child}")
    assert (parent_page.status_code, child_page.status_code) == (200, 200)
    assert f'href="/instances/{child}"' in parent_page.text
    assert f'href="/instances/{parent}"' in child_page.text
    assert "cancelled" in child_page.text


def test_turnout_cancel_on_a_parent_cancels_its_child_and_list_shows_it(sqlite_db: str) -> None:
    files = [str(DEFINITIONS / f"{name}.yaml") for name in ("call_callee", "call_caller")]
    assert run_turnout("deploy", *files, database=sqlite_db).returncode == 0
    started = run_turnout("start", "surface_call_caller", "--json", database=sqlite_db)
    parent = json.loads(started.stdout)["id"]
    cancelled = run_turnout("cancel", parent, "--json", database=sqlite_db)
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["status"] == "cancelled"
    listed = run_turnout("list", "--parent", parent, "--json", database=sqlite_db)
    assert [(item["parent"], item["status"]) for item in json.loads(listed.stdout)] == [
        (parent, "cancelled")
    ]

"""The API token: with TURNOUT_API_TOKEN set, `/api` answers only `Authorization: Bearer <token>`.

Also the dashboard's sign-in form and the cookie it sets.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from turnout_processes import (
    Server,
    definition_text,
    running_server,
)

TOKEN = "s3cret-token-for-tests"
DUMMY_ROUTES = [
    ("GET", "/api/definitions", None),
    ("POST", "/api/definitions", "name: x\n"),
    ("GET", "/api/definitions/surface_door", None),
    ("GET", "/api/definitions/surface_door/diagram.svg", None),
    ("GET", "/api/definitions/surface_door/diagram.svg?heat=1", None),
    ("POST", "/api/instances", {"definition": "surface_door"}),
    ("GET", "/api/instances", None),
    ("GET", "/api/instances/some-id", None),
    ("GET", "/api/instances/some-id/history", None),
    ("GET", "/api/instances/some-id/diagram.svg", None),
    ("POST", "/api/instances/some-id/events", {"event": "open"}),
    ("POST", "/api/events:batch", [{"id": "some-id", "event": "open"}]),
    ("POST", "/api/instances/some-id/cancel", None),
    ("POST", "/api/instances/some-id/redrive", None),
    ("POST", "/api/instances/some-id/reset", {"to_state": "opened", "reason": "r"}),
    ("POST", "/api/instances:redrive", {"definition": "surface_door"}),
    ("POST", "/api/tasks/claim", {"tasks": ["review.check"], "worker": "w"}),
    ("POST", "/api/tasks/some-task/complete", {"worker": "w", "result": 1}),
    ("POST", "/api/tasks/some-task/fail", {"worker": "w"}),
    ("POST", "/api/tasks/some-task/heartbeat", {"worker": "w"}),
    ("POST", "/api/definitions/surface_door/migrations:plan", {"from": 1}),
    ("POST", "/api/definitions/surface_door/migrations:apply", {"from": 1}),
    ("GET", "/api/schedules", None),
    ("POST", "/api/schedules", {"name": "s", "definition": "surface_door", "every": 60}),
    ("GET", "/api/schedules/s", None),
    ("DELETE", "/api/schedules/s", None),
    ("POST", "/api/schedules/s/pause", None),
    ("POST", "/api/schedules/s/resume", None),
]


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A `turnout serve` with TURNOUT_API_TOKEN set, on an SQLite file."""
    workdir = tmp_path_factory.mktemp("serve-token")
    with running_server(f"sqlite:///{workdir}/turnout.db", workdir, token=TOKEN) as server:
        yield server


def call(client: httpx.Client, method: str, path: str, body: Any) -> httpx.Response:
    if isinstance(body, str):
        return client.request(method, path, content=body)
    return client.request(method, path, json=body)


@pytest.mark.parametrize("token", [None, "wrong-token"], ids=["no-token", "wrong-token"])
def test_every_api_call_without_the_right_bearer_token_is_401(
    guarded: Server, token: str | None
) -> None:
    with httpx.Client(base_url=guarded.base_url, timeout=30) as client:
        if token is not None:
            client.headers["Authorization"] = f"Bearer {token}"
        for method, path, body in DUMMY_ROUTES:
            answer = call(client, method, path, body)
            assert answer.status_code == 401, f"{method} {path}: {answer.status_code}"
            assert answer.json()["error"] == "Unauthorized"
            assert answer.headers["www-authenticate"] == "Bearer"


def test_with_the_bearer_token_every_api_call_is_answered(guarded: Server) -> None:
    with guarded.client() as api:
        assert api.post("/api/definitions", content=definition_text("door.yaml")).status_code == 201
        assert api.post("/api/definitions", content=definition_text("review.yaml")).status_code in (
            200,
            201,
        )
        for path in (
            "/api/definitions",
            "/api/definitions/surface_door",
            "/api/definitions/surface_door/diagram.svg?heat=1",
        ):
            assert api.get(path).status_code == 200, path
        door = api.post("/api/instances", json={"definition": "surface_door"})
        assert door.status_code == 201
        ident = door.json()["id"]
        for path in (
            "/api/instances",
            f"/api/instances/{ident}",
            f"/api/instances/{ident}/history",
            f"/api/instances/{ident}/diagram.svg",
        ):
            assert api.get(path).status_code == 200, path
        assert api.post(f"/api/instances/{ident}/events", json={"event": "open"}).status_code == 200
        assert api.post(f"/api/instances/{ident}/cancel").status_code == 200
        for ending in ("complete", "fail"):
            api.post("/api/instances", json={"definition": "surface_review", "data": {"amount": 1}})
            claimed = api.post("/api/tasks/claim", json={"tasks": ["review.check"], "worker": "w"})
            assert claimed.status_code == 200
            (task,) = claimed.json()
            beat = api.post(f"/api/tasks/{task['id']}/heartbeat", json={"worker": "w"})
            assert beat.status_code == 200
            answered = api.post(f"/api/tasks/{task['id']}/{ending}", json={"worker": "w"})
            assert answered.status_code == 200 and answered.json() == {"applied": True}


def test_health_and_the_openapi_description_need_no_token(guarded: Server) -> None:
    with httpx.Client(base_url=guarded.base_url, timeout=30) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/openapi.json").status_code == 200


def test_the_dashboard_asks_for_the_token_and_its_cookie_opens_pages_and_the_api(
    guarded: Server,
) -> None:
    with httpx.Client(base_url=guarded.base_url, timeout=30) as browser:
        locked = browser.get("/instances")
        assert locked.status_code == 303
        assert locked.headers["location"] == "/login?next=/instances"
        wrong = browser.post("/login", data={"token": "guess", "next": "/instances"})
        assert wrong.status_code == 200 and "not the right one" in wrong.text
        assert "turnout_token" not in browser.cookies
        signed_in = browser.post("/login", data={"token": TOKEN, "next": "/instances"})
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/instances"
        assert browser.get("/instances").status_code == 200
        assert browser.get("/api/definitions").status_code == 200
        away = browser.post("/login", data={"token": TOKEN, "next": "//elsewhere.example/"})
        assert away.headers["location"] == "/"
        sideways = browser.post("/login", data={"token": TOKEN, "next": "/\\elsewhere.example/"})
        assert not sideways.headers["location"].startswith(("//", "/\\"))

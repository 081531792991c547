"""The HTTP API of SPEC 6 against a real `turnout serve` process, on SQLite and on PostgreSQL.

One server per database serves the whole module; each test deploys its own copy of a
definition (a fresh name), so tests do not see each other's instances. The task routes that
external workers use are tested in test_http_workers.py.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from http_calls import send, start
from turnout_processes import INSTANCE_KEYS as CLI_INSTANCE_KEYS
from turnout_processes import Server, definition_text, svg_classes, unique

INSTANCE_KEYS = CLI_INSTANCE_KEYS | {"allowed"}


# -- health, definitions -----------------------------------------------------------------------
def test_healthz_says_the_server_and_its_database_answer(api: httpx.Client) -> None:
    answer = api.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "database": "ok"}


def test_deploying_yaml_is_201_then_200_unchanged_for_the_same_content(api: httpx.Client) -> None:
    text = definition_text("deploy_once.yaml")
    first = api.post("/api/definitions", content=text, headers={"content-type": "application/yaml"})
    assert first.status_code == 201, first.text
    assert first.json() | {"digest": None} == {
        "name": "surface_deploy_once",
        "version": 1,
        "created": True,
        "digest": None,
    }
    relaid = "# the same definition, other comments\n" + text
    again = api.post("/api/definitions", content=relaid)
    assert again.status_code == 200, again.text
    assert again.json() == first.json() | {"created": False}
    listed = api.get("/api/definitions").json()
    versions = [{"name": item["name"], "version": item["version"]} for item in listed]
    assert {"name": "surface_deploy_once", "version": 1} in versions


def test_changed_content_under_a_deployed_name_is_the_next_version(api: httpx.Client) -> None:
    name = unique("versions")
    first = api.post("/api/definitions", content=definition_text("door.yaml", name)).json()
    changed = definition_text("door.yaml", name).replace("A door that", "A changed door that")
    second = api.post("/api/definitions", content=changed)
    assert second.status_code == 201
    assert second.json()["version"] == first["version"] + 1 == 2
    pinned = changed.replace(f"name: {name}\n", f"name: {name}\nversion: 1\n")
    refused = api.post("/api/definitions", content=pinned)
    assert refused.status_code == 422
    assert "version 1" in refused.json()["problems"][0]["message"]
    assert api.get(f"/api/definitions/{name}").json()["version"] == 2


def test_a_definition_reads_back_with_its_source_states_events_and_counts(
    api: httpx.Client, door: str
) -> None:
    start(api, door)
    answer = api.get(f"/api/definitions/{door}")
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {
        "name",
        "version",
        "description",
        "source",
        "states",
        "events",
        "tasks",
        "counts",
        "retention",
    }
    assert body["name"] == door and body["version"] == 1
    assert body["retention"] is None
    assert body["states"] == ["closed", "opened", "locked", "retired"]
    assert set(body["events"]) == {"open", "close", "lock", "unlock", "retire"}
    assert body["counts"] == {"closed": 1}
    assert f"name: {door}" in body["source"]


def test_an_invalid_definition_is_422_with_every_problem_and_its_line(api: httpx.Client) -> None:
    answer = api.post("/api/definitions", content=definition_text("invalid.yaml"))
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"] == "DefinitionError"
    found = {(p["line"], p["column"]) for p in body["problems"]}
    assert found == {(7, 15), (8, 5)}
    assert any("did you mean 'after'" in p["message"] for p in body["problems"])
    malformed = api.post("/api/definitions", content="name: [unclosed\n")
    assert malformed.status_code == 422
    assert malformed.json()["problems"][0]["line"] >= 1
    binary = api.post("/api/definitions", content=b"\xff\xfe\x00")
    assert binary.status_code == 422


def test_unknown_definition_is_404_for_reading_drawing_and_starting(api: httpx.Client) -> None:
    for answer in (
        api.get("/api/definitions/no_such_definition"),
        api.get("/api/definitions/no_such_definition/diagram.svg"),
        api.post("/api/instances", json={"definition": "no_such_definition"}),
    ):
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"] == "DefinitionNotFound"


def test_definition_diagram_is_svg_and_the_heat_map_counts_instances(
    api: httpx.Client, door: str
) -> None:
    plain = api.get(f"/api/definitions/{door}/diagram.svg")
    assert plain.status_code == 200
    assert plain.headers["content-type"].startswith("image/svg+xml")
    nodes = svg_classes(plain.content)
    assert {"state-closed", "state-opened", "state-locked", "state-retired"} <= set(nodes)
    for _ in range(2):
        start(api, door)
    heat = api.get(f"/api/definitions/{door}/diagram.svg", params={"heat": 1})
    assert heat.status_code == 200
    assert "heat" in svg_classes(heat.content)["state-closed"]
    assert "heat" not in svg_classes(heat.content)["state-opened"]
    assert "2 instances here" in heat.text


# -- instances ---------------------------------------------------------------------------------
def test_start_is_201_with_the_instance_and_the_events_it_accepts(
    api: httpx.Client, door: str
) -> None:
    instance = start(api, door, {"room": "hall"}, key=unique("hall"))
    assert set(instance) == INSTANCE_KEYS
    assert instance["state"] == "closed" and instance["status"] == "running"
    assert instance["context"] == {"room": "hall"} and instance["revision"] == 1
    assert instance["allowed"] == ["open", "lock"]
    assert api.get(f"/api/instances/{instance['id']}").json() == instance


def test_start_with_a_business_key_in_use_is_409(api: httpx.Client, door: str) -> None:
    key = unique("order")
    start(api, door, key=key)
    again = api.post("/api/instances", json={"definition": door, "key": key})
    assert again.status_code == 409
    assert again.json()["error"] == "DuplicateKey" and key in again.json()["message"]


def test_start_with_a_body_that_is_not_a_start_request_is_422(api: httpx.Client, door: str) -> None:
    for body in ({"data": {}}, {"definition": door, "data": [1, 2]}):
        answer = api.post("/api/instances", json=body)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"] == "InvalidInput"
    broken = api.post(
        "/api/instances", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422


def test_start_with_data_the_input_schema_refuses_is_422_and_starts_nothing(
    api: httpx.Client, review: tuple[str, str]
) -> None:
    name, _ = review
    refused = api.post("/api/instances", json={"definition": name, "data": {"amount": "lots"}})
    assert refused.status_code == 422
    assert refused.json()["error"] == "InvalidInput"
    assert any("amount" in str(problem) for problem in refused.json()["problems"])
    assert api.get("/api/instances", params={"definition": name}).json()["items"] == []


def test_listing_pages_with_limit_and_next_cursor_oldest_first(
    api: httpx.Client, door: str
) -> None:
    started = [start(api, door, {"n": n})["id"] for n in range(5)]
    seen, cursor, pages = [], None, 0
    while True:
        params: dict[str, Any] = {"definition": door, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/api/instances", params=params)
        assert page.status_code == 200
        body = page.json()
        assert set(body) == {"items", "next_cursor"} and len(body["items"]) <= 2
        seen += [item["id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == started and pages == 3
    bad = api.get("/api/instances", params={"cursor": "not-a-cursor!"})
    assert bad.status_code == 422
    too_big = api.get("/api/instances", params={"limit": 100_000})
    assert too_big.status_code == 422


def test_listing_filters_by_state_status_and_key(api: httpx.Client, door: str) -> None:
    key = unique("front")
    opened = start(api, door, key=key)
    closed = start(api, door)
    assert send(api, opened["id"], "open").status_code == 200

    def ids(**filters: str) -> list[str]:
        answer = api.get("/api/instances", params={"definition": door, **filters})
        assert answer.status_code == 200
        return [i["id"] for i in answer.json()["items"]]

    assert ids(state="opened") == [opened["id"]]
    assert ids(state="closed") == [closed["id"]]
    assert ids(status="running") == [opened["id"], closed["id"]]
    assert ids(status="succeeded") == []
    assert ids(key=key) == [opened["id"]]


def test_an_event_moves_the_instance_and_is_recorded_in_its_history(
    api: httpx.Client, door: str
) -> None:
    instance = start(api, door)
    moved = send(api, instance["id"], "open", data={"by": "ana"})
    assert moved.status_code == 200
    body = moved.json()
    assert body["state"] == "opened" and body["allowed"] == ["close"]
    assert body["revision"] > instance["revision"]
    history = api.get(f"/api/instances/{instance['id']}/history")
    assert history.status_code == 200
    entries = history.json()
    fields = {"seq", "at", "kind", "event", "from_state", "to_state", "data"}
    assert all(set(entry) == fields for entry in entries)
    assert [(e["seq"], e["kind"], e["event"], e["from_state"], e["to_state"]) for e in entries] == [
        (1, "start", None, None, "closed"),
        (2, "event", "open", "closed", "opened"),
    ]
    assert entries[1]["data"] == {"by": "ana"}


def test_an_event_sent_twice_with_one_idempotency_key_is_applied_once(
    api: httpx.Client, door: str
) -> None:
    instance = start(api, door)
    first = send(api, instance["id"], "open", idempotency_key="msg-1").json()
    again = send(api, instance["id"], "open", idempotency_key="msg-1")
    assert again.status_code == 200
    assert again.json()["state"] == "opened" and again.json()["revision"] == first["revision"]


def test_events_sent_at_once_from_many_clients_are_each_applied_exactly_once(
    server: Server, api: httpx.Client
) -> None:
    name = unique("counter")
    assert api.post("/api/definitions", content=definition_text("counter.yaml", name)).is_success
    instance = start(api, name)
    url = f"/api/instances/{instance['id']}/events"

    def bump_ten_times(_: int) -> list[int]:
        with server.client() as client:
            return [client.post(url, json={"event": "bump"}).status_code for _ in range(10)]

    with ThreadPoolExecutor(max_workers=5) as pool:
        statuses = [status for batch in pool.map(bump_ten_times, range(5)) for status in batch]
    assert statuses == [200] * 50
    after = api.get(f"/api/instances/{instance['id']}").json()
    assert after["context"] == {"count": 50} and after["revision"] == 51
    seqs = [e["seq"] for e in api.get(f"/api/instances/{instance['id']}/history").json()]
    assert seqs == list(range(1, 52))


def test_a_rejected_event_is_409_with_the_allowed_events_and_changes_nothing(
    api: httpx.Client, door: str
) -> None:
    instance = start(api, door)
    rejected = send(api, instance["id"], "close")
    assert rejected.status_code == 409
    body = rejected.json()
    assert body["error"] == "EventRejected"
    assert body["state"] == "closed" and body["event"] == "close"
    assert body["allowed"] == ["open", "lock"]
    assert api.get(f"/api/instances/{instance['id']}").json()["revision"] == instance["revision"]


def test_unknown_instance_is_404_on_every_instance_route(api: httpx.Client) -> None:
    for answer in (
        api.get("/api/instances/no-such-id"),
        api.get("/api/instances/no-such-id/history"),
        api.get("/api/instances/no-such-id/diagram.svg"),
        api.post("/api/instances/no-such-id/events", json={"event": "open"}),
        api.post("/api/instances/no-such-id/cancel"),
    ):
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"] == "InstanceNotFound"
        assert "no-such-id" in answer.json()["message"]


def test_an_event_with_a_bad_body_is_422(api: httpx.Client, door: str) -> None:
    instance = start(api, door)
    url = f"/api/instances/{instance['id']}/events"
    for answer in (
        api.post(url, json={"data": {}}),
        api.post(url, json={"event": ""}),
        api.post(url, json=["open"]),
        api.post(url, content=b"open", headers={"content-type": "application/json"}),
    ):
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"] == "InvalidInput"


def test_instance_diagram_marks_the_current_state_and_the_path_taken(
    api: httpx.Client, door: str
) -> None:
    instance = start(api, door)
    send(api, instance["id"], "lock")
    answer = api.get(f"/api/instances/{instance['id']}/diagram.svg")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("image/svg+xml")
    nodes = svg_classes(answer.content)
    assert "active" in nodes["state-locked"]
    assert "active" not in nodes["state-closed"] and "visited" in nodes["state-closed"]
    assert "active" not in nodes["state-opened"] and "visited" not in nodes["state-opened"]


def test_cancel_ends_the_instance_and_later_events_are_409(api: httpx.Client, door: str) -> None:
    instance = start(api, door)
    cancelled = api.post(f"/api/instances/{instance['id']}/cancel", json={"reason": "moved out"})
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["allowed"] == []
    late = send(api, instance["id"], "open")
    assert late.status_code == 409 and late.json()["allowed"] == []
    kinds = [e["kind"] for e in api.get(f"/api/instances/{instance['id']}/history").json()]
    assert kinds[-1] == "cancel"
    bodiless = api.post(f"/api/instances/{start(api, door)['id']}/cancel")
    assert bodiless.status_code == 200 and bodiless.json()["status"] == "cancelled"


def test_changes_a_browser_says_come_from_another_site_are_403_and_reads_are_not(
    api: httpx.Client, door: str
) -> None:
    instance = start(api, door)
    url = f"/api/instances/{instance['id']}"
    other_site = {"Sec-Fetch-Site": "cross-site"}
    refused = api.post(f"{url}/cancel", headers=other_site)
    assert refused.status_code == 403 and refused.json()["error"] == "Forbidden"
    assert api.post(f"{url}/events", json={"event": "open"}, headers=other_site).status_code == 403
    assert api.get(url, headers=other_site).status_code == 200
    own_page = {"Sec-Fetch-Site": "same-origin"}
    assert api.post(f"{url}/events", json={"event": "open"}, headers=own_page).status_code == 200


def test_openapi_describes_every_route(api: httpx.Client) -> None:
    answer = api.get("/openapi.json")
    assert answer.status_code == 200
    paths = answer.json()["paths"]
    expected = {
        "/api/definitions": {"get", "post"},
        "/api/definitions/{name}": {"get"},
        "/api/definitions/{name}/diagram.svg": {"get"},
        "/api/instances": {"get", "post"},
        "/api/instances/{instance_id}": {"get"},
        "/api/instances/{instance_id}/history": {"get"},
        "/api/instances/{instance_id}/pending": {"get"},
        "/api/instances/{instance_id}/diagram.svg": {"get"},
        "/api/instances/{instance_id}/events": {"post"},
        "/api/instances/{instance_id}/cancel": {"post"},
        "/api/tasks/claim": {"post"},
        "/api/tasks/{task_id}/complete": {"post"},
        "/api/tasks/{task_id}/fail": {"post"},
        "/api/tasks/{task_id}/heartbeat": {"post"},
        "/api/schedules": {"get", "post"},
        "/api/schedules/{name}": {"get", "delete"},
        "/api/schedules/{name}/pause": {"post"},
        "/api/schedules/{name}/resume": {"post"},
        "/healthz": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), path


def test_the_server_stops_cleanly_on_interrupt(server: Server) -> None:
    """Last in the module: the server it shares is stopped here, as Ctrl-C would.

    Nothing the module sent made the server log a traceback (no user mistake was a 500).
    """
    assert server.stop() == 0
    log = server.log.read_text()
    assert "Traceback" not in log and "Internal Server Error" not in log, log

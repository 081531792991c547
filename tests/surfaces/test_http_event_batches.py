"""`POST /api/events:batch`: a list of events sent in order, an outcome for each; a malformed
body is a 422 that sends nothing, too many events a 413."""

from __future__ import annotations

from typing import Any

import httpx
from turnout_processes import unique


def _start(api: httpx.Client, definition: str, **extra: Any) -> str:
    answer = api.post("/api/instances", json={"definition": definition, **extra})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def test_a_batch_answers_each_event_in_order(api: httpx.Client, door: str) -> None:
    front = _start(api, door)
    key = unique("back")
    back = _start(api, door, key=key)
    answer = api.post(
        "/api/events:batch",
        json=[
            {"id": front, "event": "open", "idempotency_key": "k-1"},
            {"id": front, "event": "open", "idempotency_key": "k-1"},
            {"definition": door, "key": key, "event": "lock"},
            {"id": back, "event": "open"},
            {"id": "no-such-door", "event": "open"},
            {"id": front, "event": "close", "data": {"not": "storable\u0000"}},
            {"id": front, "event": "close", "data": {"by": "ana"}},
        ],
    )
    assert answer.status_code == 200, answer.text
    found = answer.json()
    outcomes = found["outcomes"]
    assert [(o["index"], o["outcome"]) for o in outcomes] == [
        (0, "applied"),
        (1, "duplicate"),
        (2, "applied"),
        (3, "rejected"),
        (4, "not_found"),
        (5, "invalid"),
        (6, "applied"),
    ]
    assert found["counts"] == {
        "applied": 3,
        "duplicate": 1,
        "rejected": 1,
        "not_found": 1,
        "invalid": 1,
    }
    assert outcomes[0]["instance"]["state"] == "opened"
    assert outcomes[0]["instance"]["allowed"] == ["close"]
    assert outcomes[3]["allowed"] == ["unlock", "retire"]
    assert outcomes[3]["instance"]["state"] == "locked"
    assert "no-such-door" in outcomes[4]["message"] and outcomes[4]["instance"] is None
    assert outcomes[6]["instance"]["state"] == "closed"
    assert api.get(f"/api/instances/{back}").json()["state"] == "locked"


def test_a_malformed_body_is_a_422_and_sends_nothing(api: httpx.Client, door: str) -> None:
    door_id = _start(api, door)
    bodies: list[Any] = [
        {"id": door_id, "event": "open"},  # not a list
        [{"id": door_id, "event": "open"}, {"id": door_id}],
        [{"id": door_id, "event": "open"}, {"event": "open"}],
        [{"id": door_id, "event": "open"}, {"id": door_id, "key": "k", "event": "open"}],
        [{"id": door_id, "event": "open"}, {"definition": door, "event": "open"}],
        [{"id": door_id, "event": "open", "colour": "red"}],
    ]
    for body in bodies:
        answer = api.post("/api/events:batch", json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["error"] == "InvalidInput"
    answer = api.post(
        "/api/events:batch", content=b"[{not json", headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422
    assert api.get(f"/api/instances/{door_id}").json()["revision"] == 1
    empty = api.post("/api/events:batch", json=[])
    assert empty.status_code == 200 and empty.json() == {"outcomes": [], "counts": {}}


def test_more_events_than_a_request_may_carry_is_a_413(api: httpx.Client, door: str) -> None:
    door_id = _start(api, door)
    answer = api.post("/api/events:batch", json=[{"id": door_id, "event": "open"}] * 1001)
    assert answer.status_code == 413
    assert answer.json()["error"] == "PayloadTooLarge"
    assert "at most 1000 events" in answer.json()["message"]
    assert api.get(f"/api/instances/{door_id}").json()["revision"] == 1

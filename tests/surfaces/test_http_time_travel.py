"""Time travel over HTTP against a real `turnout serve`, on SQLite and on PostgreSQL: an
instance `?at=` an entry of its history, its diagram then, and the timeline a step-through
reads; `at` outside the history is a 422, a history that no longer replays a 409."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from http_calls import send, start
from turnout_processes import Server, definition_text, svg_classes, unique

STEPS = (("book", {"seats": 2}), ("change", {"seats": 3}), ("board", {"gate": "B4"}))
# What `?at=` returns besides the instance's own fields: nothing of now.
NOT_KEPT = {"allowed", "last_error", "children"}


@pytest.fixture
def trip(api: httpx.Client) -> tuple[str, list[dict[str, Any]]]:
    """An instance of a fresh `trip.yaml` moved by STEPS: its id, and the instance as the
    API answered after its start and after each step."""
    name = unique("trip")
    assert api.post("/api/definitions", content=definition_text("trip.yaml", name)).is_success
    seen = [start(api, name, {"traveller": "ana"})]
    for event, data in STEPS:
        answer = send(api, seen[0]["id"], event, data=data)
        assert answer.status_code == 200, answer.text
        seen.append(answer.json())
    return seen[0]["id"], seen


def active(svg: bytes) -> set[str]:
    """The states an instance diagram marks active."""
    return {
        name.removeprefix("state-")
        for name, classes in svg_classes(svg).items()
        if name.startswith("state-") and "active" in classes
    }


def test_an_instance_at_each_entry_is_what_the_api_answered_when_it_committed(
    api: httpx.Client, trip: tuple[str, list[dict[str, Any]]]
) -> None:
    instance_id, seen = trip
    for seq, answered in enumerate(seen, 1):
        then = api.get(f"/api/instances/{instance_id}", params={"at": seq})
        assert then.status_code == 200, then.text
        body = then.json()
        assert body["allowed"] is None
        assert {key: body[key] for key in body if key not in NOT_KEPT} == {
            key: answered[key] for key in answered if key not in NOT_KEPT
        }
    assert seen[1]["context"] == {"traveller": "ana", "seats": 2}
    assert api.get(f"/api/instances/{instance_id}").json()["allowed"] == ["arrive"]


def test_the_diagram_at_an_entry_marks_the_state_active_then(
    api: httpx.Client, trip: tuple[str, list[dict[str, Any]]]
) -> None:
    instance_id, _ = trip
    drawn = {}
    for at in (1, 2, 3, 4):
        answer = api.get(f"/api/instances/{instance_id}/diagram.svg", params={"at": at})
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "image/svg+xml"
        drawn[at] = answer.content
    now = api.get(f"/api/instances/{instance_id}/diagram.svg").content
    assert [active(drawn[at]) for at in (1, 2, 3, 4)] == [
        {"planning"},
        {"booked"},
        {"booked"},
        {"travelling"},
    ]
    assert drawn[4] == now and drawn[2] != drawn[3]  # the change of seats is on the path


def test_the_timeline_lists_each_commit_with_its_context_changes(
    api: httpx.Client, trip: tuple[str, list[dict[str, Any]]]
) -> None:
    instance_id, seen = trip
    answer = api.get(f"/api/instances/{instance_id}/timeline")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["instance"], body["entries"], body["complete"]) == (instance_id, 4, True)
    assert body["divergence"] is None
    points = body["points"]
    assert [(p["first"], p["last"], p["revision"]) for p in points] == [
        (seq, seq, seq) for seq in (1, 2, 3, 4)
    ]
    assert [(p["state"], p["active"], p["status"]) for p in points] == [
        ("planning", ["planning"], "running"),
        ("booked", ["booked"], "running"),
        ("booked", ["booked"], "running"),
        ("travelling", ["travelling"], "running"),
    ]
    assert [p["at"] for p in points] == [instance["updated_at"] for instance in seen]
    assert [p["version"] for p in points] == [1, 1, 1, 1]
    assert [p["context"] for p in points] == [
        {"added": {"traveller": "ana"}, "removed": {}, "changed": {}},
        {"added": {"seats": 2}, "removed": {}, "changed": {}},
        {"added": {}, "removed": {}, "changed": {"seats": {"old": 2, "new": 3}}},
        {"added": {"gate": "B4"}, "removed": {}, "changed": {}},
    ]


def test_a_commit_of_several_entries_is_one_point_whichever_of_them_at_names(
    api: httpx.Client,
) -> None:
    """The pack task's answer ends its region, which ends the parallel state, which moves
    the instance on: one transaction, several entries."""
    name, task = unique("shipment"), unique("pack")
    text = definition_text("shipment.yaml", name).replace("shipment.pack", task)
    assert api.post("/api/definitions", content=text).status_code == 201
    instance = start(api, name)
    assert send(api, instance["id"], "printed").status_code == 200
    (claimed,) = api.post("/api/tasks/claim", json={"tasks": [task], "worker": "w1"}).json()
    done = {"worker": "w1", "result": {"parcel": 7}}
    assert api.post(f"/api/tasks/{claimed['id']}/complete", json=done).json()["applied"] is True
    history = api.get(f"/api/instances/{instance['id']}/history").json()
    points = api.get(f"/api/instances/{instance['id']}/timeline").json()["points"]
    assert [p["status"] for p in points] == ["running", "running", "succeeded"]
    answered = points[-1]
    assert answered["last"] == history[-1]["seq"] and answered["first"] < answered["last"]
    assert answered["state"] == "shipped"
    both = [
        api.get(f"/api/instances/{instance['id']}", params={"at": seq}).json()
        for seq in range(answered["first"], answered["last"] + 1)
    ]
    assert all(then == both[0] for then in both) and both[0]["status"] == "succeeded"
    assert both[0] | {"allowed": None} == api.get(f"/api/instances/{instance['id']}").json() | {
        "allowed": None
    }


@pytest.mark.parametrize("at", ["0", "-1", "two", "1.5", "5", str(10**30)])
def test_at_outside_the_history_or_not_a_whole_number_is_422_with_a_json_error(
    api: httpx.Client, trip: tuple[str, list[dict[str, Any]]], at: str
) -> None:
    instance_id, _ = trip
    for path in (f"/api/instances/{instance_id}", f"/api/instances/{instance_id}/diagram.svg"):
        answer = api.get(path, params={"at": at})
        assert answer.status_code == 422, (path, answer.text)
        assert answer.json()["error"] == "InvalidInput"
        assert "at" in answer.json()["message"]


def test_an_unknown_instance_has_no_timeline(api: httpx.Client) -> None:
    answer = api.get("/api/instances/0123456789abcdef0123456789abcdef/timeline")
    assert answer.status_code == 404
    assert answer.json()["error"] == "InstanceNotFound"


def test_a_history_changed_by_hand_is_409_past_the_change_and_the_timeline_stops_there(
    api: httpx.Client, server: Server, trip: tuple[str, list[dict[str, Any]]]
) -> None:
    instance_id, seen = trip
    database = sa.create_engine(server.database)
    try:
        with database.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE turnout_history SET event = 'teleport' "
                    "WHERE instance_id = :id AND seq = 3"
                ),
                {"id": instance_id},
            )
    finally:
        database.dispose()
    for path in (f"/api/instances/{instance_id}", f"/api/instances/{instance_id}/diagram.svg"):
        refused = api.get(path, params={"at": 4})
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "HistoryNotReplayable"
        assert refused.json()["seq"] == 3
        assert "does not replay past entry 2" in refused.json()["message"]
    assert (
        api.get(f"/api/instances/{instance_id}", params={"at": 2}).json()["context"]
        == (seen[1]["context"])
    )
    body = api.get(f"/api/instances/{instance_id}/timeline").json()
    assert (body["complete"], body["entries"], len(body["points"])) == (False, 4, 2)
    assert body["divergence"]["seq"] == 3 and body["divergence"]["reason"]
    assert api.get(f"/api/instances/{instance_id}").json()["revision"] == 4  # now is untouched

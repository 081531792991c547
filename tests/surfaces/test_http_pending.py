"""`GET /api/instances/{id}/pending` and the instance page's live part: what an instance waits
for, answered 304 to a caller that holds the current ETag, on each database."""

from __future__ import annotations

from datetime import timedelta

import httpx
from turnout_processes import Server, definition_text, unique

from engine import Engine


def waiting_instance(api: httpx.Client) -> tuple[str, str]:
    """A started instance of a fresh copy of `waiting_work.yaml`: (instance id, task name)."""
    name, task = unique("waiting"), unique("jobs")
    text = definition_text("waiting_work.yaml", name).replace("jobs.waiting", task)
    assert api.post("/api/definitions", content=text).status_code == 201
    answer = api.post("/api/instances", json={"definition": name})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"], task


def test_pending_shows_a_claim_and_a_failed_attempt_and_answers_304_in_between(
    api: httpx.Client,
) -> None:
    instance_id, task = waiting_instance(api)
    first = api.get(f"/api/instances/{instance_id}/pending")
    assert first.status_code == 200
    [ready] = first.json()["tasks"]
    assert (ready["name"], ready["status"], ready["attempt"], ready["max_attempts"]) == (
        task,
        "ready",
        0,
        3,
    )
    assert ready["last_error"] is None and first.json()["timers"] == []
    etag = first.headers["etag"]
    unchanged = api.get(f"/api/instances/{instance_id}/pending", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.headers["etag"] == etag

    claim = {"tasks": [task], "worker": "worker-a", "lease": 30}
    [claimed] = api.post("/api/tasks/claim", json=claim).json()
    held = api.get(f"/api/instances/{instance_id}/pending", headers={"If-None-Match": etag})
    assert held.status_code == 200 and held.headers["etag"] != etag  # a claim: no new revision
    [running] = held.json()["tasks"]
    assert (running["status"], running["worker"], running["attempt"]) == ("claimed", "worker-a", 1)
    assert running["lease_until"] is not None

    failure = {"worker": "worker-a", "error": "upstream down", "type": "Upstream"}
    assert api.post(f"/api/tasks/{claimed['id']}/fail", json=failure).status_code == 200
    [waiting] = api.get(f"/api/instances/{instance_id}/pending").json()["tasks"]
    assert waiting["status"] == "ready" and waiting["attempt"] == 1
    error = waiting["last_error"]
    assert (error["type"], error["message"], error["attempt"]) == ("Upstream", "upstream down", 1)


def test_the_live_part_of_the_instance_page_is_answered_304_until_the_instance_moves(
    api: httpx.Client,
) -> None:
    instance_id, task = waiting_instance(api)
    live = api.get(f"/instances/{instance_id}/live")
    assert live.status_code == 200 and 'id="live"' in live.text and "<html" not in live.text
    etag = live.headers["etag"]
    assert (
        api.get(f"/instances/{instance_id}/live", headers={"If-None-Match": etag}).status_code
        == 304
    )
    api.post("/api/tasks/claim", json={"tasks": [task], "worker": "worker-b"})
    moved = api.get(f"/instances/{instance_id}/live", headers={"If-None-Match": etag})
    assert moved.status_code == 200 and "worker-b" in moved.text


def test_pending_of_an_instance_that_does_not_exist_is_404(api: httpx.Client) -> None:
    missing = "0" * 32
    answer = api.get(f"/api/instances/{missing}/pending")
    assert answer.status_code == 404 and answer.json()["error"] == "InstanceNotFound"
    assert api.get(f"/instances/{missing}/live").status_code == 404
    assert api.get("/api/instances/not%20an%20id/pending").status_code == 404


def test_a_claim_whose_lease_ran_out_is_shown_as_lapsed(api: httpx.Client, server: Server) -> None:
    instance_id, task = waiting_instance(api)
    # A worker claimed it for a millisecond: by the time the page is read, the lease lapsed.
    worker = Engine(server.database)
    try:
        [claimed] = worker.claim_tasks([task], "slow-worker", timedelta(milliseconds=1))
    finally:
        worker.close()
    [held] = api.get(f"/api/instances/{instance_id}/pending").json()["tasks"]
    assert (held["status"], held["worker"]) == ("claimed", "slow-worker")
    assert held["id"] == claimed.id
    page = api.get(f"/instances/{instance_id}/live").text
    assert "lease lapsed" in page and "slow-worker" in page

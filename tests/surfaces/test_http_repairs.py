"""Redrive and reset over HTTP against a real `turnout serve`, on SQLite and on PostgreSQL: the
JSON routes (404, 409 and 422 for mistakes, never 500) and the dashboard's forms."""

from __future__ import annotations

import re
from typing import Any

import httpx
from http_calls import start


def failed_review(api: httpx.Client, review: tuple[str, str], amount: int = 5) -> str:
    """A review whose task an external worker failed: the instance ends failed."""
    name, task = review
    instance = start(api, name, {"amount": amount})
    [claimed] = api.post("/api/tasks/claim", json={"tasks": [task], "worker": "w"}).json()
    body = {"worker": "w", "type": "Away", "error": "the reviewer is away"}
    assert api.post(f"/api/tasks/{claimed['id']}/fail", json=body).json() == {"applied": True}
    assert api.get(f"/api/instances/{instance['id']}").json()["status"] == "failed"
    return str(instance["id"])


def complete_review(api: httpx.Client, task: str, ok: bool = True) -> None:
    [claimed] = api.post("/api/tasks/claim", json={"tasks": [task], "worker": "w"}).json()
    done = api.post(
        f"/api/tasks/{claimed['id']}/complete", json={"worker": "w", "result": {"ok": ok}}
    )
    assert done.json() == {"applied": True}


def test_redrive_restarts_a_failed_instance_and_refuses_one_that_is_not_failed(
    api: httpx.Client, review: tuple[str, str]
) -> None:
    instance_id = failed_review(api, review)
    redriven = api.post(f"/api/instances/{instance_id}/redrive", json={"reason": "reviewer back"})
    assert redriven.status_code == 200, redriven.text
    body = redriven.json()
    assert (body["status"], body["state"], body["error"]) == ("running", "checking", None)
    history = api.get(f"/api/instances/{instance_id}/history").json()
    assert history[-1]["kind"] == "redrive" and history[-1]["data"]["reason"] == "reviewer back"

    again = api.post(f"/api/instances/{instance_id}/redrive")
    assert again.status_code == 409
    assert again.json()["error"] == "RedriveRefused"
    assert again.json()["reason"] == "it is running; only a failed instance can be redriven"

    complete_review(api, review[1])
    assert api.get(f"/api/instances/{instance_id}").json()["state"] == "approved"
    assert api.post(f"/api/instances/{'0' * 32}/redrive").status_code == 404


def test_reset_moves_an_instance_and_answers_its_mistakes_with_422_or_404(
    api: httpx.Client, review: tuple[str, str]
) -> None:
    name, _ = review
    instance = start(api, name, {"amount": 500})
    path = f"/api/instances/{instance['id']}/reset"
    unknown = api.post(path, json={"to_state": "archived", "reason": "tidy"})
    assert unknown.status_code == 422
    assert unknown.json()["known"] == ["checking", "approved", "declined"]
    assert unknown.json()["state"] == "archived"
    for mistake in (
        {"to_state": "approved"},
        {"to_state": "approved", "reason": ""},
        {"to_state": "approved", "reason": "  "},
        {"to_state": "approved", "reason": "x", "context_patch": [1]},
    ):
        assert api.post(path, json=mistake).status_code == 422, mistake
    assert api.get(f"/api/instances/{instance['id']}").json()["revision"] == instance["revision"]
    missing = {"to_state": "approved", "reason": "x"}
    assert api.post(f"/api/instances/{'0' * 32}/reset", json=missing).status_code == 404

    moved = api.post(
        path,
        json={
            "to_state": "approved",
            "reason": "approved by phone",
            "context_patch": {"by": "ops"},
        },
    )
    assert moved.status_code == 200, moved.text
    body = moved.json()
    assert (body["status"], body["state"]) == ("succeeded", "approved")
    assert body["context"] == {"amount": 500, "by": "ops"}
    assert body["revision"] == instance["revision"] + 1
    entry = api.get(f"/api/instances/{instance['id']}/history").json()[-1]
    assert entry["kind"] == "reset" and entry["data"]["revision"] == body["revision"]


def test_bulk_redrive_is_a_dry_run_unless_told_otherwise(
    api: httpx.Client, review: tuple[str, str]
) -> None:
    name, task = review
    ids = [failed_review(api, review, amount) for amount in (1, 2)]
    dry = api.post("/api/instances:redrive", json={"definition": name})
    assert dry.status_code == 200, dry.text
    assert dry.json() == {
        "dry_run": True,
        "items": [
            {
                "id": instance_id,
                "outcome": "would redrive",
                "state": "checking",
                "error_type": "Away",
                "message": "",
            }
            for instance_id in ids
        ],
    }
    failed = api.get("/api/instances", params={"definition": name, "status": "failed"}).json()
    assert [item["id"] for item in failed["items"]] == ids
    none = api.post("/api/instances:redrive", json={"definition": name, "error_type": "Other"})
    assert none.json()["items"] == []

    done = api.post("/api/instances:redrive", json={"definition": name, "dry_run": False})
    assert [item["outcome"] for item in done.json()["items"]] == ["redriven", "redriven"]
    for _ in ids:
        complete_review(api, task)
    for instance_id in ids:
        assert api.get(f"/api/instances/{instance_id}").json()["status"] == "succeeded"

    unknown = api.post("/api/instances:redrive", json={"definition": "no_such_definition"})
    assert unknown.status_code == 404
    assert (
        api.post("/api/instances:redrive", json={"definition": name, "limit": 0}).status_code == 422
    )


def form_token(page: str) -> str:
    found = re.search(r'name="form_token" value="([^"]+)"', page)
    assert found is not None, "the page has no form"
    return found.group(1)


def test_the_instance_page_offers_redrive_when_failed_and_its_forms_work(
    api: httpx.Client, review: tuple[str, str]
) -> None:
    name, task = review
    instance_id = failed_review(api, review)
    page = api.get(f"/instances/{instance_id}").text
    assert 'id="redrive-form"' in page and 'id="reset-form"' in page
    assert re.search(r"<option[^>]*>declined</option>", page)
    token = form_token(page)

    forged = api.post(f"/instances/{instance_id}/redrive", data={"reason": "x"})
    assert forged.status_code == 403
    redriven = api.post(
        f"/instances/{instance_id}/redrive", data={"reason": "back", "form_token": token}
    )
    assert redriven.status_code == 303 and "error=" not in redriven.headers["location"]
    page = api.get(f"/instances/{instance_id}").text
    assert 'id="redrive-form"' not in page  # running now

    def reset(**fields: Any) -> httpx.Response:
        return api.post(f"/instances/{instance_id}/reset", data={"form_token": token, **fields})

    bad_patch = reset(to_state="declined", reason="x", patch="{oops")
    assert "error=" in bad_patch.headers["location"]
    assert "not%20valid%20JSON" in bad_patch.headers["location"]
    no_reason = reset(to_state="declined", reason="")
    assert "reason%20is%20required" in no_reason.headers["location"]
    moved = reset(to_state="declined", reason="declined on paper", patch='{"note": "paper"}')
    assert moved.status_code == 303 and "error=" not in moved.headers["location"]
    after = api.get(f"/api/instances/{instance_id}").json()
    assert (after["state"], after["context"]["note"]) == ("declined", "paper")
    assert api.post("/api/tasks/claim", json={"tasks": [task], "worker": "w"}).json() == []

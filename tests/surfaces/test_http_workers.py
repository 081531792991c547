"""The task routes of the HTTP API (SPEC 6) that external workers use: claim, complete, fail,
heartbeat and their leases, against a real `turnout serve` process, on SQLite and PostgreSQL.

One server per database serves the whole module; each test deploys its own copy of a
definition with a task name no other test uses.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from http_calls import send, start
from turnout_processes import definition_text, svg_classes, unique, wait_until


def claim(api: httpx.Client, task: str, worker: str, lease: float = 30) -> list[Any]:
    answer = api.post("/api/tasks/claim", json={"tasks": [task], "worker": worker, "lease": lease})
    assert answer.status_code == 200, answer.text
    claimed: list[Any] = answer.json()
    return claimed


def test_an_external_worker_claims_a_task_completes_it_and_the_instance_advances(
    api: httpx.Client, review: tuple[str, str]
) -> None:
    name, task = review
    instance = start(api, name, {"amount": 40})
    (claimed,) = claim(api, task, "worker-a")
    assert claimed["name"] == task and claimed["instance_id"] == instance["id"]
    assert claimed["input"] == {"amount": 40} and claimed["attempt"] == 1
    assert claimed["state"] == "checking"
    assert claim(api, task, "worker-b") == []  # held under worker-a's lease
    beat = api.post(f"/api/tasks/{claimed['id']}/heartbeat", json={"worker": "worker-a"})
    assert beat.json() == {"applied": True}
    done = api.post(
        f"/api/tasks/{claimed['id']}/complete", json={"worker": "worker-a", "result": {"ok": True}}
    )
    assert done.status_code == 200 and done.json() == {"applied": True}
    after = api.get(f"/api/instances/{instance['id']}").json()
    assert after["state"] == "approved" and after["status"] == "succeeded"
    assert after["context"]["ok"] is True


def test_a_task_failed_over_http_fails_the_instance_when_nothing_handles_it(
    api: httpx.Client, review: tuple[str, str]
) -> None:
    name, task = review
    instance = start(api, name, {"amount": 40})
    (claimed,) = claim(api, task, "worker-a")
    failed = api.post(
        f"/api/tasks/{claimed['id']}/fail", json={"worker": "worker-a", "error": "upstream down"}
    )
    assert failed.status_code == 200 and failed.json() == {"applied": True}
    assert api.get(f"/api/instances/{instance['id']}").json()["status"] == "failed"


def test_an_instance_shows_its_last_error_in_the_api_and_on_its_page(
    api: httpx.Client, review: tuple[str, str]
) -> None:
    """GET of an instance carries the newest error of its history (`last_error`: type,
    message, where it is in the history); the dashboard's instance page shows it too."""
    name, task = review
    instance = start(api, name, {"amount": 40})
    assert api.get(f"/api/instances/{instance['id']}").json()["last_error"] is None
    (claimed,) = claim(api, task, "worker-a")
    failure = {"worker": "worker-a", "error": "upstream down", "type": "Unreachable"}
    assert api.post(f"/api/tasks/{claimed['id']}/fail", json=failure).status_code == 200
    last = api.get(f"/api/instances/{instance['id']}").json()["last_error"]
    assert (last["type"], last["message"]) == ("Unreachable", "upstream down")
    seqs = [e["seq"] for e in api.get(f"/api/instances/{instance['id']}/history").json()]
    assert last["seq"] in seqs
    page = api.get(f"/instances/{instance['id']}")
    assert page.status_code == 200
    assert "last error" in page.text and "Unreachable" in page.text


def test_a_failure_reported_over_http_is_retried_then_routed_when_attempts_run_out(
    api: httpx.Client,
) -> None:
    name, task = unique("flaky"), unique("call")
    text = definition_text("flaky.yaml", name).replace("flaky.call", task)
    assert api.post("/api/definitions", content=text).status_code == 201
    instance = start(api, name)
    (first,) = claim(api, task, "worker-a")
    failed = api.post(
        f"/api/tasks/{first['id']}/fail",
        json={"worker": "worker-a", "error": "timeout upstream", "type": "Timeout"},
    )
    assert failed.json() == {"applied": True}
    assert api.get(f"/api/instances/{instance['id']}").json()["state"] == "calling"
    (second,) = wait_until(
        lambda: claim(api, task, "worker-b"), 20, "the retry to be due", interval=0.1
    )
    assert second["attempt"] == 2 and second["max_attempts"] == 2
    # A retry is the same task: the same key to make its effects idempotent.
    assert second["idempotency_key"] == first["idempotency_key"]
    assert len(first["idempotency_key"]) == 32 and first["item"] is None
    again = api.post(f"/api/tasks/{second['id']}/fail", json={"worker": "worker-b"})
    assert again.json() == {"applied": True}
    after = api.get(f"/api/instances/{instance['id']}").json()
    assert after["state"] == "gave_up" and after["status"] == "failed"
    kinds = [e["kind"] for e in api.get(f"/api/instances/{instance['id']}/history").json()]
    assert "retry" in kinds


def test_a_lapsed_lease_lets_another_worker_claim_and_the_late_answer_is_refused(
    api: httpx.Client, review: tuple[str, str]
) -> None:
    name, task = review
    instance = start(api, name, {"amount": 500})
    began = time.monotonic()
    (first,) = claim(api, task, "slow-worker", lease=1)
    (second,) = wait_until(
        lambda: claim(api, task, "quick-worker", lease=30),
        20,
        "the lapsed task to be claimable",
        interval=0.2,
    )
    assert time.monotonic() - began >= 0.9  # not before the 1 s lease ran out
    assert second["id"] == first["id"]
    assert second["attempt"] == first["attempt"]  # a lapsed lease uses up no attempt
    late = api.post(
        f"/api/tasks/{first['id']}/complete", json={"worker": "slow-worker", "result": {"ok": True}}
    )
    assert late.status_code == 409 and late.json()["error"] == "TaskNotHeld"
    lost = api.post(f"/api/tasks/{first['id']}/heartbeat", json={"worker": "slow-worker"})
    assert lost.json() == {"applied": False}
    assert api.get(f"/api/instances/{instance['id']}").json()["state"] == "checking"
    answered = api.post(
        f"/api/tasks/{second['id']}/complete",
        json={"worker": "quick-worker", "result": {"ok": False}},
    )
    assert answered.json() == {"applied": True}
    after = api.get(f"/api/instances/{instance['id']}").json()
    assert after["state"] == "declined" and after["status"] == "failed"
    kinds = [e["kind"] for e in api.get(f"/api/instances/{instance['id']}/history").json()]
    assert "stale" not in kinds


def test_an_answer_from_a_worker_that_does_not_hold_the_task_is_409_and_writes_nothing(
    api: httpx.Client, review: tuple[str, str]
) -> None:
    """Anyone may name any worker, but only the holder's name is taken: a stranger's
    results, however large or frequent, add nothing to the instance's history."""
    name, task = review
    instance = start(api, name, {"amount": 500})
    (held,) = claim(api, task, "worker-a")
    history = f"/api/instances/{instance['id']}/history"
    before = api.get(history).json()
    for ending, body in (
        ("complete", {"result": {"blob": "x" * 1_000_000}}),
        ("fail", {"error": "forged"}),
    ):
        for _ in range(3):
            refused = api.post(
                f"/api/tasks/{held['id']}/{ending}", json={"worker": "intruder", **body}
            )
            assert refused.status_code == 409, refused.text
            assert refused.json() | {"message": ""} == {
                "error": "TaskNotHeld",
                "message": "",
                "task_id": held["id"],
                "worker": "intruder",
            }
    assert api.get(history).json() == before
    answered = api.post(
        f"/api/tasks/{held['id']}/complete", json={"worker": "worker-a", "result": {"ok": True}}
    )
    assert answered.json() == {"applied": True}


def test_a_lapsed_holders_late_answer_is_stale_once_and_cut_short_then_409(
    api: httpx.Client, review: tuple[str, str]
) -> None:
    name, task = review
    instance = start(api, name, {"amount": 500})
    (held,) = claim(api, task, "worker-a", lease=0.05)

    def released() -> bool:
        claim(api, unique("nothing"), "sweeper")  # a claim first releases lapsed leases
        beat = api.post(
            f"/api/tasks/{held['id']}/heartbeat", json={"worker": "worker-a", "lease": 0.05}
        )
        return bool(beat.json() == {"applied": False})

    wait_until(released, 20, "the lease to lapse", interval=0.05)
    late = {"worker": "worker-a", "result": {"blob": "x" * 900_000}}
    first = api.post(f"/api/tasks/{held['id']}/complete", json=late)
    assert first.status_code == 200 and first.json() == {"applied": False}
    again = api.post(f"/api/tasks/{held['id']}/complete", json=late)
    assert again.status_code == 409 and again.json()["error"] == "TaskNotHeld"
    history = api.get(f"/api/instances/{instance['id']}/history").json()
    [stale] = [e for e in history if e["kind"] == "stale"]
    assert len(stale["data"]["result"]) <= 4096 and stale["data"]["truncated"] > 900_000
    (retaken,) = claim(api, task, "worker-b")
    assert retaken["id"] == held["id"] and retaken["attempt"] == held["attempt"]


def test_a_parallel_state_takes_events_in_one_region_and_task_results_in_the_other(
    api: httpx.Client,
) -> None:
    name, task = unique("shipment"), unique("pack")
    text = definition_text("shipment.yaml", name).replace("shipment.pack", task)
    assert api.post("/api/definitions", content=text).status_code == 201
    instance = start(api, name)
    assert instance["state"] == "preparing" and instance["allowed"] == ["printed"]
    assert set(instance["active"]) >= {"preparing.pack.pack", "preparing.label.waiting_label"}
    nodes = svg_classes(api.get(f"/api/instances/{instance['id']}/diagram.svg").content)
    assert "active" in nodes["state-preparing.pack.pack"]
    assert "active" in nodes["state-preparing.label.waiting_label"]
    printed = send(api, instance["id"], "printed").json()
    assert printed["state"] == "preparing" and "preparing.label.labelled" in printed["active"]
    (claimed,) = claim(api, task, "packer")
    done = api.post(
        f"/api/tasks/{claimed['id']}/complete",
        json={"worker": "packer", "result": {"parcel": "P1"}},
    )
    assert done.json() == {"applied": True}
    after = api.get(f"/api/instances/{instance['id']}").json()
    assert after["state"] == "shipped" and after["status"] == "succeeded"
    assert after["active"] == ["shipped"]


def test_unknown_task_is_404_and_a_bad_claim_is_422(api: httpx.Client) -> None:
    unknown = api.post("/api/tasks/no-such-task/complete", json={"worker": "w", "result": 1})
    assert unknown.status_code == 404
    for body in (
        {"tasks": [], "worker": "w"},
        {"tasks": ["x"], "worker": "w", "lease": 0},
        {"tasks": ["x"]},
    ):
        answer = api.post("/api/tasks/claim", json=body)
        assert answer.status_code == 422, body

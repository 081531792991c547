"""Migrations over HTTP on a real `turnout serve` (SQLite and PostgreSQL): the plan and the
apply routes, their 4xx answers to mistakes, and the dashboard's migration page with its
Apply button."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from turnout_processes import unique

CLAIMS = Path(__file__).parent.parent / "engine" / "definitions"


def claims(api: httpx.Client) -> tuple[str, dict[str, str]]:
    """A fresh copy of `claims` version 1 with an instance in intake, one held, one with a
    big approved amount; then version 2. Its name, and the instances by what they are."""
    name = unique("claims")
    for version in (1, 2):
        text = (
            (CLAIMS / f"claims_v{version}.yaml")
            .read_text()
            .replace("name: claims", f"name: {name}")
        )
        if version == 2:
            ids = instances(api, name)
        assert api.post("/api/definitions", content=text).status_code == 201
    return name, ids


def instances(api: httpx.Client, name: str) -> dict[str, str]:
    def started() -> str:
        answer = api.post("/api/instances", json={"definition": name})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    def send(instance: str, event: str, data: Any = None) -> None:
        answer = api.post(f"/api/instances/{instance}/events", json={"event": event, "data": data})
        assert answer.status_code == 200, answer.text

    found = {"intake": started(), "held": started(), "big": started()}
    send(found["held"], "hold")
    send(found["big"], "submit", {"amount": 700})
    send(found["big"], "approve")
    return found


def test_a_plan_and_its_application_over_http(api: httpx.Client) -> None:
    name, ids = claims(api)
    body = {"from": 1, "state_map": {"legacy_hold": "on_hold"}}
    planned = api.post(f"/api/definitions/{name}/migrations:plan", json=body)
    assert planned.status_code == 200, planned.text
    plan = planned.json()
    assert (plan["definition"], plan["from_version"], plan["to_version"]) == (name, 1, 2)
    assert plan["counts"] == {"safe": 1, "mapped": 1, "divergent": 1, "impossible": 0}
    classes = {one["id"]: one["class"] for one in plan["instances"]}
    assert classes == {ids["intake"]: "safe", ids["held"]: "mapped", ids["big"]: "divergent"}
    [big] = [one for one in plan["instances"] if one["class"] == "divergent"]
    assert big["divergence"]["seq"] == 3 and big["divergence"]["recorded"]["event"] == "approve"
    assert plan["states"]["legacy_hold"]["mapped"] == 1

    applied = api.post(f"/api/definitions/{name}/migrations:apply", json=plan)
    assert applied.status_code == 200, applied.text
    assert applied.json()["counts"] == {"migrated": 2, "skipped": 0, "stayed": 0, "untouched": 1}
    held = api.get(f"/api/instances/{ids['held']}").json()
    assert (held["version"], held["state"]) == (2, "on_hold")
    history = api.get(f"/api/instances/{ids['held']}/history").json()
    assert history[-1]["kind"] == "migrated" and history[-1]["data"]["class"] == "mapped"
    again = api.post(f"/api/definitions/{name}/migrations:apply", json=plan).json()
    assert again["counts"] == {"migrated": 0, "skipped": 2, "stayed": 0, "untouched": 1}


def test_apply_can_plan_and_apply_at_once(api: httpx.Client) -> None:
    name, ids = claims(api)
    applied = api.post(f"/api/definitions/{name}/migrations:apply", json={"from": 1})
    assert applied.status_code == 200, applied.text
    outcomes = {one["id"]: one["outcome"] for one in applied.json()["instances"]}
    assert outcomes == {
        ids["intake"]: "migrated",
        ids["held"]: "untouched",
        ids["big"]: "untouched",
    }


def test_mistakes_are_answered_4xx_with_what_is_wrong(api: httpx.Client) -> None:
    name, _ = claims(api)
    plan_route = f"/api/definitions/{name}/migrations:plan"
    apply_route = f"/api/definitions/{name}/migrations:apply"
    answers = {
        "unknown state": api.post(plan_route, json={"from": 1, "state_map": {"gone": "x"}}),
        "no version": api.post(plan_route, json={"from": 5}),
        "same version": api.post(plan_route, json={"from": 2}),
        "no definition": api.post(
            "/api/definitions/nothing_here/migrations:plan", json={"from": 1}
        ),
        "no from": api.post(plan_route, json={"to": 2}),
        "bad where": api.post(plan_route, json={"from": 1, "where": {"status": "failed"}}),
        "not a plan": api.post(apply_route, json={"instances": 1}),
        "bad body": api.post(apply_route, json={"from": "one"}),
    }
    plan = api.post(plan_route, json={"from": 1}).json()
    answers["other definition"] = api.post(
        "/api/definitions/nothing_here/migrations:apply", json=plan
    )
    statuses = {what: answer.status_code for what, answer in answers.items()}
    assert statuses == {
        "unknown state": 422,
        "no version": 404,
        "same version": 422,
        "no definition": 404,
        "no from": 422,
        "bad where": 422,
        "not a plan": 422,
        "bad body": 422,
        "other definition": 422,
    }
    assert answers["unknown state"].json()["problems"] == [
        "'gone' is not a state of the old version 1",
        "'x' is not a state of the new version 2",
    ]
    assert all(answer.json()["message"] for answer in answers.values())


def form_token(page: str) -> str:
    found = re.search(r'name="form_token" value="([^"]+)"', page)
    assert found is not None, "the page has a form"
    return found.group(1)


def test_the_dashboard_page_shows_the_plan_and_its_button_applies_it(api: httpx.Client) -> None:
    name, ids = claims(api)
    page = api.get(f"/definitions/{name}/migrate", params={"from": 1, "map": "legacy_hold=on_hold"})
    assert page.status_code == 200
    counts = dict(re.findall(r'data-class="(\w+)">\w+: (\d+)<', page.text))
    assert counts == {"safe": "1", "mapped": "1", "divergent": "1", "impossible": "0"}
    assert 'data-state="legacy_hold"' in page.text and ids["big"][:12] in page.text
    assert "Apply: move 2 instance(s) to v2" in page.text
    picture = page.text[page.text.index('id="diagram"') :]
    assert "state&#45;legacy_hold diff&#45;removed" in picture
    assert "instances that would stay" in picture and "has&#45;instances" in picture
    refused = api.post(
        f"/definitions/{name}/migrate", data={"from": "1", "to": "2", "form_token": "0" * 64}
    )
    assert refused.status_code == 403
    done = api.post(
        f"/definitions/{name}/migrate",
        data={
            "from": "1",
            "to": "2",
            "map": "legacy_hold=on_hold",
            "form_token": form_token(page.text),
        },
    )
    assert done.status_code == 200
    outcomes = dict(re.findall(r'data-outcome="(\w+)">\w+: (\d+)<', done.text))
    assert outcomes == {"migrated": "2", "skipped": "0", "stayed": "0", "untouched": "1"}
    assert api.get(f"/api/instances/{ids['held']}").json()["state"] == "on_hold"
    wrong = api.get(f"/definitions/{name}/migrate", params={"from": 1, "map": "ice"})
    assert wrong.status_code == 422 and "is not OLD=NEW" in wrong.text

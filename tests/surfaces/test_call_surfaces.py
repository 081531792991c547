"""Call states as users see them: the HTTP API and `turnout show`/`list` give an instance's
parent and children and list children by parent; the dashboard links parent and children
both ways; a call state's box names the called definition and links to its diagram."""

from __future__ import annotations

import json
import re

import httpx
from turnout_processes import DEFINITIONS, definition_text, run_turnout, unique

import diagrams
import statemachines

CALLER = DEFINITIONS / "call_caller.yaml"
CALLEE = DEFINITIONS / "call_callee.yaml"


def _deploy_pair(api: httpx.Client) -> str:
    """A fresh caller and callee on the server; the caller's name."""
    callee, caller = unique("callee"), unique("caller")
    text = definition_text("call_caller.yaml", caller).replace("surface_call_callee", callee)
    for body in (definition_text("call_callee.yaml", callee), text):
        answer = api.post("/api/definitions", content=body)
        assert answer.status_code == 201, answer.text
    return caller


def test_the_http_api_links_parent_and_children_and_lists_by_parent(api: httpx.Client) -> None:
    caller = _deploy_pair(api)
    parent = api.post("/api/instances", json={"definition": caller}).json()
    shown = api.get(f"/api/instances/{parent['id']}").json()
    (child_id,) = shown["children"]
    child = api.get(f"/api/instances/{child_id}").json()
    assert (child["parent"], child["state"], shown["parent"]) == (parent["id"], "wait", None)
    listed = api.get("/api/instances", params={"parent": parent["id"]}).json()["items"]
    assert [item["id"] for item in listed] == [child_id]
    history = api.get(f"/api/instances/{parent['id']}/history").json()
    assert history[1]["kind"] == "call" and history[1]["data"]["child"] == child_id
    cancelled = api.post(f"/api/instances/{parent['id']}/cancel", json={}).json()
    assert cancelled["status"] == "cancelled"
    assert api.get(f"/api/instances/{child_id}").json()["status"] == "cancelled"


def test_the_dashboard_links_an_instance_to_its_children_and_back(api: httpx.Client) -> None:
    caller = _deploy_pair(api)
    parent = api.post("/api/instances", json={"definition": caller}).json()
    (child_id,) = api.get(f"/api/instances/{parent['id']}").json()["children"]
    page = api.get(f"/instances/{parent['id']}").text
    assert f'href="/instances/{child_id}"' in page
    assert f'href="/instances/{parent["id"]}"' in api.get(f"/instances/{child_id}").text
    svg = api.get(f"/api/definitions/{caller}/diagram.svg").text
    assert "/diagram.svg" in re.findall(r'xlink:href="([^"]*)"', svg)[0]


def test_show_and_list_print_parent_and_children(sqlite_db: str) -> None:
    deployed = run_turnout("deploy", str(CALLEE), str(CALLER), database=sqlite_db)
    assert deployed.returncode == 0, deployed.stderr
    started = run_turnout("start", "surface_call_caller", "--json", database=sqlite_db)
    parent = json.loads(started.stdout)["id"]
    shown = run_turnout("show", parent, "--json", database=sqlite_db)
    (child,) = json.loads(shown.stdout)["children"]
    text = run_turnout("show", child, database=sqlite_db).stdout
    assert f"parent: {parent}" in text
    assert f"children: {child}" in run_turnout("show", parent, database=sqlite_db).stdout
    listed = run_turnout("list", "--parent", parent, "--json", database=sqlite_db)
    assert [item["id"] for item in json.loads(listed.stdout)] == [child]


def test_a_call_state_is_drawn_with_the_called_name_and_a_link_to_its_diagram() -> None:
    definition = statemachines.load(CALLER)
    svg = diagrams.render(definition, format="svg").decode()
    assert "⤷ call surface_call_callee" in svg
    assert 'xlink:href="/api/definitions/surface_call_callee/diagram.svg"' in svg
    assert "ask : call surface_call_callee" in diagrams.to_mermaid(definition)

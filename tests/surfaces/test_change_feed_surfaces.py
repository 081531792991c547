"""The change feed from outside the process: `GET /api/changes` of a real `turnout serve` and
`turnout changes`, on SQLite and PostgreSQL; a bad page is a 422 or a usage error."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from databases import postgres_schema
from http_calls import send, start
from turnout_processes import DEFINITIONS, run_turnout


def test_the_feed_pages_in_commit_order_over_http(api: httpx.Client, door: str) -> None:
    top = api.get("/api/changes", params={"after": 0, "limit": 10_000}).json()["next"]
    first = start(api, door, key="front")
    assert send(api, first["id"], "open").status_code == 200
    second = start(api, door)

    page = api.get("/api/changes", params={"after": top, "limit": 2}).json()
    rest = api.get("/api/changes", params={"after": page["next"]}).json()

    got = [(c["id"], c["event"], c["to_state"]) for c in page["items"] + rest["items"]]
    assert got == [
        (f"{first['id']}.1", None, "closed"),
        (f"{first['id']}.2", "open", "opened"),
        (f"{second['id']}.1", None, "closed"),
    ]
    assert page["items"][0]["key"] == "front"
    assert api.get("/api/changes", params={"after": rest["next"]}).json() == {
        "items": [],
        "next": rest["next"],
    }
    only = api.get("/api/changes", params={"after": top, "definition": door}).json()
    assert len(only["items"]) == 3


@pytest.mark.parametrize("params", [{"after": -1}, {"limit": 0}, {"after": "x"}])
def test_a_bad_page_of_the_feed_is_a_422(api: httpx.Client, params: dict[str, object]) -> None:
    assert api.get("/api/changes", params=params).status_code == 422


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_turnout_changes_prints_the_feed_as_json_lines(database: str, tmp_path: Path) -> None:
    def check(url: str) -> None:
        assert run_turnout("deploy", str(DEFINITIONS / "door.yaml"), database=url).returncode == 0
        started = run_turnout("start", "surface_door", "--json", database=url)
        assert started.returncode == 0, started.stderr
        instance = json.loads(started.stdout)
        listed = run_turnout("changes", "--json", database=url)
        assert listed.returncode == 0, listed.stderr
        lines = [json.loads(line) for line in listed.stdout.splitlines()]
        assert [(line["id"], line["to_state"]) for line in lines] == [
            (f"{instance['id']}.1", "closed")
        ]
        refused = run_turnout("changes", "--limit", "0", database=url)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr

    if database == "sqlite":
        check(f"sqlite:///{tmp_path}/turnout.db")
        return
    with postgres_schema() as url:
        check(url)

"""Search by context where a user meets it: `turnout list --where`, `GET /api/instances?where=`
and the dashboard's filter field, each selecting what `Engine.instances(where=...)` selects
and answering a filter it cannot use with a clear error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from http_calls import start
from turnout_processes import DEFINITIONS, run_together, run_turnout

from engine import Engine

ORDERS = [
    {"customer": {"tier": "gold"}, "total": 120},
    {"customer": {"tier": "silver"}, "total": 80},
    {"customer": {"tier": "gold"}, "total": 40},
    {"customer": {"tier": "gold"}, "total": "300"},
]


def test_list_where_selects_by_context_and_refuses_what_is_no_filter(
    sqlite_db: str, tmp_path: Path
) -> None:
    engine = Engine(sqlite_db)
    engine.deploy(DEFINITIONS / "door.yaml")
    started = [engine.start("surface_door", order).id for order in ORDERS]
    engine.close()
    gold, rich, quoted, operators, missing, twice = run_together(
        ["list", "--json", "--where", "customer.tier=gold"],
        ["list", "--json", "--where", "customer.tier=gold", "--where", "total>=100"],
        ["list", "--json", "--where", 'total="300"'],
        ["list", "--json", "--where", 'customer.tier={"in": ["silver"]}'],
        ["list", "--where", "customer.tier"],
        ["list", "--where", "total>1", "--where", "total>2"],
        database=sqlite_db,
    )

    def ids(result: Any) -> list[str]:
        assert result.returncode == 0, result.stderr
        return [item["id"] for item in json.loads(result.stdout)]

    assert ids(gold) == [started[0], started[2], started[3]]
    assert ids(rich) == [started[0]]  # "300" is text: no number range reaches it
    assert ids(quoted) == [started[3]]
    assert ids(operators) == [started[1]]
    for refused, says in ((missing, "not path=value"), (twice, "given twice")):
        assert refused.returncode == 2
        assert says in refused.stderr and "Traceback" not in refused.stderr


def test_context_index_prints_the_statement_and_creates_it(sqlite_db: str) -> None:
    printed, bad = run_together(
        ["context-index", "customer.tier"], ["context-index", "customer tier"], database=sqlite_db
    )
    assert printed.returncode == 0, printed.stderr
    assert (
        printed.stdout.split()
        == (
            "CREATE INDEX IF NOT EXISTS ix_turnout_context_customer_tier ON turnout_instances "
            "(json_extract(context, '$.customer.tier'), created_at, id);"
        ).split()
    )
    assert bad.returncode == 2 and "each key" in bad.stderr and "Traceback" not in bad.stderr
    created = run_turnout("context-index", "customer.tier", "--create", database=sqlite_db)
    assert created.returncode == 0, created.stderr
    engine = Engine(sqlite_db)
    with engine.store.core() as conn:
        names = [row[0] for row in conn.exec_driver_sql("SELECT name FROM sqlite_master")]
    engine.close()
    assert "ix_turnout_context_customer_tier" in names


def test_http_where_is_a_json_object_and_pages_like_any_listing(
    api: httpx.Client, door: str
) -> None:
    started = [start(api, door, order)["id"] for order in ORDERS]
    where = json.dumps({"customer.tier": "gold", "total": {"exists": True}})
    first = api.get("/api/instances", params={"definition": door, "where": where, "limit": 2})
    assert first.status_code == 200, first.text
    assert [item["id"] for item in first.json()["items"]] == [started[0], started[2]]
    cursor = first.json()["next_cursor"]
    rest = api.get(
        "/api/instances",
        params={"definition": door, "where": where, "limit": 2, "cursor": cursor},
    ).json()
    assert [item["id"] for item in rest["items"]] == [started[3]]
    assert rest["next_cursor"] is None
    for bad, says in (
        ("{not json", "not valid JSON"),
        ('["customer.tier"]', "JSON object"),
        ('{"customer.tier": {"like": "g%"}}', "unknown operator"),
        ('{"x\'--": 1}', "each key"),
    ):
        answer = api.get("/api/instances", params={"where": bad})
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"] == "InvalidInput" and says in answer.json()["message"]


def test_dashboard_filter_field_takes_the_list_commands_syntax(
    api: httpx.Client, door: str
) -> None:
    started = [start(api, door, order)["id"] for order in ORDERS]
    page = api.get("/instances", params={"definition": door, "where": "customer.tier=silver"})
    assert page.status_code == 200
    assert started[1] in page.text and started[0] not in page.text
    both = api.get(
        "/instances", params={"definition": door, "where": "customer.tier=gold; total<100"}
    )
    assert started[2] in both.text and started[0] not in both.text
    assert 'value="customer.tier=gold; total&lt;100"' in both.text  # kept in the field
    refused = api.get("/instances", params={"where": "customer.tier"})
    assert refused.status_code == 422 and "not path=value" in refused.text

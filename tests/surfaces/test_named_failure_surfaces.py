"""A failure with a name as a user sees it: `turnout show` (text and `--json`), `turnout
simulate`, `GET /api/instances/{id}` and the dashboard's instance page, on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_calls import send, start
from turnout_processes import INSTANCE_KEYS, run_turnout, unique

ORDER = """\
name: {name}
initial: waiting
states:
  waiting:
    on:
      ship: shipped
      refuse: {{to: refused, assign: {{why: event.why}}}}
  refused:
    final: failed
    error: {{type: OrderRefused, message: "'refused: ' + context.why"}}
  shipped: {{final: true}}
"""


def _json(result: Any) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def order_file(tmp_path: Path) -> Path:
    path = tmp_path / "order.yaml"
    path.write_text(ORDER.format(name="surface_order"))
    return path


def test_show_prints_the_error_a_failed_instance_ended_with(
    store_url: str, order_file: Path
) -> None:
    assert run_turnout("deploy", str(order_file), database=store_url).returncode == 0
    instance = _json(run_turnout("start", "surface_order", "--json", database=store_url))
    assert instance["error"] is None
    data = json.dumps({"why": "out of stock"})
    sent = run_turnout("send", instance["id"], "refuse", "--data", data, database=store_url)
    assert sent.returncode == 0, sent.stderr
    shown = _json(run_turnout("show", instance["id"], "--json", database=store_url))
    assert set(shown) == INSTANCE_KEYS | {"allowed"}
    assert shown["status"] == "failed"
    assert shown["error"] == {
        "type": "OrderRefused",
        "message": "refused: out of stock",
        "state": "refused",
        "seq": 2,
    }
    text = run_turnout("show", instance["id"], database=store_url)
    assert text.returncode == 0, text.stderr
    expected = "failed with OrderRefused: refused: out of stock (in refused, history #2)"
    assert expected in text.stdout


def test_simulate_prints_the_error_of_a_failed_run(order_file: Path) -> None:
    event = 'refuse={"why": "late"}'
    shown = run_turnout("simulate", str(order_file), "-e", event)
    assert shown.returncode == 0, shown.stderr
    assert "failed with OrderRefused: refused: late (in refused)" in shown.stdout
    as_data = _json(run_turnout("simulate", str(order_file), "-e", event, "--json"))
    assert as_data["error"] == {
        "type": "OrderRefused",
        "message": "refused: late",
        "state": "refused",
        "seq": 2,
    }
    fine = _json(run_turnout("simulate", str(order_file), "-e", "ship", "--json"))
    assert fine["status"] == "succeeded" and fine["error"] is None


def test_the_api_and_the_dashboard_show_the_error(api: httpx.Client) -> None:
    name = unique("order")
    deployed = api.post("/api/definitions", content=ORDER.format(name=name))
    assert deployed.status_code == 201, deployed.text
    instance = start(api, name)
    assert instance["error"] is None
    answer = send(api, instance["id"], "refuse", data={"why": "no <stock>"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["error"]["type"] == "OrderRefused"
    read = api.get(f"/api/instances/{instance['id']}").json()
    assert read["error"] == {
        "type": "OrderRefused",
        "message": "refused: no <stock>",
        "state": "refused",
        "seq": 2,
    }
    listed = api.get("/api/instances", params={"definition": name}).json()["items"]
    assert [item["error"] for item in listed] == [read["error"]]
    page = api.get(f"/instances/{instance['id']}")
    assert page.status_code == 200
    assert 'id="instance-error"' in page.text
    assert "OrderRefused" in page.text and "refused: no &lt;stock&gt;" in page.text
    assert "in refused, history #2" in page.text

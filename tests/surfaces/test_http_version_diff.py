"""Two versions of a definition over HTTP: `GET /api/definitions/{name}/diff?from=A&to=B` (the
changes and where the instances of A are, as JSON), `.../diff.svg` (both drawn as one picture
in the documented styles), and the dashboard's page comparing them. Unknown versions are 404s
and bad queries 422s, never a 500. The application runs in-process (`TestClient`), on SQLite
and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest
from fastapi.testclient import TestClient

import statemachines
from diagrams import DIFF_STYLES
from engine import Engine
from engine.api.app import create_app

DIFFS = Path(__file__).parents[1] / "statemachines" / "diffs"
SHOP_V1, SHOP_V2 = DIFFS / "shop_v1.yaml", DIFFS / "shop_v2.yaml"
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def client(store_url: str) -> Iterator[TestClient]:
    """Version 1 of the shop with two instances left in `labelled` (a state version 2
    removes) and one paying, then version 2; and `single`, deployed once."""
    engine = Engine(store_url)
    try:
        engine.deploy(SHOP_V1)
        ids = [engine.start("shop", {"amount": 5}).id for _ in range(3)]
        for claimed in engine.claim_tasks(["payments.charge"], limit=10):
            if claimed.instance_id != ids[0]:
                engine.complete_task(claimed.id, None, {"ok": True})
        for claimed in engine.claim_tasks(["warehouse.pack"], limit=10):
            engine.complete_task(claimed.id, None, {})
        engine.deploy(SHOP_V2)
        engine.deploy(SHOP_V1.read_text().replace("name: shop", "name: single"))
        with TestClient(create_app(engine), raise_server_exceptions=False) as test_client:
            yield test_client
    finally:
        engine.close()


def by_class(svg: str, css: str) -> dict[str, ElementTree.Element]:
    """The groups of the SVG whose classes include `css`, by id."""
    found = {}
    for group in ElementTree.fromstring(svg).iter(f"{SVG}g"):
        if css in group.get("class", "").split():
            found[group.get("id", "")] = group
    return found


def outline(group: ElementTree.Element) -> list[ElementTree.Element]:
    return [shape for tag in ("path", "polygon") for shape in group.iter(f"{SVG}{tag}")]


def test_the_json_is_the_diff_with_the_counts_of_the_older_version(client: TestClient) -> None:
    answer = client.get("/api/definitions/shop/diff", params={"from": 1, "to": 2})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected = statemachines.diff_definitions(
        statemachines.load(SHOP_V1), statemachines.load(SHOP_V2)
    )
    assert (body["name"], body["from"], body["to"]) == ("shop", 1, 2)
    assert statemachines.DefinitionDiff.from_json(body) == expected
    assert body["counts"] == {
        "pay": 1,
        "shipping": 2,
        "shipping.labelled": 2,
    }
    latest = client.get("/api/definitions/shop/diff", params={"from": 1})
    assert latest.status_code == 200 and latest.json() == body
    backwards = client.get("/api/definitions/shop/diff", params={"from": 2, "to": 1}).json()
    assert backwards["states"]["removed"] == ["refund", "shipping.packed"]
    assert backwards["counts"] == {}


def test_the_svg_marks_each_change_in_its_documented_style(client: TestClient) -> None:
    answer = client.get("/api/definitions/shop/diff.svg", params={"from": 1, "to": 2})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("image/svg+xml")
    svg = answer.text
    added, removed = DIFF_STYLES["added"], DIFF_STYLES["removed"]
    changed, stranded = DIFF_STYLES["changed"], DIFF_STYLES["stranded"]
    assert {"state-refund", "state-shipping.packed", "transition-refund-done-0-broken"} <= set(
        by_class(svg, "diff-added")
    )
    for group in by_class(svg, "diff-added").values():
        assert {shape.get("stroke") for shape in outline(group)} == {added.colour}
    for key, group in by_class(svg, "diff-removed").items():
        assert any(shape.get("stroke-dasharray") for shape in outline(group)), key
    edge = by_class(svg, "diff-removed")["transition-review-after-2d-0-broken"]
    assert {shape.get("stroke") for shape in outline(edge)} == {removed.colour}
    pay = by_class(svg, "diff-changed")["state-pay"]
    assert {shape.get("stroke") for shape in outline(pay)} == {changed.colour}
    assert "~ changed: retry, timeout" in "".join(pay.itertext())
    labelled = by_class(svg, "diff-stranded")["state-shipping.labelled"]
    assert {shape.get("stroke") for shape in outline(labelled)} == {stranded.colour}
    assert "⚠ 2 running in a removed state" in "".join(labelled.itertext())
    assert "diff-legend" in by_class(svg, "cluster")
    assert "shop: version 1 → version 2" in svg


@pytest.mark.parametrize("route", ["diff", "diff.svg"])
@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("from=9", 404),
        ("from=1&to=9", 404),
        ("from=99999999999999999999", 404),
        ("", 422),
        ("from=one", 422),
        ("from=0", 422),
        ("from=1&to=-2", 422),
    ],
)
def test_unknown_versions_are_404_and_bad_queries_422(
    client: TestClient, route: str, query: str, status: int
) -> None:
    answer = client.get(f"/api/definitions/shop/{route}?{query}")
    assert answer.status_code == status, answer.text
    assert answer.json()["message"]
    missing = client.get(f"/api/definitions/no_such_definition/{route}?from=1")
    assert missing.status_code == 404 and missing.json()["error"] == "DefinitionNotFound"


def test_the_dashboard_page_shows_the_picker_summary_and_picture(client: TestClient) -> None:
    definition = client.get("/definitions/shop")
    assert definition.status_code == 200
    # The & between query values is escaped in the attribute, as HTML wants.
    assert 'href="/definitions/shop/diff?from=1&amp;to=2"' in definition.text
    page = client.get("/definitions/shop/diff", params={"from": 1, "to": 2})
    assert page.status_code == 200, page.text
    html = page.text
    assert "shop</a>: version 1 → version 2" in html
    assert 'id="version-picker"' in html and '<option value="2" selected>' in html
    expected = statemachines.diff_definitions(
        statemachines.load(SHOP_V1), statemachines.load(SHOP_V2)
    )
    assert "- state shipping.labelled" in html and "+ state refund" in html
    assert f"states: {len(expected.states_added)} added" in html
    assert 'id="versions-stranded"' in html and "shipping.labelled: 2" in html
    svg = html[html.index("<svg") : html.index("</svg>") + len("</svg>")]
    assert "diff-legend" in by_class(svg, "cluster")
    assert "state-refund" in by_class(svg, "diff-added")
    assert client.get("/definitions/shop/diff").text == html  # the latest two by default


def test_the_dashboard_answers_bad_versions_with_a_page_not_a_500(client: TestClient) -> None:
    word = client.get("/definitions/shop/diff", params={"from": "one"})
    assert word.status_code == 422 and "not a version number" in word.text
    assert client.get("/definitions/shop/diff", params={"from": 9}).status_code == 404
    assert client.get("/definitions/no_such_definition/diff").status_code == 404
    single = client.get("/definitions/single")
    assert single.status_code == 200 and "/definitions/single/diff" not in single.text
    alone = client.get("/definitions/single/diff")
    assert alone.status_code == 200 and "no changes" in alone.text


def test_the_openapi_description_lists_both_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/definitions/{name}/diff", "/api/definitions/{name}/diff.svg"):
        assert set(paths[path]) == {"get"}
        names = {parameter["name"] for parameter in paths[path]["get"]["parameters"]}
        assert names == {"name", "from", "to"}

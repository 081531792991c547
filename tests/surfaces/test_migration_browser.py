"""The dashboard's migration page in a real headless Chromium, against a real `turnout serve`:
from a definition with two versions to the plan, a state map added, and the Apply button."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect
from turnout_processes import Server, unique

CLAIMS = Path(__file__).parent.parent / "engine" / "definitions"
WAIT_MS = 20_000


def test_a_person_plans_the_move_adds_a_state_map_and_applies_it(page: Page, site: Server) -> None:
    name = unique("claims")
    with site.client() as api:
        texts = [
            (CLAIMS / f"claims_v{version}.yaml")
            .read_text()
            .replace("name: claims", f"name: {name}")
            for version in (1, 2)
        ]
        assert api.post("/api/definitions", content=texts[0]).status_code == 201
        ids = [api.post("/api/instances", json={"definition": name}).json()["id"] for _ in "ab"]
        assert api.post(f"/api/instances/{ids[1]}/events", json={"event": "hold"}).is_success
        assert api.post("/api/definitions", content=texts[1]).status_code == 201
        page.goto(f"/definitions/{name}")
        page.click("#migrate-link")
        counts = page.locator("#counts")
        expect(counts).to_contain_text("safe: 1")
        expect(counts).to_contain_text("impossible: 1")
        expect(page.locator("#impossible")).to_contain_text("no state 'legacy_hold'")
        expect(page.locator("#diagram svg")).to_be_visible()
        page.fill("#map", "legacy_hold=on_hold")
        page.click("#plan")
        expect(counts).to_contain_text("mapped: 1")
        expect(page.locator("#apply")).to_have_text("Apply: move 2 instance(s) to v2")
        page.click("#apply")
        expect(page.locator("#outcomes")).to_contain_text("migrated: 2")
        held = api.get(f"/api/instances/{ids[1]}").json()
        assert (held["version"], held["state"]) == (2, "on_hold")
        assert api.get(f"/api/instances/{ids[0]}").json()["version"] == 2

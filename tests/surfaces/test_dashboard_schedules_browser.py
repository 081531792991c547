"""The dashboard's schedules page in a real headless Chromium, against a real `turnout serve`
process: reached from the navigation, it lists each schedule's next run in its time zone."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect
from turnout_processes import Server, definition_text, unique


@pytest.fixture
def api(site: Server) -> Iterator[httpx.Client]:
    with site.client() as client:
        yield client


def test_the_schedules_page_lists_next_runs_and_paused_schedules(
    page: Page, api: httpx.Client
) -> None:
    name = unique("ticking")
    assert api.post("/api/definitions", content=definition_text("counter.yaml", name)).is_success
    for schedule in (
        {
            "name": f"{name}-paris",
            "definition": name,
            "cron": "0 7 * * *",
            "timezone": "Europe/Paris",
        },
        {"name": f"{name}-often", "definition": name, "every": "10m"},
    ):
        assert api.post("/api/schedules", json=schedule).status_code == 201
    assert api.post(f"/api/schedules/{name}-often/pause").is_success
    page.goto("/")
    page.click("nav >> text=Schedules")
    expect(page).to_have_url(f"{page.url.split('/schedules')[0]}/schedules")
    paris = page.locator(f"tr[data-name='{name}-paris']")
    expect(paris).to_contain_text("0 7 * * *")
    expect(paris).to_contain_text("Europe/Paris")
    expect(paris.locator(".next-run")).to_contain_text("07:00:00 CE")
    expect(paris.locator(".state")).to_have_text("active")
    often = page.locator(f"tr[data-name='{name}-often']")
    expect(often).to_contain_text("every 10m")
    expect(often.locator(".state")).to_have_text("paused")

"""The instance page's Redrive button and Reset form in a real headless Chromium, against a
real `turnout serve` process."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect
from turnout_processes import Server, definition_text, unique

WAIT_MS = 20_000


@pytest.fixture
def api(site: Server) -> Iterator[httpx.Client]:
    with site.client() as client:
        yield client


@pytest.fixture
def failed(api: httpx.Client) -> tuple[str, str]:
    """A review whose task an external worker failed: (instance id, task name)."""
    name, task = unique("review"), unique("check")
    text = definition_text("review.yaml", name).replace("review.check", task)
    assert api.post("/api/definitions", content=text).is_success
    instance = api.post("/api/instances", json={"definition": name, "data": {"amount": 5}}).json()
    [claimed] = api.post("/api/tasks/claim", json={"tasks": [task], "worker": "w"}).json()
    api.post(f"/api/tasks/{claimed['id']}/fail", json={"worker": "w", "error": "away"})
    return str(instance["id"]), task


def test_the_redrive_button_restarts_a_failed_instance(
    page: Page, api: httpx.Client, failed: tuple[str, str]
) -> None:
    instance_id, task = failed
    page.goto(f"/instances/{instance_id}")
    expect(page.locator("#status")).to_have_text("failed")
    page.fill("#redrive-reason", "reviewer back")
    page.click("#redrive")
    expect(page.locator("#status")).to_have_text("running")
    expect(page.locator("#redrive-form")).to_have_count(0)
    expect(page.locator("#history tbody tr").last).to_contain_text("redrive")
    assert api.post("/api/tasks/claim", json={"tasks": [task], "worker": "w"}).json() != []


def test_the_reset_form_moves_the_instance_to_the_chosen_state_with_its_patch(
    page: Page, api: httpx.Client, failed: tuple[str, str]
) -> None:
    instance_id, _ = failed
    page.goto(f"/instances/{instance_id}")
    page.click("#reset summary")
    page.select_option("#reset-state", "approved")
    page.fill("#reset-reason", "approved by phone")
    page.fill("#reset-patch", '{"by": "ops"}')
    page.click("#reset-button")
    expect(page.locator("#state")).to_have_text("approved")
    expect(page.locator("#status")).to_have_text("succeeded")
    expect(page.locator("#context")).to_contain_text('"by": "ops"')
    expect(page.locator("#history tbody tr").last).to_contain_text("reset")


def test_a_reset_with_a_patch_that_is_not_json_shows_the_error_and_changes_nothing(
    page: Page, api: httpx.Client, failed: tuple[str, str]
) -> None:
    instance_id, _ = failed
    revision = api.get(f"/api/instances/{instance_id}").json()["revision"]
    page.goto(f"/instances/{instance_id}")
    page.click("#reset summary")
    page.fill("#reset-reason", "try")
    page.fill("#reset-patch", "{oops")
    page.click("#reset-button")
    expect(page.locator("p.error[role=alert]")).to_contain_text("not valid JSON")
    assert api.get(f"/api/instances/{instance_id}").json()["revision"] == revision

"""Time travel on the dashboard's instance page, in a real headless Chromium against a real
`turnout serve`: previous, next and the slider step through the instance's history, the
diagram is redrawn as it stood then, the step's context changes are shown, and "now" returns
to the live page, which follows changes again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect
from turnout_processes import Server, definition_text, running_server, unique

WAIT_MS = 20_000


@pytest.fixture
def api(site: Server) -> Iterator[httpx.Client]:
    with site.client() as client:
        yield client


@pytest.fixture
def trip(api: httpx.Client) -> str:
    """An instance of a fresh copy of `trip.yaml` with four commits: started for ana, booked
    for 2 seats, changed to 3, boarded at gate B4. Its id."""
    name = unique("trip")
    assert api.post("/api/definitions", content=definition_text("trip.yaml", name)).is_success
    started = api.post("/api/instances", json={"definition": name, "data": {"traveller": "ana"}})
    assert started.status_code == 201, started.text
    instance_id: str = started.json()["id"]
    for event, data in (
        ("book", {"seats": 2}),
        ("change", {"seats": 3}),
        ("board", {"gate": "B4"}),
    ):
        sent = api.post(f"/api/instances/{instance_id}/events", json={"event": event, "data": data})
        assert sent.status_code == 200, sent.text
    return instance_id


def active_states(page: Page) -> list[str]:
    """The states the diagram on the page marks active (its nodes are `state-<path>`)."""
    marked: list[str] = page.eval_on_selector_all(
        "#diagram svg g[id^='state-'].active", "nodes => nodes.map(node => node.id.slice(6))"
    )
    return marked


def expect_active(page: Page, state: str) -> None:
    """Wait until the diagram marks `state`, and only it, active."""
    page.wait_for_function(
        """state => {
            const marked = document.querySelectorAll("#diagram svg g[id^='state-'].active");
            return marked.length === 1 && marked[0].id === "state-" + state;
        }""",
        arg=state,
    )


def test_stepping_back_redraws_the_diagram_shows_the_context_changes_and_now_returns(
    page: Page, api: httpx.Client, trip: str
) -> None:
    page.goto(f"/instances/{trip}")
    expect(page.locator("#state")).to_have_text("travelling")
    assert active_states(page) == ["travelling"]
    live_svg = page.inner_html("#diagram")
    previous = page.get_by_role("button", name="Previous step of the history")
    following = page.get_by_role("button", name="Next step of the history")
    back_to_now = page.get_by_role("button", name="Back to now")
    slider = page.get_by_role("slider", name="Step of the history")
    expect(following).to_be_disabled()
    expect(back_to_now).to_be_disabled()

    previous.click()  # the commit before now: the change of seats, still booked
    expect(page.locator("#travel-where")).to_have_text("step 3 of 4")
    expect(page.locator("#travel-state")).to_have_text("booked")
    expect(page.locator("#travel-status")).to_have_text("running")
    expect(page.locator("#travel-entries")).to_have_text("#3")
    expect_active(page, "booked")
    assert page.inner_html("#diagram") != live_svg
    changed = page.locator("#travel-diff li.diff-changed")
    expect(changed).to_have_count(1)
    expect(changed).to_contain_text("seats: 2 → 3")
    expect(page.locator("#travel-diff li.diff-added")).to_have_count(0)
    expect(page.locator("#context")).to_contain_text('"seats": 3')
    expect(page.locator("#context")).not_to_contain_text("gate")
    expect(page.locator("#history tr.travel-step")).to_have_count(1)
    expect(page.locator("#history tr.travel-step td").first).to_have_text("3")
    expect(page.locator("#history tr.travel-later")).to_have_count(1)
    expect(slider).to_have_value("3")
    expect(page.locator("#state")).to_have_text("travelling")  # the live header stays now

    slider.fill("1")  # the start: planning, the start's data added
    expect(page.locator("#travel-where")).to_have_text("step 1 of 4")
    expect(page.locator("#travel-state")).to_have_text("planning")
    expect_active(page, "planning")
    added = page.locator("#travel-diff li.diff-added")
    expect(added).to_have_count(1)
    expect(added).to_contain_text('traveller = "ana"')
    expect(previous).to_be_disabled()

    following.click()  # booked: seats added
    expect(page.locator("#travel-state")).to_have_text("booked")
    expect_active(page, "booked")
    expect(page.locator("#travel-diff li.diff-added")).to_contain_text("seats = 2")
    expect(page.locator("#history tr.travel-later")).to_have_count(2)

    back_to_now.click()
    expect_active(page, "travelling")
    expect(page.locator("#travel-step")).to_be_hidden()
    expect(page.locator("#history tr.travel-step")).to_have_count(0)
    expect(page.locator("#context")).to_contain_text('"gate": "B4"')
    expect(slider).to_have_value("4")
    expect(back_to_now).to_be_disabled()


def test_the_page_holds_the_past_while_the_instance_moves_and_now_catches_up(
    page: Page, api: httpx.Client, trip: str
) -> None:
    page.goto(f"/instances/{trip}")
    page.get_by_role("button", name="Previous step of the history").click()
    expect(page.locator("#travel-state")).to_have_text("booked")
    expect_active(page, "booked")
    page.evaluate("window.stillTheSamePage = true")
    moved = api.post(f"/api/instances/{trip}/events", json={"event": "arrive"})
    assert moved.status_code == 200, moved.text
    expect(page.locator("#travel-state")).to_have_text("booked")
    page.get_by_role("button", name="Back to now").click()
    expect(page.locator("#state")).to_have_text("arrived")
    expect(page.locator("#status")).to_have_text("succeeded")
    expect_active(page, "arrived")
    expect(page.get_by_role("slider", name="Step of the history")).to_have_value("5")
    assert page.evaluate("window.stillTheSamePage") is True


def test_an_instance_just_started_has_nothing_to_step_back_to(
    page: Page, api: httpx.Client
) -> None:
    name = unique("trip")
    assert api.post("/api/definitions", content=definition_text("trip.yaml", name)).is_success
    started = api.post("/api/instances", json={"definition": name})
    page.goto(f"/instances/{started.json()['id']}")
    expect(page.get_by_role("button", name="Previous step of the history")).to_be_disabled()
    expect(page.get_by_role("slider", name="Step of the history")).to_be_disabled()


def test_a_history_changed_by_hand_is_stepped_through_up_to_the_change_and_says_so(
    page: Page, site: Server, trip: str
) -> None:
    database = sa.create_engine(site.database)
    try:
        with database.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE turnout_history SET event = 'teleport' "
                    "WHERE instance_id = :id AND seq = 3"
                ),
                {"id": trip},
            )
    finally:
        database.dispose()
    page.goto(f"/instances/{trip}")
    page.get_by_role("button", name="Previous step of the history").click()
    expect(page.locator("#travel-problem")).to_contain_text(
        "the history replays only up to entry 2"
    )
    expect(page.locator("#travel-where")).to_have_text("step 2 of 2")
    expect(page.locator("#travel-state")).to_have_text("booked")
    expect_active(page, "booked")
    expect(page.get_by_role("button", name="Next step of the history")).to_be_disabled()
    page.get_by_role("button", name="Back to now").click()
    expect_active(page, "travelling")
    expect(page.locator("#travel-problem")).to_be_hidden()


def test_behind_a_token_a_signed_in_page_steps_through_the_history(
    chromium: Any, tmp_path: Path
) -> None:
    """The step-through reads the timeline and the diagrams with the browser's session."""
    token = "travel-token"
    with running_server(f"sqlite:///{tmp_path}/turnout.db", tmp_path, token=token) as server:
        with server.client() as api:
            assert api.post("/api/definitions", content=definition_text("trip.yaml")).is_success
            started = api.post("/api/instances", json={"definition": "surface_trip"}).json()
            booked = {"event": "book", "data": {"seats": 1}}
            assert api.post(f"/api/instances/{started['id']}/events", json=booked).is_success
        context = chromium.new_context(base_url=server.base_url)
        try:
            page = context.new_page()
            page.set_default_timeout(WAIT_MS)
            page.goto(f"/login?next=/instances/{started['id']}")
            page.fill("input[name=token]", token)
            page.click("form button")
            expect(page.locator("#state")).to_have_text("booked")
            page.wait_for_load_state("load")  # the page's script has bound the buttons
            page.get_by_role("button", name="Previous step of the history").click()
            expect(page.locator("#travel-state")).to_have_text("planning")
            expect_active(page, "planning")
            expect(page.locator("#travel-problem")).to_be_hidden()
        finally:
            context.close()

"""The web dashboard in a real headless Chromium, against a real `turnout serve` process.

Pages are checked the way a person sees them: what the page shows, what the diagram marks as
current, and that the instance page follows changes made elsewhere without a reload.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect
from turnout_processes import Server, definition_text, running_server, unique

WAIT_MS = 20_000


@pytest.fixture
def api(site: Server) -> Iterator[httpx.Client]:
    with site.client() as client:
        yield client


@pytest.fixture
def door(api: httpx.Client) -> str:
    """A freshly deployed copy of `definitions/door.yaml`: its name."""
    name = unique("door")
    assert api.post("/api/definitions", content=definition_text("door.yaml", name)).is_success
    return name


def start(api: httpx.Client, definition: str, **body: Any) -> dict[str, Any]:
    answer = api.post("/api/instances", json={"definition": definition, **body})
    assert answer.status_code == 201, answer.text
    instance: dict[str, Any] = answer.json()
    return instance


def node_classes(page: Page, state: str) -> list[str]:
    """The classes of the diagram node that draws `state` on the page (its inline SVG)."""
    classes: list[str] = page.eval_on_selector(
        f"#diagram svg [id='state-{state}']", "node => Array.from(node.classList)"
    )
    return classes


def test_home_page_lists_definitions_and_opens_one_with_its_diagram(
    page: Page, api: httpx.Client, door: str
) -> None:
    first = start(api, door)
    start(api, door)
    page.goto("/")
    card = page.locator(f"section.card[data-definition='{door}']")
    expect(card).to_contain_text("2 instances")
    expect(card).to_contain_text("running: 2")
    expect(card).to_contain_text("closed: 2")
    thumbnail = card.locator("img.thumb")
    expect(thumbnail).to_be_visible()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=thumbnail.element_handle()
    )
    card.locator("h2 a").click()
    expect(page).to_have_url(f"{page.url.split('/definitions')[0]}/definitions/{door}")
    expect(page.locator("h1")).to_have_text(door)
    assert "heat" in node_classes(page, "closed")
    assert {"state-opened", "state-locked", "state-retired"} <= set(
        page.eval_on_selector_all("#diagram svg g[id^='state-']", "nodes => nodes.map(n => n.id)")
    )
    page.locator(f"a[href='/instances/{first['id']}']").click()
    expect(page.locator("#live")).to_have_attribute("data-instance", first["id"])


def test_sending_an_event_with_the_form_shows_the_new_state_on_the_page_and_diagram(
    page: Page, api: httpx.Client, door: str
) -> None:
    instance = start(api, door, data={"room": "hall"})
    page.goto(f"/instances/{instance['id']}")
    expect(page.locator("#state")).to_have_text("closed")
    assert "active" in node_classes(page, "closed")
    expect(page.locator("#context")).to_contain_text('"room": "hall"')
    page.select_option("#event", "lock")
    page.fill("#data", '{"by": "ana"}')
    page.click("#send")
    expect(page.locator("#state")).to_have_text("locked")
    expect(page.locator("#status")).to_have_text("running")
    assert "active" in node_classes(page, "locked")
    assert "active" not in node_classes(page, "closed")
    assert "visited" in node_classes(page, "closed")
    expect(page.locator("#history tbody tr").last).to_contain_text("lock")
    assert [o.strip() for o in page.locator("#event option").all_inner_texts()] == [
        "unlock",
        "retire",
    ]
    history = api.get(f"/api/instances/{instance['id']}/history").json()
    assert history[-1]["event"] == "lock" and history[-1]["data"] == {"by": "ana"}


def test_the_instance_page_follows_changes_made_through_the_api_without_a_reload(
    page: Page, api: httpx.Client, door: str
) -> None:
    instance = start(api, door)
    page.goto(f"/instances/{instance['id']}")
    expect(page.locator("#state")).to_have_text("closed")
    page.evaluate("window.stillTheSamePage = true")
    moved = api.post(f"/api/instances/{instance['id']}/events", json={"event": "open"})
    assert moved.status_code == 200
    expect(page.locator("#state")).to_have_text("opened")
    expect(page.locator("#revision")).to_have_text(str(moved.json()["revision"]))
    assert "active" in node_classes(page, "opened")
    assert page.evaluate("window.stillTheSamePage") is True
    api.post(f"/api/instances/{instance['id']}/cancel")
    expect(page.locator("#status")).to_have_text("cancelled")
    expect(page.locator("#send-form")).to_have_count(0)
    assert page.evaluate("window.stillTheSamePage") is True


def test_a_parallel_instance_shows_every_active_state_and_follows_one_region(
    page: Page, api: httpx.Client
) -> None:
    name = unique("shipment")
    assert api.post("/api/definitions", content=definition_text("shipment.yaml", name)).is_success
    instance = start(api, name)
    page.goto(f"/instances/{instance['id']}")
    expect(page.locator("#live")).to_contain_text("preparing.label.waiting_label")
    assert "active" in node_classes(page, "preparing.pack.pack")
    assert "active" in node_classes(page, "preparing.label.waiting_label")
    page.select_option("#event", "printed")
    page.click("#send")
    expect(page.locator("#live")).to_contain_text("preparing.label.labelled")
    assert "active" in node_classes(page, "preparing.label.labelled")
    assert "active" not in node_classes(page, "preparing.label.waiting_label")
    assert "active" in node_classes(page, "preparing.pack.pack")


def test_data_that_is_not_json_is_shown_as_an_error_and_changes_nothing(
    page: Page, api: httpx.Client, door: str
) -> None:
    instance = start(api, door)
    page.goto(f"/instances/{instance['id']}")
    page.select_option("#event", "open")
    page.fill("#data", "{oops")
    page.click("#send")
    expect(page.locator("p.error[role=alert]")).to_contain_text("not valid JSON")
    expect(page.locator("#state")).to_have_text("closed")
    assert api.get(f"/api/instances/{instance['id']}").json()["revision"] == instance["revision"]


def test_the_cancel_form_cancels_the_instance(page: Page, api: httpx.Client, door: str) -> None:
    instance = start(api, door)
    page.goto(f"/instances/{instance['id']}")
    page.fill("#cancel-form input[name=reason]", "moved out")
    page.click("#cancel-form button")
    expect(page.locator("#status")).to_have_text("cancelled")
    expect(page.locator("#cancel-form")).to_have_count(0)
    assert api.get(f"/api/instances/{instance['id']}").json()["status"] == "cancelled"


def test_the_instance_list_finds_an_instance_by_its_business_key(
    page: Page, api: httpx.Client, door: str
) -> None:
    key = unique("order")
    wanted = start(api, door, key=key)
    start(api, door, key=unique("other"))
    page.goto(f"/instances?definition={door}")
    expect(page.locator("table.list tbody tr")).to_have_count(2)
    page.fill("input[name=q]", key)
    page.click("form.filters button")
    rows = page.locator("table.list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(key)
    rows.first.locator("a").first.click()
    expect(page.locator("#live")).to_have_attribute("data-instance", wanted["id"])


def test_a_stale_link_to_an_unknown_instance_or_definition_says_not_found(page: Page) -> None:
    for path, name in (
        ("/instances/no-such-id", "no-such-id"),
        ("/definitions/no_such_definition", "no_such_definition"),
    ):
        answer = page.goto(path)
        assert answer is not None and answer.status == 404
        expect(page.locator("h1")).to_have_text("Not found")
        expect(page.locator("p.error")).to_contain_text(name)


def test_behind_a_token_the_signed_in_page_still_follows_changes_live(
    chromium: Any, tmp_path: Path
) -> None:
    token = "browser-token"
    with running_server(f"sqlite:///{tmp_path}/turnout.db", tmp_path, token=token) as server:
        with server.client() as api:
            assert api.post("/api/definitions", content=definition_text("door.yaml")).is_success
            instance = start(api, "surface_door")
            context = chromium.new_context(base_url=server.base_url)
            try:
                page = context.new_page()
                page.set_default_timeout(WAIT_MS)
                page.goto(f"/instances/{instance['id']}")
                expect(page).to_have_url(re.compile(r"/login\?next="))
                page.fill("input[name=token]", token)
                page.click("form button")
                expect(page.locator("#state")).to_have_text("closed")
                page.evaluate("window.stillTheSamePage = true")
                moved = api.post(f"/api/instances/{instance['id']}/events", json={"event": "lock"})
                assert moved.status_code == 200
                expect(page.locator("#state")).to_have_text("locked")
                assert page.evaluate("window.stillTheSamePage") is True
            finally:
                context.close()


def test_what_users_send_is_shown_as_text_and_never_becomes_markup(
    page: Page, api: httpx.Client, door: str
) -> None:
    key = f"<img src=x onerror=window.injected=1>{unique('k')}"
    note = "</pre><script>window.injected = 2</script>"
    instance = start(api, door, key=key, data={"note": note})
    quoted = {"x": '" onmouseover="window.injected=3" y="'}
    assert (
        api.post(
            f"/api/instances/{instance['id']}/events", json={"event": "open", "data": quoted}
        ).status_code
        == 200
    )
    page.goto(f"/instances/{instance['id']}")
    expect(page.locator("#live strong").first).to_have_text(key)
    expect(page.locator("#context")).to_contain_text(note)
    row = page.locator("#history tbody tr").nth(1)
    assert row.get_attribute("onmouseover") is None
    assert json.loads(row.get_attribute("title") or "null") == quoted
    row.hover()
    assert page.evaluate("window.injected === undefined")


@pytest.fixture
def other_site(tmp_path: Path) -> Iterator[str]:
    """The address of a page of another site on the same machine (a plain file server): one
    of turnout's own pages would carry its policy, letting its scripts reach turnout only."""
    (tmp_path / "index.html").write_text("<p>elsewhere</p>")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://localhost:{server.server_address[1]}/"
        server.shutdown()


def test_a_page_of_another_site_cannot_change_instances_on_the_server(
    page: Page, api: httpx.Client, door: str, site: Server, other_site: str
) -> None:
    """A script or form elsewhere in the browser reaches the loopback server but is refused."""
    instance = start(api, door)
    page.goto(other_site)
    target = f"{site.base_url}/api/instances/{instance['id']}"
    page.evaluate(
        """async target => {
            await fetch(target + "/cancel", {method: "POST", mode: "no-cors"});
            await fetch(target + "/events", {method: "POST", mode: "no-cors",
                                             body: JSON.stringify({event: "open"})});
        }""",
        target,
    )
    page.set_content(
        f'<form method="post" action="{site.base_url}/instances/{instance["id"]}/events">'
        '<input name="event" value="lock"><button id="go">go</button></form>'
    )
    with page.expect_navigation():
        page.click("#go")
    assert "other sites" in page.content()
    after = api.get(f"/api/instances/{instance['id']}").json()
    assert after["status"] == "running" and after["revision"] == instance["revision"]

"""The dashboard's lists in a real headless Chromium, at 1280×800 and at a phone's 390×844:
1,000 instances filtered and sorted with the page's own controls and checked against the
database, ids told apart and copied, an awkward business key carried through every link, and
the layout of the list compared with a recorded golden one (boxes, with a tolerance).

Set TURNOUT_RECORD_GOLDEN=1 to write the golden layout again after a change meant to move it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from turnout_processes import Server, definition_text, unique

from engine import Engine, Instance

WAIT_MS = 20_000
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}
GOLDEN = Path(__file__).parent / "golden" / "list_layout.json"
AWKWARD_KEY = "a b&c/d#e?ü=%20+日本"


@dataclass(frozen=True)
class Population:
    """The 1,000 instances of one definition, as the database has them."""

    name: str
    instances: list[Instance]


@pytest.fixture(scope="module")
def database(site: Server) -> Iterator[Engine]:
    """An engine on the server's own database, for starting many instances at once and for
    reading what the page should show."""
    engine = Engine(site.database)
    try:
        yield engine
    finally:
        engine.close()


@pytest.fixture(scope="module")
def thousand(database: Engine) -> Population:
    """1,000 door instances started in batches (many in one instant: ids break the tie),
    keyed but every seventh, a third opened, some locked and some of those retired."""
    name = unique("door")
    database.deploy(definition_text("door.yaml", name))
    keys = [None if n % 7 == 3 else f"order-{(n * 37) % 1000:04d}" for n in range(1000)]
    ids = database.start_many(name, [{"n": n} for n in range(1000)], keys=keys, batch=100)
    for n, instance_id in enumerate(ids):
        if n % 3 == 1:
            database.send(instance_id, "open")
        elif n % 5 == 2:
            database.send(instance_id, "lock")
            if n % 10 == 2:
                database.send(instance_id, "retire")
    return Population(name, database.instances(definition=name, limit=10_000))


@pytest.fixture(params=sorted(SIZES))
def screen(request: pytest.FixtureRequest, chromium: Browser, site: Server) -> Iterator[Page]:
    """A page of a browser window of one of SIZES, allowed to use the clipboard."""
    width, height = SIZES[request.param]
    context = chromium.new_context(
        base_url=site.base_url, viewport={"width": width, "height": height}
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.base_url)
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield tab
    finally:
        context.close()
    assert errors == [], f"the page's script failed: {errors}"


def ordered(instances: list[Instance], sort: str) -> list[str]:
    """The ids in the order `sort` names, as the database orders them (ties by id)."""
    name = sort.removeprefix("-")
    value: Callable[[Instance], Any] = {
        "created": lambda i: i.created_at,
        "key": lambda i: i.key or "",
        "state": lambda i: i.state,
        "revision": lambda i: i.revision,
    }[name]
    found = sorted(instances, key=lambda i: (value(i), i.id), reverse=sort.startswith("-"))
    return [i.id for i in found]


def shown_ids(page: Page) -> list[str]:
    ids: list[str] = page.eval_on_selector_all(
        "#instance-list tbody tr[data-id]", "rows => rows.map(row => row.dataset.id)"
    )
    return ids


def no_page_overflow(page: Page) -> None:
    """Nothing makes the page wider than the window (a wide table scrolls in its box)."""
    wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert wide <= 0, f"the page is {wide}px wider than the window"


def unfold_filters(page: Page) -> None:
    """Open the filters where a narrow screen shows them folded (by lists.js, which runs
    before the page's load event: read the box only after it)."""
    page.wait_for_load_state("load")
    box = page.locator("#filter-box")
    if box.get_attribute("open") is None:
        page.locator("#filter-box summary").click()
    expect(page.get_by_role("button", name="Filter")).to_be_visible()


def matching(page: Page, count: int) -> None:
    plural = "" if count == 1 else "s"
    expect(page.locator("#matching")).to_contain_text(f"{count:,} instance{plural} match")


def test_a_thousand_instances_filtered_and_sorted_agree_with_the_database(
    screen: Page, thousand: Population
) -> None:
    page, everyone = screen, thousand.instances
    page.goto(f"/instances?definition={thousand.name}")
    matching(page, 1000)
    assert shown_ids(page) == ordered(everyone, "-created")[:50]
    expect(page.locator("th[data-column=started]")).to_have_attribute("aria-sort", "descending")
    no_page_overflow(page)

    unfold_filters(page)
    page.get_by_role("combobox", name="status", exact=True).select_option("running")
    page.get_by_role("textbox", name="state", exact=True).fill("opened")
    page.get_by_role("button", name="Filter").click()
    chosen = [i for i in everyone if i.status == "running" and i.state == "opened"]
    assert len(chosen) > 100
    matching(page, len(chosen))
    assert shown_ids(page) == ordered(chosen, "-created")[:50]

    page.get_by_role("link", name="sort by key").click()
    expect(page.locator("th[data-column=key]")).to_have_attribute("aria-sort", "ascending")
    matching(page, len(chosen))
    by_key = ordered(chosen, "key")
    assert shown_ids(page) == by_key[:50]
    page.get_by_role("link", name="next").click()
    expect(page.locator("th[data-column=key]")).to_have_attribute("aria-sort", "ascending")
    assert shown_ids(page) == by_key[50:100]
    page.get_by_role("link", name="next").click()
    assert shown_ids(page) == by_key[100:150]
    page.get_by_role("link", name="previous").click()
    assert shown_ids(page) == by_key[50:100]
    expect(page.locator("#filters input[name=state]")).to_have_value("opened")

    page.get_by_role("link", name="sort by key, descending").click()
    expect(page.locator("th[data-column=key]")).to_have_attribute("aria-sort", "descending")
    assert shown_ids(page) == ordered(chosen, "-key")[:50]
    no_page_overflow(page)


def test_a_time_range_and_a_key_prefix_select_what_the_database_holds(
    screen: Page, thousand: Population
) -> None:
    page, everyone = screen, thousand.instances
    middle = sorted(i.created_at for i in everyone)[500]
    since = middle.replace(microsecond=0)
    until = since + timedelta(seconds=2)
    page.goto(f"/instances?definition={thousand.name}")
    unfold_filters(page)
    page.get_by_label("from (UTC)").fill(since.strftime("%Y-%m-%dT%H:%M:%S"))
    page.get_by_label("to (UTC, not included)").fill(until.strftime("%Y-%m-%dT%H:%M:%S"))
    page.get_by_role("textbox", name="key starts with").fill("order-01")
    page.get_by_role("button", name="Filter").click()
    chosen = [
        i
        for i in everyone
        if since <= i.created_at < until and (i.key or "").startswith("order-01")
    ]
    matching(page, len(chosen))
    assert shown_ids(page) == ordered(chosen, "-created")[:50]
    page.get_by_role("link", name="sort by rev").click()
    assert shown_ids(page) == ordered(chosen, "-revision")[:50]
    expect(page.locator("#filters input[name=q]")).to_have_value("order-01")


def test_ids_of_one_instant_are_told_apart_and_copied(screen: Page, thousand: Population) -> None:
    page = screen
    page.goto(f"/instances?definition={thousand.name}&sort=created")
    links = page.locator("#instance-list tbody a.id")
    expect(links).to_have_count(50)
    ids = shown_ids(page)
    # Started within a few milliseconds, they share their first digits (the time): the
    # random tail is what tells them apart.
    assert len({i[:8] for i in ids}) < len(ids)
    shown = links.evaluate_all("links => links.map(link => link.innerText.trim())")
    assert len(set(shown)) == len(shown), shown
    phone = page.viewport_size is not None and page.viewport_size["width"] < 700
    assert all(len(text) == (17 if phone else 32) for text in shown), shown
    assert all(text[-8:] == ids[n][-8:] for n, text in enumerate(shown))
    button = page.get_by_role("button", name=f"Copy id {ids[3]}")
    button.click()
    expect(page.locator("#copied")).to_have_text(f"Copied {ids[3]}")
    assert page.evaluate("navigator.clipboard.readText()") == ids[3]
    expect(page.get_by_role("link", name=f"instance {ids[3]}")).to_be_visible()


@pytest.fixture(scope="module")
def awkward(site: Server) -> tuple[str, str]:
    """A definition with one instance whose business key holds every character a link must
    encode: (definition, instance id)."""
    name = unique("door")
    with site.client() as api:
        assert api.post("/api/definitions", content=definition_text("door.yaml", name)).is_success
        started = api.post("/api/instances", json={"definition": name, "key": AWKWARD_KEY})
        assert started.status_code == 201, started.text
        api.post("/api/instances", json={"definition": name, "key": "a b&c"})
        return name, str(started.json()["id"])


def test_an_awkward_key_survives_every_link_it_goes_through(
    screen: Page, awkward: tuple[str, str]
) -> None:
    page, (name, wanted) = screen, awkward
    page.goto("/")
    page.locator(f"section.card[data-definition='{name}'] a.all").click()
    matching(page, 2)
    unfold_filters(page)
    page.get_by_role("textbox", name="key starts with").fill(AWKWARD_KEY)
    page.get_by_role("button", name="Filter").click()
    matching(page, 1)
    expect(page.locator("#instance-list td.cell-key")).to_have_text(AWKWARD_KEY)
    page.get_by_role("link", name="sort by state").click()
    matching(page, 1)
    expect(page.locator("#filters input[name=q]")).to_have_value(AWKWARD_KEY)
    assert "#" not in page.url and shown_ids(page) == [wanted]
    unfold_filters(page)
    page.get_by_role("textbox", name="key starts with").fill("a b&c")
    page.get_by_role("button", name="Filter").click()
    matching(page, 2)
    page.get_by_role("link", name=f"instance {wanted}").click()
    expect(page.locator("#live")).to_have_attribute("data-instance", wanted)
    page.goto(f"/definitions/{name}")
    page.locator("#states a.pill").first.click()
    matching(page, 2)
    expect(page.locator("#filters input[name=state]")).to_have_value("closed")


@pytest.fixture(scope="module")
def still(site: Server) -> str:
    """A definition with three instances that no other test changes: the golden layout's."""
    name = unique("door")
    with site.client() as api:
        assert api.post("/api/definitions", content=definition_text("door.yaml", name)).is_success
        for n in range(3):
            api.post("/api/instances", json={"definition": name, "key": f"golden-{n}"})
    return name


LAYOUT = {
    "header": "header",
    "title": "main h1",
    "filters": "#filter-box",
    "count": "#matching",
    "table": ".table-box",
    "heading": "#instance-list thead tr",
    "first row": "#instance-list tbody tr:first-child",
}


def boxes(page: Page) -> dict[str, list[int]]:
    found = {}
    for name, selector in LAYOUT.items():
        box = page.locator(selector).bounding_box()
        assert box is not None, f"{name} ({selector}) is not shown"
        found[name] = [round(box[k]) for k in ("x", "y", "width", "height")]
    return found


def close(recorded: list[int], now: list[int]) -> bool:
    """Positions within 16 px, sizes within 16 px or 10 %."""
    return all(
        abs(a - b) <= max(16, 0.10 * abs(a)) if k >= 2 else abs(a - b) <= 16
        for k, (a, b) in enumerate(zip(recorded, now, strict=True))
    )


def golden_text(golden: dict[str, dict[str, list[int]]]) -> str:
    """The golden layout as JSON, one element's box [x, y, width, height] a line."""
    sizes = []
    for label in sorted(golden):
        lines = [f'    "{name}": {json.dumps(box)}' for name, box in sorted(golden[label].items())]
        sizes.append(f'  "{label}": {{\n' + ",\n".join(lines) + "\n  }")
    return "{\n" + ",\n".join(sizes) + "\n}\n"


def test_the_list_keeps_its_golden_layout(screen: Page, still: str) -> None:
    page = screen
    page.goto(f"/instances?definition={still}")
    matching(page, 3)
    size = page.viewport_size
    assert size is not None
    label = f"{size['width']}x{size['height']}"
    now = boxes(page)
    no_page_overflow(page)
    # The table's box is as wide as the page allows; on a phone its table scrolls inside it.
    table_box = now["table"]
    assert table_box[0] + table_box[2] <= size["width"]
    if size["width"] < 700:
        inside = page.eval_on_selector(".table-box", "box => box.scrollWidth > box.clientWidth")
        assert inside, "the phone's table scrolls in its box"
    golden: dict[str, Any] = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if os.environ.get("TURNOUT_RECORD_GOLDEN") == "1":
        golden[label] = now
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(golden_text(golden))
        return
    assert label in golden, f"no golden layout for {label}: run with TURNOUT_RECORD_GOLDEN=1"
    moved = {
        name: (golden[label][name], box)
        for name, box in now.items()
        if not close(golden[label][name], box)
    }
    assert moved == {}, f"moved from the golden layout (recorded, now): {moved}"


def test_every_list_page_fits_the_window(screen: Page, still: str) -> None:
    page = screen
    for path in ("/", f"/definitions/{still}", "/instances", "/instances?sort=key"):
        page.goto(path)
        expect(page.locator("main h1")).to_be_visible()
        no_page_overflow(page)
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll(
               'main a, main button, main input:not([type=hidden]), main select')]
             .filter(e => !(e.getAttribute('aria-label') || e.labels?.length || e.textContent.trim()
                            || e.getAttribute('alt') || e.querySelector('img[alt]')))
             .map(e => e.outerHTML.slice(0, 80))"""
    )
    assert unnamed == []


def fetch(site: Server, path: str) -> httpx.Response:
    with site.client() as api:
        return api.get(path)


def test_a_wrong_sort_or_cursor_is_a_plain_422_page(site: Server) -> None:
    for path in ("/instances?sort=colour", "/instances?cursor=nonsense", "/instances?since=soon"):
        answer = fetch(site, path)
        assert answer.status_code == 422
        assert re.search(r"<p class=\"error\"", answer.text)

"""The instance page and the diagrams' pan and zoom in headless Chromium, at a laptop's size
(1280×800) and a phone's (390×844), against a real `turnout serve`.

The page is advanced by another process than the server's (this test's own `Engine` on the same
database file): it claims, fails and completes tasks, and the page follows without a reload.
"""

from __future__ import annotations

import json
import os
import re
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect
from turnout_processes import Server, definition_text, unique

from engine import Engine

SIZES = {"laptop": (1280, 800), "phone": (390, 844)}
READABLE_PX = 12.0
GOLDEN = Path(__file__).parent / "golden" / "instance_layout.json"
GOLDEN_ELEMENTS = ["#live h1", ".diagram-tools", "#diagram", "#tasks", "#context", "#history"]
ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
TWO_HUNDRED = Path(__file__).parents[1] / "diagrams" / "two_hundred_states.yaml"


class MovableClock:
    """The other process's clock: the real time, plus however far it was moved on (retries
    wait a minute, and this process does not wait for them)."""

    def __init__(self) -> None:
        self.ahead = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead

    def advance(self, seconds: float) -> None:
        self.ahead += timedelta(seconds=seconds)


@pytest.fixture(params=list(SIZES))
def tab(request: pytest.FixtureRequest, chromium: Any, site: Server) -> Iterator[Page]:
    """A page of the given size on the module's server; fails the test if its script throws."""
    width, height = SIZES[request.param]
    context = chromium.new_context(
        base_url=site.base_url, viewport={"width": width, "height": height}
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert errors == [], f"the page's script failed: {errors}"


@pytest.fixture
def api(site: Server) -> Iterator[httpx.Client]:
    with site.client() as client:
        yield client


@pytest.fixture
def elsewhere(site: Server) -> Iterator[tuple[Engine, MovableClock]]:
    """Another process's engine on the server's database, with a clock it moves itself."""
    clock = MovableClock()
    engine = Engine(site.database, clock=clock)
    try:
        yield engine, clock
    finally:
        engine.close()


@pytest.fixture
def waiting(api: httpx.Client) -> tuple[str, str]:
    """A fresh copy of `waiting_work.yaml` with a task name of its own: (definition, task)."""
    name, task = unique("waiting"), unique("jobs")
    text = definition_text("waiting_work.yaml", name).replace("jobs.waiting", task)
    assert api.post("/api/definitions", content=text).status_code == 201
    return name, task


def two_hundred_states(name: str) -> str:
    """The YAML of the 200-state definition of the diagram tests, renamed to `name`."""
    lines = TWO_HUNDRED.read_text().splitlines()
    return "\n".join(f"name: {name}" if line.startswith("name:") else line for line in lines)


def start(api: httpx.Client, definition: str, data: dict[str, Any] | None = None) -> str:
    answer = api.post("/api/instances", json={"definition": definition, "data": data or {}})
    assert answer.status_code == 201, answer.text
    instance_id: str = answer.json()["id"]
    return instance_id


def raised_error(message: str) -> dict[str, Any]:
    """The error a worker reports for an exception its handler raised, traceback and all."""
    try:
        raise ConnectionError(message)
    except ConnectionError as exc:
        return {"type": "ConnectionError", "message": str(exc), "traceback": traceback.format_exc()}


def no_horizontal_overflow(page: Page) -> None:
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page is {overflow}px wider than the window"


def label_box(page: Page, state: str) -> dict[str, float]:
    """Where the first line of the label of `state` is drawn on the screen, in CSS pixels."""
    box: dict[str, float] = page.eval_on_selector(
        f"#diagram svg g[id='state-{state}'] text",
        "t => { const r = t.getBoundingClientRect();"
        " return {x: r.x, y: r.y, width: r.width, height: r.height}; }",
    )
    return box


def frame_box(page: Page) -> dict[str, float]:
    box = page.locator("#diagram").bounding_box()
    assert box is not None
    return box


def inside(box: dict[str, float], frame: dict[str, float]) -> bool:
    return (
        box["x"] >= frame["x"] - 1
        and box["y"] >= frame["y"] - 1
        and box["x"] + box["width"] <= frame["x"] + frame["width"] + 1
        and box["y"] + box["height"] <= frame["y"] + frame["height"] + 1
    )


def test_zooming_a_two_hundred_state_diagram_makes_its_labels_readable(
    tab: Page, api: httpx.Client
) -> None:
    name = unique("two_hundred")
    text = two_hundred_states(name)
    assert api.post("/api/definitions", content=text).status_code == 201
    tab.goto(f"/instances/{start(api, name, {'people': []})}")
    assert label_box(tab, "stage10_review")["height"] < READABLE_PX  # fitted: far too small
    # The zoom-in button, pressed until the labels are readable: one of them is, on screen.
    zoom_in = tab.get_by_role("button", name="Zoom in")
    for _ in range(20):
        if tab.eval_on_selector("#diagram svg text", "t => t.getBoundingClientRect().height") >= (
            READABLE_PX
        ):
            break
        zoom_in.click()
    # Panned to (the frame scrolls), a label is readable inside the diagram's frame.
    label = tab.locator("#diagram svg g[id='state-stage10_review'] text").first
    label.scroll_into_view_if_needed()
    expect(label).to_have_text("stage10_review")
    shown = label_box(tab, "stage10_review")
    assert shown["height"] >= READABLE_PX
    assert inside(shown, frame_box(tab))
    # Finding a state shows it, readable, in the middle of the frame.
    tab.get_by_role("button", name="Fit the diagram to the frame").click()
    finder = tab.get_by_role("combobox", name="Find a state in the diagram")
    finder.fill("stage17_escalated")
    finder.press("Enter")
    label = label_box(tab, "stage17_escalated")
    assert label["height"] >= READABLE_PX
    assert inside(label, frame_box(tab))
    assert tab.locator(
        "#diagram svg g[id='state-stage17_escalated'] text"
    ).first.text_content() == ("stage17_escalated")
    no_horizontal_overflow(tab)


def test_the_full_screen_view_fills_the_window_and_escape_leaves_it(
    tab: Page, api: httpx.Client, waiting: tuple[str, str]
) -> None:
    tab.goto(f"/instances/{start(api, waiting[0])}")
    tab.get_by_role("button", name="Full screen").click()
    dialog = tab.get_by_role("dialog", name="Diagram, full screen")
    expect(dialog).to_be_visible()
    box = dialog.bounding_box()
    size = tab.viewport_size
    assert box is not None and size is not None
    assert (box["x"], box["y"], box["width"], box["height"]) == (
        0,
        0,
        size["width"],
        size["height"],
    )
    frame = frame_box(tab)
    assert frame["height"] > size["height"] * 0.7  # the drawing gets the window
    before = tab.locator("#diagram svg").bounding_box()
    tab.locator("#diagram").focus()
    tab.keyboard.press("+")
    after = tab.locator("#diagram svg").bounding_box()
    assert before is not None and after is not None and after["width"] > before["width"] * 1.4
    tab.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(tab.get_by_role("button", name="Full screen")).to_have_attribute("aria-pressed", "false")


def test_ctrl_wheel_zooms_at_the_pointer_and_the_zoom_survives_a_live_update(
    tab: Page, api: httpx.Client
) -> None:
    name = unique("two_hundred")
    assert api.post("/api/definitions", content=two_hundred_states(name)).status_code == 201
    instance_id = start(api, name, {"people": []})
    tab.goto(f"/instances/{instance_id}")
    frame = frame_box(tab)
    x, y = frame["x"] + frame["width"] / 2, frame["y"] + frame["height"] / 2
    tab.mouse.move(x, y)
    tab.keyboard.down("Control")
    for _ in range(8):
        tab.mouse.wheel(0, -200)
    tab.keyboard.up("Control")
    # The spot of the drawing under the pointer stays under it: the labels there are readable.
    under = tab.evaluate(
        "([x, y]) => Array.from(document.querySelectorAll('#diagram svg text'))"
        ".map(t => t.getBoundingClientRect()).filter(r => r.left <= x + 400 && r.right >= x - 400)"
        ".map(r => r.height)",
        [x, y],
    )
    assert under and min(under) >= READABLE_PX
    level = tab.locator(".diagram-level").text_content()
    assert level and level.endswith("%") and 10 < int(level[:-1]) <= 600
    scrolled = tab.eval_on_selector("#diagram", "frame => frame.scrollLeft")
    api.post(f"/api/instances/{instance_id}/cancel")
    expect(tab.locator("#status")).to_have_text("cancelled")
    expect(tab.locator(".diagram-level")).to_have_text(level)  # the same zoom, and place
    assert abs(tab.eval_on_selector("#diagram", "frame => frame.scrollLeft") - scrolled) < 2


def test_the_page_follows_an_instance_another_process_advances(
    tab: Page,
    api: httpx.Client,
    waiting: tuple[str, str],
    elsewhere: tuple[Engine, MovableClock],
) -> None:
    engine, clock = elsewhere
    name, task = waiting
    instance_id = start(api, name)
    tab.goto(f"/instances/{instance_id}")
    tasks = tab.get_by_role("table", name="Pending and running tasks")
    expect(tasks).to_contain_text(task)
    expect(tasks.locator(".task-attempt")).to_have_text("0 of 3")
    tab.evaluate("window.stillTheSamePage = true")

    [claimed] = engine.claim_tasks([task], "worker-7", 30)
    expect(tasks.locator(".task-worker")).to_have_text("worker-7")
    expect(tasks.locator(".task-status")).to_have_text("running")
    expect(tasks.locator(".task-attempt")).to_have_text("1 of 3")
    expect(tasks).to_contain_text("lease until")

    assert engine.fail_task(claimed.id, "worker-7", raised_error("the bank hung up"))
    expect(tasks.locator(".task-last-error")).to_contain_text("ConnectionError")
    expect(tasks.locator(".task-last-error")).to_contain_text("the bank hung up")
    expect(tasks.locator("pre.traceback-head")).to_contain_text("raise ConnectionError(message)")
    expect(tasks.locator(".task-status")).to_have_text("waiting to retry")

    clock.advance(61)
    [again] = engine.claim_tasks([task], "worker-8", 30)
    expect(tasks.locator(".task-worker")).to_have_text("worker-8")
    assert engine.complete_task(again.id, "worker-8", {"ok": True})
    expect(tab.locator("#state")).to_have_text("reviewing")
    timers = tab.get_by_role("table", name="Timers")
    expect(timers).to_contain_text("reviewing")
    expect(timers.locator("time.due")).to_have_attribute("datetime", ISO_TIME)
    expect(tab.locator(".due-in").first).to_contain_text("in ")
    history = tab.get_by_role("table", name="History of the instance")
    expect(history).to_contain_text('"ok": true')  # the result, on the page, not in a tooltip

    engine.send(instance_id, "approve", {"by": "ana"})
    expect(tab.locator("#status")).to_have_text("succeeded")
    expect(history.locator("tbody tr").last).to_contain_text('{"by": "ana"}')
    expect(tab.locator("#nothing-pending")).to_be_visible()
    assert tab.evaluate("window.stillTheSamePage") is True
    no_horizontal_overflow(tab)


def test_a_failed_task_shows_its_error_and_traceback_on_the_page(
    tab: Page,
    api: httpx.Client,
    waiting: tuple[str, str],
    elsewhere: tuple[Engine, MovableClock],
) -> None:
    engine, clock = elsewhere
    name, task = waiting
    instance_id = start(api, name)
    for attempt in range(3):
        [claimed] = engine.claim_tasks([task], "worker-1", 30)
        assert engine.fail_task(claimed.id, "worker-1", raised_error(f"refused #{attempt + 1}"))
        clock.advance(3600)
    tab.goto(f"/instances/{instance_id}")
    expect(tab.locator("#status")).to_have_text("failed")
    expect(tab.locator("#state")).to_have_text("broken")
    last_error = tab.locator("#last-error")
    expect(last_error).to_contain_text("ConnectionError")
    expect(last_error).to_contain_text("refused #3")
    last_error.locator("summary").click()
    expect(last_error.locator("pre")).to_contain_text("raise ConnectionError(message)")
    history = tab.get_by_role("table", name="History of the instance")
    expect(history).to_contain_text("refused #1")  # every failed attempt, with its error
    expect(history).to_contain_text("refused #2")
    expect(tab.get_by_role("button", name="Redrive")).to_be_visible()
    no_horizontal_overflow(tab)


def test_the_event_form_says_when_the_data_is_not_json_and_sends_when_it_is(
    tab: Page, api: httpx.Client, waiting: tuple[str, str], elsewhere: tuple[Engine, MovableClock]
) -> None:
    engine, _ = elsewhere
    name, task = waiting
    instance_id = start(api, name)
    [claimed] = engine.claim_tasks([task], "w", 30)
    engine.complete_task(claimed.id, "w", {})
    tab.goto(f"/instances/{instance_id}")
    data = tab.get_by_role("textbox", name="data (JSON)")
    data.fill('{"by": ')
    expect(tab.locator("#data-problem")).to_contain_text("not valid JSON")
    expect(data).to_have_attribute("aria-invalid", "true")
    data.fill('{"by": "ana"}')
    expect(tab.locator("#data-problem")).to_be_hidden()
    tab.get_by_role("combobox", name="event").select_option("approve")
    tab.get_by_role("button", name="Send").click()
    expect(tab.locator("#status")).to_have_text("succeeded")
    assert api.get(f"/api/instances/{instance_id}/history").json()[-1]["data"] == {"by": "ana"}


def layout(page: Page) -> dict[str, list[float]]:
    boxes = {}
    for selector in GOLDEN_ELEMENTS:
        box = page.locator(selector).first.bounding_box()
        assert box is not None, f"{selector} is not shown"
        boxes[selector] = [round(box[key]) for key in ("x", "y", "width", "height")]
    return boxes


def golden_text(golden: dict[str, dict[str, list[float]]]) -> str:
    """The golden layouts as JSON, one element's box [x, y, width, height] a line."""
    sizes = []
    for size, boxes in sorted(golden.items()):
        lines = ",\n".join(
            f"    {json.dumps(name)}: {json.dumps(box)}" for name, box in boxes.items()
        )
        sizes.append(f"  {json.dumps(size)}: {{\n{lines}\n  }}")
    return "{\n" + ",\n".join(sizes) + "\n}\n"


def test_the_instance_page_keeps_its_golden_layout(
    tab: Page,
    api: httpx.Client,
    waiting: tuple[str, str],
    elsewhere: tuple[Engine, MovableClock],
    request: pytest.FixtureRequest,
) -> None:
    """Key elements' places at both sizes, against `golden/instance_layout.json` (within
    tolerance: fonts differ a little between machines). TURNOUT_UPDATE_GOLDEN=1 rewrites it."""
    engine, _ = elsewhere
    name, task = waiting
    instance_id = start(api, name, {"order": "A-1"})
    [claimed] = engine.claim_tasks([task], "worker-1", 30)
    engine.fail_task(claimed.id, "worker-1", {"type": "Timeout", "message": "no answer"})
    tab.goto(f"/instances/{instance_id}")
    expect(tab.locator(".diagram-level")).not_to_have_text("")
    size = tab.viewport_size
    assert size is not None
    found = layout(tab)
    for selector, (x, _, width, _) in found.items():
        assert x >= 0 and x + width <= size["width"], f"{selector} leaves the window"
    no_horizontal_overflow(tab)
    key = f"{size['width']}x{size['height']}"
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if os.environ.get("TURNOUT_UPDATE_GOLDEN"):
        golden[key] = found
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(golden_text(golden))
        return
    assert key in golden, f"no golden layout for {key}: run with TURNOUT_UPDATE_GOLDEN=1"
    for selector, expected in golden[key].items():
        shown = found[selector]
        for what, want, got in zip(("x", "y", "width", "height"), expected, shown, strict=True):
            slack = 24 + 0.1 * abs(want)
            assert abs(got - want) <= slack, f"{selector} {what}: {got}, golden {want}"


def test_every_diagram_page_zooms_and_stays_within_a_phone_width(
    tab: Page, api: httpx.Client
) -> None:
    name = unique("two_hundred")
    text = two_hundred_states(name)
    assert api.post("/api/definitions", content=text).status_code == 201
    tab.goto(f"/definitions/{name}")
    expect(tab.get_by_role("toolbar", name="Diagram view")).to_be_visible()
    drawing = tab.locator("#diagram svg")
    before = drawing.bounding_box()
    tab.get_by_role("button", name="Zoom in").click()
    after = drawing.bounding_box()
    assert before is not None and after is not None and after["width"] > before["width"] * 1.4
    size = tab.viewport_size
    box = tab.locator(".diagram-box").bounding_box()
    assert size is not None and box is not None and box["x"] + box["width"] <= size["width"]


def test_two_fingers_pinch_the_diagram_bigger_on_a_phone(
    chromium: Any, site: Server, api: httpx.Client
) -> None:
    name = unique("two_hundred")
    assert api.post("/api/definitions", content=two_hundred_states(name)).status_code == 201
    context = chromium.new_context(
        base_url=site.base_url,
        viewport={"width": 390, "height": 844},
        has_touch=True,
        is_mobile=True,
    )
    try:
        tab = context.new_page()
        tab.goto(f"/instances/{start(api, name, {'people': []})}")
        drawing = tab.locator("#diagram svg")
        expect(tab.locator(".diagram-level")).not_to_have_text("")
        before = drawing.bounding_box()
        frame = frame_box(tab)
        x, y = frame["x"] + frame["width"] / 2, frame["y"] + frame["height"] / 2
        session = context.new_cdp_session(tab)

        def fingers(kind: str, apart: float) -> None:
            points = [{"x": x - apart / 2, "y": y, "id": 1}, {"x": x + apart / 2, "y": y, "id": 2}]
            session.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

        fingers("touchStart", 40)
        for apart in range(60, 260, 20):
            fingers("touchMove", apart)
        session.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        after = drawing.bounding_box()
        assert before is not None and after is not None
        assert before["width"] < 390 and after["width"] > before["width"] * 3
        assert tab.evaluate("window.visualViewport.scale") == 1  # the drawing, not the page
    finally:
        context.close()

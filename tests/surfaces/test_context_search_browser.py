"""The dashboard's context filter in a real headless Chromium: typed into the instance list's
filter form, kept in the field and in the paging links, and a filter that is none said plainly.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from http_calls import start
from playwright.sync_api import Page, expect
from turnout_processes import Server, definition_text, unique


@pytest.fixture
def api(site: Server) -> Iterator[httpx.Client]:
    with site.client() as client:
        yield client


def test_the_instance_list_filters_by_context_typed_in_its_field(
    page: Page, api: httpx.Client
) -> None:
    door = unique("door")
    assert api.post("/api/definitions", content=definition_text("door.yaml", door)).is_success
    gold = [start(api, door, {"customer": {"tier": "gold"}, "total": n})["id"] for n in range(52)]
    silver = start(api, door, {"customer": {"tier": "silver"}, "total": 500})["id"]
    page.goto(f"/instances?definition={door}")
    page.fill("input[name=where]", "customer.tier=silver")
    page.click("form.filters button")
    rows = page.locator("table.list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first.locator("a").first).to_have_attribute("href", f"/instances/{silver}")
    page.fill("input[name=where]", "customer.tier=gold; total>=1")
    page.click("form.filters button")
    expect(rows).to_have_count(50)
    expect(page.locator("input[name=where]")).to_have_value("customer.tier=gold; total>=1")
    page.get_by_role("link", name="next").click()
    expect(rows).to_have_count(1)  # 51 of the gold ones have a total of 1 or more
    # Newest first: the second page holds the oldest of them.
    expect(rows.first.locator("a").first).to_have_attribute("href", f"/instances/{gold[1]}")
    page.fill("input[name=where]", "customer.tier")
    page.click("form.filters button")
    expect(page.locator("p.error")).to_contain_text("not path=value")

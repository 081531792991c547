"""Fixtures of the surface tests: real `turnout serve` processes, databases, headless Chromium.

Helpers that run the installed command live in `turnout_processes.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from databases import in_ci, postgres_schema
from turnout_processes import (
    CHROMIUM,
    Server,
    definition_text,
    running_server,
    unique,
)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> str:
    """A fresh SQLite file for one test."""
    return f"sqlite:///{tmp_path}/turnout.db"


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One `turnout serve` per module and database: an SQLite file, then a PostgreSQL schema."""
    workdir = tmp_path_factory.mktemp(f"serve-{request.param}")
    if request.param == "sqlite":
        with running_server(f"sqlite:///{workdir}/turnout.db", workdir) as started:
            yield started
        return
    with postgres_schema() as url, running_server(url, workdir) as started:
        yield started


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    """An httpx client on the module's server."""
    with server.client() as client:
        yield client


@pytest.fixture
def door(api: httpx.Client) -> str:
    """The name of a freshly deployed copy of `definitions/door.yaml` on the server."""
    name = unique("door")
    answer = api.post("/api/definitions", content=definition_text("door.yaml", name))
    assert answer.status_code == 201, answer.text
    return name


@pytest.fixture
def review(api: httpx.Client) -> tuple[str, str]:
    """A fresh copy of `review.yaml` with a task name no other test uses: (definition, task)."""
    name, task = unique("review"), unique("check")
    text = definition_text("review.yaml", name).replace("review.check", task)
    assert api.post("/api/definitions", content=text).status_code == 201
    return name, task


BROWSER_WAIT_MS = 20_000


# -- the browser --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Debian's headless Chromium driven by Playwright (a skip outside CI when it is missing)."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is not installed (apt-get install chromium)"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A `turnout serve` of its own for a module of browser tests, on an SQLite file."""
    workdir = tmp_path_factory.mktemp(f"serve-{request.module.__name__}")
    with running_server(f"sqlite:///{workdir}/turnout.db", workdir) as server:
        yield server


@pytest.fixture
def page(chromium: Any, site: Server) -> Iterator[Any]:
    """A fresh browser page on the module's `site` server (a module of browser tests defines
    `site`); fails the test if the page's script throws."""
    context = chromium.new_context(base_url=site.base_url)
    tab = context.new_page()
    tab.set_default_timeout(BROWSER_WAIT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield tab
    finally:
        context.close()
    assert errors == [], f"the page's script failed: {errors}"

"""What a real `turnout serve` does against pages of other sites: no framing, no changes from
another origin or of a type a page can send unasked, form tokens, and the sign-in session.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from turnout_processes import Server, definition_text, running_server, unique

TOKEN = "guards-token-for-tests"


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A `turnout serve` without a token, on an SQLite file."""
    workdir = tmp_path_factory.mktemp("serve-guards")
    with running_server(f"sqlite:///{workdir}/turnout.db", workdir) as server:
        yield server


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A `turnout serve` with TURNOUT_API_TOKEN set, on an SQLite file."""
    workdir = tmp_path_factory.mktemp("serve-guards-token")
    with running_server(f"sqlite:///{workdir}/turnout.db", workdir, token=TOKEN) as server:
        yield server


def deploy_door(api: httpx.Client) -> str:
    name = unique("door")
    answer = api.post("/api/definitions", content=definition_text("door.yaml", name))
    assert answer.status_code == 201, answer.text
    return name


def form_token(page: str) -> str:
    found = re.search(r'name="form_token" value="([^"]+)"', page)
    assert found is not None, "the page has no form token"
    return found.group(1)


def test_every_answer_forbids_framing_sniffing_and_foreign_scripts(open_server: Server) -> None:
    with open_server.client() as api:
        name = deploy_door(api)
        instance = api.post("/api/instances", json={"definition": name}).json()["id"]
        for path in (
            "/",
            "/instances",
            f"/instances/{instance}",
            f"/definitions/{name}",
            "/api/definitions",
            f"/api/instances/{instance}/diagram.svg",
            "/healthz",
            "/api/instances/nope",
            "/static/app.js",
        ):
            headers = api.get(path).headers
            assert headers["x-frame-options"] == "DENY", path
            policy = headers["content-security-policy"]
            assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy, path
            assert headers["x-content-type-options"] == "nosniff", path
            assert headers["referrer-policy"] == "same-origin", path


def test_a_change_sent_from_another_origin_is_refused_whatever_else_it_says(
    open_server: Server,
) -> None:
    """A browser names the page's origin; a change from another one is refused even when
    the request says nothing of where it comes from otherwise (no Sec-Fetch-Site)."""
    with open_server.client() as api:
        name = deploy_door(api)
        before = len(api.get("/api/instances", params={"definition": name}).json()["items"])
        for origin in (
            "http://evil.example",
            "null",
            "http://127.0.0.1:1",
            "http://localhost",
            "http://[::1",
        ):
            refused = api.post(
                "/api/instances", json={"definition": name}, headers={"origin": origin}
            )
            assert refused.status_code == 403, origin
            assert refused.json()["error"] == "Forbidden"
        after = api.get("/api/instances", params={"definition": name}).json()["items"]
        assert len(after) == before
        own = api.post(
            "/api/instances", json={"definition": name}, headers={"origin": open_server.base_url}
        )
        assert own.status_code == 201


@pytest.mark.parametrize("kind", ["application/yaml", "application/x-yaml", "text/yaml", None])
def test_a_definition_is_taken_as_yaml_or_with_no_type(open_server: Server, kind: str) -> None:
    headers = {"content-type": kind} if kind else {}
    with open_server.client() as api:
        text = definition_text("door.yaml", unique("typed"))
        assert api.post("/api/definitions", content=text, headers=headers).status_code == 201


@pytest.mark.parametrize(
    "kind", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
)
def test_a_body_of_a_type_a_page_can_send_unasked_is_refused_with_415(
    open_server: Server, kind: str
) -> None:
    with open_server.client() as api:
        name = unique("untyped")
        answer = api.post(
            "/api/definitions",
            content=definition_text("door.yaml", name),
            headers={"content-type": kind},
        )
        assert answer.status_code == 415
        assert answer.json()["error"] == "UnsupportedMediaType"
        assert api.get(f"/api/definitions/{name}").status_code == 404
        door = deploy_door(api)
        start = api.post(
            "/api/instances", content=f'{{"definition": "{door}"}}', headers={"content-type": kind}
        )
        assert start.status_code == 415
        assert api.get("/api/instances", params={"definition": door}).json()["items"] == []


def test_a_dashboard_form_without_its_pages_token_is_refused(open_server: Server) -> None:
    with open_server.client() as api:
        instance = api.post("/api/instances", json={"definition": deploy_door(api)}).json()["id"]
        token = form_token(api.get(f"/instances/{instance}").text)
        for given in ({}, {"form_token": "0" * 64}):
            forged = api.post(f"/instances/{instance}/events", data={"event": "open", **given})
            assert forged.status_code == 403 and "did not come from this dashboard" in forged.text
            cancel = api.post(f"/instances/{instance}/cancel", data=given)
            assert cancel.status_code == 403
        assert api.get(f"/api/instances/{instance}").json()["state"] == "closed"
        sent = api.post(
            f"/instances/{instance}/events", data={"event": "open", "form_token": token}
        )
        assert sent.status_code == 303
        assert api.get(f"/api/instances/{instance}").json()["state"] == "opened"


def test_signing_in_gives_a_strict_http_only_session_cookie_that_is_not_the_token(
    guarded: Server,
) -> None:
    with httpx.Client(base_url=guarded.base_url, timeout=30) as browser:
        signed_in = browser.post("/login", data={"token": TOKEN, "next": "/"})
        assert signed_in.status_code == 303
        cookie = signed_in.headers["set-cookie"]
        assert cookie.startswith("turnout_session=") and TOKEN not in cookie
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
        assert browser.get("/instances").status_code == 200
        assert browser.get("/api/definitions").status_code == 200
        # The cookie lets a browser read; a change through the API needs the token itself.
        assert browser.post("/api/instances", json={"definition": "x"}).status_code == 401
        proxied = browser.post(
            "/login", data={"token": TOKEN, "next": "/"}, headers={"x-forwarded-proto": "https"}
        )
        assert "Secure" in proxied.headers["set-cookie"]
    with httpx.Client(base_url=guarded.base_url, timeout=30) as stranger:
        stranger.cookies.set("turnout_token", TOKEN)
        assert stranger.get("/instances").status_code == 303
        assert stranger.get("/api/definitions").status_code == 401


def test_signing_out_ends_the_session_on_the_server(guarded: Server) -> None:
    with httpx.Client(base_url=guarded.base_url, timeout=30) as browser:
        browser.post("/login", data={"token": TOKEN, "next": "/"})
        session = browser.cookies["turnout_session"]
        home = browser.get("/")
        assert 'action="/logout"' in home.text
        refused = browser.post("/logout", data={})
        assert refused.status_code == 403
        out = browser.post("/logout", data={"form_token": form_token(home.text)})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert "turnout_session" not in browser.cookies
        assert browser.get("/instances").status_code == 303
    with httpx.Client(base_url=guarded.base_url, timeout=30) as replay:
        replay.cookies.set("turnout_session", session)
        assert replay.get("/instances").status_code == 303
        assert replay.get("/api/definitions").status_code == 401

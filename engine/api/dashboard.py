"""The web dashboard: sign-in, an instance's live page and its forms, a definition's versions
compared (the home page, the definition page and the instance list are list_pages.py's).

Server-rendered HTML (Jinja2 templates) with a little JavaScript that refreshes an instance's
page when its revision changes. No build step and nothing fetched from another host.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from statemachines.errors import TurnoutError

from ..engine import Engine
from .pages import forged, locked_out, render, sessions_of
from .sessions import SESSION_COOKIE

HERE = Path(__file__).parent
router = APIRouter(include_in_schema=False)


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


@router.get("/static/{name}")
def static(name: str) -> Response:
    """The dashboard's own script and style sheet, from the package."""
    path = HERE / "static" / name
    if path.parent != HERE / "static" or not path.is_file():
        return Response("not found", status_code=404)
    kind = {".js": "text/javascript", ".css": "text/css"}.get(path.suffix, "text/plain")
    return Response(path.read_bytes(), media_type=kind)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "login.html", next=next if next.startswith("/") else "/", failed=False)


@router.post("/login", response_model=None)
def login(
    request: Request, token: Annotated[str, Form()], next: Annotated[str, Form()] = "/"
) -> Response:
    target = next if next.startswith("/") and not next.startswith("//") else "/"
    expected = request.app.state.token or ""
    if not hmac.compare_digest(token.encode(), expected.encode()):
        return render(request, "login.html", next=target, failed=True)
    # The browser keeps a random id, not the token: it can be signed out, and cannot leak it.
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        sessions_of(request).open(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout", response_model=None)
def logout(request: Request, form_token: Annotated[str, Form()] = "") -> Response:
    if (refused := forged(request, form_token)) is not None:
        return refused
    sessions_of(request).close(request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse("/login" if request.app.state.token else "/", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE, httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
    return response


@router.get("/definitions/{name}/diff", response_class=HTMLResponse, response_model=None)
def diff_page(
    request: Request,
    name: str,
    older: Annotated[str, Query(alias="from")] = "",
    newer: Annotated[str, Query(alias="to")] = "",
) -> Response:
    """Two versions of a definition compared: a picker, the summary and both drawn as one
    picture. Without `from`, the latest version against the one before it."""
    if (redirect := locked_out(request)) is not None:
        return redirect
    engine = _engine(request)
    for value in (older, newer):
        if value and not value.isdigit():
            message = f"{value!r} is not a version number"
            return render(
                request, "error.html", title="Invalid input", message=message, status_code=422
            )
    try:
        versions = engine.versions(name)
        start = int(older) if older else versions[max(len(versions) - 2, 0)]
        compared = engine.version_diff(name, start, int(newer) if newer else None)
        svg = engine.diff_diagram(name, start, compared.to_version, fallback=True).decode()
    except TurnoutError as exc:
        return render(request, "error.html", message=str(exc), status_code=404)
    removed = compared.changes.states_removed
    stranded = {path: compared.counts[path] for path in removed if compared.counts.get(path)}
    return render(
        request,
        "diff.html",
        name=name,
        compared=compared,
        versions=versions,
        summary=compared.changes.summary(),
        stranded=stranded,
        svg=svg,
    )


@router.post("/instances/{instance_id}/events", response_model=None)
def send_from_form(
    request: Request,
    instance_id: str,
    event: Annotated[str, Form()],
    data: Annotated[str, Form()] = "",
    form_token: Annotated[str, Form()] = "",
) -> Response:
    def send(engine: Engine) -> None:
        engine.send(instance_id, event, _json(data, "the data"))

    return _acted(request, instance_id, form_token, send)


@router.post("/instances/{instance_id}/cancel", response_model=None)
def cancel_from_form(
    request: Request,
    instance_id: str,
    reason: Annotated[str, Form()] = "",
    form_token: Annotated[str, Form()] = "",
) -> Response:
    def cancel(engine: Engine) -> None:
        engine.cancel(instance_id, reason or None)

    return _acted(request, instance_id, form_token, cancel)


@router.post("/instances/{instance_id}/redrive", response_model=None)
def redrive_from_form(
    request: Request,
    instance_id: str,
    reason: Annotated[str, Form()] = "",
    form_token: Annotated[str, Form()] = "",
) -> Response:
    def redrive(engine: Engine) -> None:
        engine.redrive(instance_id, reason or None)

    return _acted(request, instance_id, form_token, redrive)


@router.post("/instances/{instance_id}/reset", response_model=None)
def reset_from_form(
    request: Request,
    instance_id: str,
    to_state: Annotated[str, Form()],
    reason: Annotated[str, Form()] = "",
    patch: Annotated[str, Form()] = "",
    form_token: Annotated[str, Form()] = "",
) -> Response:
    def reset(engine: Engine) -> None:
        engine.reset(instance_id, to_state, _json(patch, "the context patch"), reason=reason)

    return _acted(request, instance_id, form_token, reset)


class _NotJson(Exception):
    """A form field meant to hold JSON that does not: what the page says."""


def _json(text: str, what: str) -> Any:
    """The JSON value a form field holds (None when blank); _NotJson naming `what`."""
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _NotJson(f"{what} is not valid JSON: {exc.msg}") from None


def _acted(
    request: Request, instance_id: str, form_token: str, action: Callable[[Engine], None]
) -> Response:
    """An instance page's form acted on: `action` on the engine for a signed-in browser's
    form that carries its token, then back to the instance's page, saying what went wrong."""
    if (redirect := locked_out(request)) is not None:
        return redirect
    if (refused := forged(request, form_token)) is not None:
        return refused
    message = ""
    try:
        action(_engine(request))
    except (_NotJson, TurnoutError) as exc:
        message = str(exc)
    suffix = f"?error={quote(message)}" if message else ""
    return RedirectResponse(f"/instances/{quote(instance_id)}{suffix}", status_code=303)

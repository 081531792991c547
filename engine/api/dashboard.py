"""The web dashboard: sign-in, definitions with heat maps, instance lists, an instance's live page.

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
from fastapi.templating import Jinja2Templates

from statemachines.errors import InvalidInput, TurnoutError

from ..engine import Engine
from ..search import parse_filters
from .guards import token_matches
from .sessions import SESSION_COOKIE, Sessions, signed_in

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)
STATUSES = ("scheduled", "running", "compensating", "succeeded", "failed", "cancelled")


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _locked_out(request: Request) -> Response | None:
    if token_matches(request.app.state.token, request):
        return None
    return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)


def _sessions(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


def _page(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    # Every page's forms carry the token of the browser's session; sign-out shows when signed in.
    session = request.cookies.get(SESSION_COOKIE, "")
    values |= {
        "form_token": _sessions(request).form_token(session),
        "signed_in": signed_in(request),
    }
    return templates.TemplateResponse(request, template, values, status_code=status_code)


def _forged(request: Request, form_token: str) -> Response | None:
    """A refusal for a form sent without the token of the browser's session (a page of another
    site made it), else None."""
    if _sessions(request).form_token_matches(request, form_token):
        return None
    return _page(
        request,
        "error.html",
        title="Forbidden",
        status_code=403,
        message="this form did not come from this dashboard; reload the page and send it again",
    )


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
    return _page(request, "login.html", next=next if next.startswith("/") else "/", failed=False)


@router.post("/login", response_model=None)
def login(
    request: Request, token: Annotated[str, Form()], next: Annotated[str, Form()] = "/"
) -> Response:
    target = next if next.startswith("/") and not next.startswith("//") else "/"
    expected = request.app.state.token or ""
    if not hmac.compare_digest(token.encode(), expected.encode()):
        return _page(request, "login.html", next=target, failed=True)
    # The browser keeps a random id, not the token: it can be signed out, and cannot leak it.
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        _sessions(request).open(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout", response_model=None)
def logout(request: Request, form_token: Annotated[str, Form()] = "") -> Response:
    if (refused := _forged(request, form_token)) is not None:
        return refused
    _sessions(request).close(request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse("/login" if request.app.state.token else "/", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE, httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
    return response


@router.get("/", response_class=HTMLResponse, response_model=None)
def home(request: Request) -> Response:
    if (redirect := _locked_out(request)) is not None:
        return redirect
    engine = _engine(request)
    rows = []
    for deployment in engine.definitions():
        definition = engine.definition(deployment.name)
        counts = engine.state_counts(deployment.name)
        statuses = engine.status_counts(deployment.name)
        rows.append(
            {
                "name": deployment.name,
                "version": deployment.version,
                "description": definition.description or "",
                "counts": counts,
                "total": sum(counts.values()),
                "statuses": statuses,
                "all": sum(statuses.values()),
            }
        )
    return _page(request, "home.html", definitions=rows)


@router.get("/definitions/{name}", response_class=HTMLResponse, response_model=None)
def definition_page(request: Request, name: str) -> Response:
    if (redirect := _locked_out(request)) is not None:
        return redirect
    engine = _engine(request)
    try:
        definition = engine.definition(name)
        svg = engine.heat_diagram(name, fallback=True).decode()
    except TurnoutError as exc:
        return _page(request, "error.html", message=str(exc), status_code=404)
    counts = engine.state_counts(name)
    recent = engine.instances(definition=name, limit=50)
    versions = engine.versions(name)
    return _page(
        request,
        "definition.html",
        definition=definition,
        svg=svg,
        counts=counts,
        instances=recent,
        versions=versions,
    )


@router.get("/definitions/{name}/diff", response_class=HTMLResponse, response_model=None)
def diff_page(
    request: Request,
    name: str,
    older: Annotated[str, Query(alias="from")] = "",
    newer: Annotated[str, Query(alias="to")] = "",
) -> Response:
    """Two versions of a definition compared: a picker, the summary and both drawn as one
    picture. Without `from`, the latest version against the one before it."""
    if (redirect := _locked_out(request)) is not None:
        return redirect
    engine = _engine(request)
    for value in (older, newer):
        if value and not value.isdigit():
            message = f"{value!r} is not a version number"
            return _page(
                request, "error.html", title="Invalid input", message=message, status_code=422
            )
    try:
        versions = engine.versions(name)
        start = int(older) if older else versions[max(len(versions) - 2, 0)]
        compared = engine.version_diff(name, start, int(newer) if newer else None)
        svg = engine.diff_diagram(name, start, compared.to_version, fallback=True).decode()
    except TurnoutError as exc:
        return _page(request, "error.html", message=str(exc), status_code=404)
    removed = compared.changes.states_removed
    stranded = {path: compared.counts[path] for path in removed if compared.counts.get(path)}
    return _page(
        request,
        "diff.html",
        name=name,
        compared=compared,
        versions=versions,
        summary=compared.changes.summary(),
        stranded=stranded,
        svg=svg,
    )


@router.get("/instances", response_class=HTMLResponse, response_model=None)
def instances_page(
    request: Request,
    definition: str = "",
    state: str = "",
    status: str = "",
    key: Annotated[str, Query(alias="q")] = "",
    where: str = "",
    page: int = 0,
) -> Response:
    if (redirect := _locked_out(request)) is not None:
        return redirect
    engine = _engine(request)
    size = 50
    try:
        found = engine.instances(
            definition=definition or None,
            state=state or None,
            status=status or None,
            key=key or None,
            limit=size + 1,
            offset=max(page, 0) * size,
            # The list command's filters, separated by semicolons.
            where=parse_filters([part for part in where.split(";") if part.strip()]),
        )
    except InvalidInput as exc:  # a filter that is none, or a page past the last one
        return _page(
            request, "error.html", title="Invalid input", message=str(exc), status_code=422
        )
    return _page(
        request,
        "instances.html",
        instances=found[:size],
        more=len(found) > size,
        page=max(page, 0),
        definition=definition,
        state=state,
        status=status,
        key=key,
        where=where,
        statuses=STATUSES,
        names=[deployment.name for deployment in engine.definitions()],
    )


@router.get("/instances/{instance_id}", response_class=HTMLResponse, response_model=None)
def instance_page(request: Request, instance_id: str, error: str = "") -> Response:
    if (redirect := _locked_out(request)) is not None:
        return redirect
    engine = _engine(request)
    try:
        instance = engine.get(instance_id)
    except TurnoutError as exc:
        return _page(request, "error.html", message=str(exc), status_code=404)
    definition = engine.definition(instance.definition, instance.version)
    return _page(
        request,
        "instance.html",
        instance=instance,
        svg=engine.diagram(instance_id, fallback=True).decode(),
        history=engine.history(instance_id),
        allowed=engine.allowed(instance),
        context=json.dumps(instance.context, indent=2, default=str),
        error=error,
        states=[state.path for state in definition.walk() if state.kind != "history"],
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
    if (redirect := _locked_out(request)) is not None:
        return redirect
    if (refused := _forged(request, form_token)) is not None:
        return refused
    message = ""
    try:
        action(_engine(request))
    except (_NotJson, TurnoutError) as exc:
        message = str(exc)
    suffix = f"?error={quote(message)}" if message else ""
    return RedirectResponse(f"/instances/{quote(instance_id)}{suffix}", status_code=303)

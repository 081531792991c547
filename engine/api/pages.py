"""What every dashboard page shares: the templates, the sign-in check, the page itself with
its form token, and the refusal of a forged form."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from .guards import token_matches
from .links import href
from .sessions import SESSION_COOKIE, Sessions, signed_in

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.globals["href"] = href  # every link of every page is built by links.href


def locked_out(request: Request) -> Response | None:
    """A redirect to the sign-in page when the request carries no valid token, else None."""
    if token_matches(request.app.state.token, request):
        return None
    return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)


def sessions_of(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


def render(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    """`template` with `values`; every page's forms carry the token of the browser's session,
    and sign-out shows when signed in."""
    session = request.cookies.get(SESSION_COOKIE, "")
    values |= {
        "form_token": sessions_of(request).form_token(session),
        "signed_in": signed_in(request),
    }
    return templates.TemplateResponse(request, template, values, status_code=status_code)


def forged(request: Request, form_token: str) -> Response | None:
    """A refusal for a form sent without the token of the browser's session (a page of another
    site made it), else None."""
    if sessions_of(request).form_token_matches(request, form_token):
        return None
    return render(
        request,
        "error.html",
        title="Forbidden",
        status_code=403,
        message="this form did not come from this dashboard; reload the page and send it again",
    )

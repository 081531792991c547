"""The dashboard's schedules page: every schedule with what it starts, when it ticks (in its
time zone), its next and last runs, and whether it is paused."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from ..engine import Engine
from .pages import locked_out, render

router = APIRouter(include_in_schema=False)


@router.get("/schedules", response_class=HTMLResponse, response_model=None)
def schedules_page(request: Request) -> Response:
    """The schedules, by name."""
    if (redirect := locked_out(request)) is not None:
        return redirect
    engine: Engine = request.app.state.engine
    return render(request, "schedules.html", schedules=engine.schedules())

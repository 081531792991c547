"""The dashboard's page of one instance: its diagram, what it waits for (tasks with attempts,
workers, leases and errors; timers), its history with the data of every entry, and the
events it accepts. `/instances/{id}/live` answers the page's live part alone, with an ETag,
for the page's script to follow the instance without reloading."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from statemachines.errors import TurnoutError

from ..engine import Engine
from ..pending import Pending
from ..records import HistoryEntry, Instance
from .pages import locked_out, render
from .pending import tag_of
from .sessions import SESSION_COOKIE

router = APIRouter(include_in_schema=False)
SHORT_PAYLOAD = 120  # characters of an entry's data shown on its line; the rest on request
SHOWN_TASKS = 50  # pending tasks listed (a foreach may have thousands); the API has them all


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def entry_view(entry: HistoryEntry) -> dict[str, Any]:
    """A history entry as the timeline shows it: its data as compact JSON on the line, and
    indented in full when the line cannot hold it."""
    compact = "" if entry.data is None else json.dumps(entry.data, default=str)
    return {
        "seq": entry.seq,
        "iso": entry.at.isoformat(),
        "shown_at": entry.at.strftime("%Y-%m-%d %H:%M:%S"),
        "kind": entry.kind,
        "event": entry.event or "",
        "from_state": entry.from_state or "",
        "to_state": entry.to_state or "",
        "short": compact if len(compact) <= SHORT_PAYLOAD else compact[:SHORT_PAYLOAD] + "…",
        "long": len(compact) > SHORT_PAYLOAD,
        "full": json.dumps(entry.data, indent=2, default=str),
        "data": entry.data,
    }


def _looked_at(request: Request, instance_id: str, error: str) -> tuple[Instance, Pending, str]:
    """The instance, what it waits for, and the ETag of the page's live part: it changes with
    the revision or with what the instance waits for (a claim changes no revision), with the
    message the page carries and with the browser's session (its forms' token)."""
    engine = _engine(request)
    instance = engine.get(instance_id)
    pending = engine.pending(instance_id)
    waiting = {key: value for key, value in pending.to_json().items() if key != "at"}
    session = request.cookies.get(SESSION_COOKIE, "")
    return instance, pending, tag_of(instance.revision, waiting, error, session)


def _values(
    request: Request, looked_at: tuple[Instance, Pending, str], error: str
) -> dict[str, Any]:
    """What the page shows of the instance."""
    engine = _engine(request)
    instance, pending, etag = looked_at
    history = engine.history(instance.id)
    definition = engine.definition(instance.definition, instance.version)
    return {
        "instance": instance,
        "svg": engine.diagram(instance.id, fallback=True).decode(),
        "history": history,
        "entries": [entry_view(entry) for entry in history],
        "pending": pending,
        "allowed": engine.allowed(instance),
        "context": json.dumps(instance.context, indent=2, default=str),
        "error": error,
        "states": [state.path for state in definition.walk() if state.kind != "history"],
        "etag": etag,
        "shown_tasks": SHOWN_TASKS,
    }


@router.get("/instances/{instance_id}", response_class=HTMLResponse, response_model=None)
def instance_page(request: Request, instance_id: str, error: str = "") -> Response:
    if (redirect := locked_out(request)) is not None:
        return redirect
    try:
        values = _values(request, _looked_at(request, instance_id, error), error)
    except TurnoutError as exc:
        return render(request, "error.html", message=str(exc), status_code=404)
    return render(request, "instance.html", **values)


@router.get("/instances/{instance_id}/live", response_class=HTMLResponse, response_model=None)
def instance_live(request: Request, instance_id: str, error: str = "") -> Response:
    """The live part of the instance's page; 304 when it is the one the browser holds."""
    if (redirect := locked_out(request)) is not None:
        return redirect
    try:
        looked_at = _looked_at(request, instance_id, error)
        headers = {"ETag": looked_at[2], "Cache-Control": "no-cache"}
        if request.headers.get("if-none-match") == looked_at[2]:
            return Response(status_code=304, headers=headers)
        values = _values(request, looked_at, error)
    except TurnoutError as exc:
        return render(request, "error.html", message=str(exc), status_code=404)
    response = render(request, "instance_live.html", **values)
    response.headers.update(headers)
    return response

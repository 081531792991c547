"""The dashboard's migration page: the plan of moving a definition's running instances from
one version to another (counts per class and per state, the instances that would stay and
why, a picture of where they are) with a button that applies it.

Applying re-plans with the same versions and map and applies that plan: `Engine.migrate`
checks every instance again as it moves it, so nothing rests on the page being fresh.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

import diagrams
from statemachines.errors import InvalidInput, NotFound, TurnoutError
from statemachines.migration_plan import MigrationClass, MigrationPlan

from ..engine import Engine
from .pages import forged, locked_out, render

router = APIRouter(include_in_schema=False)
STAYING = (MigrationClass.DIVERGENT, MigrationClass.IMPOSSIBLE)


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _state_map(text: str) -> dict[str, str]:
    """`OLD=NEW` pairs, one per line (or separated by commas), as a state map."""
    found: dict[str, str] = {}
    for pair in text.replace(",", "\n").splitlines():
        if not pair.strip():
            continue
        old, sep, new = pair.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise InvalidInput(f"{pair.strip()!r} is not OLD=NEW (two state paths)")
        found[old.strip()] = new.strip()
    return found


def _picture(engine: Engine, plan: MigrationPlan) -> str:
    """The two versions as one picture (`diagrams.diff_diagram`): what changed, and on the
    old version's states how many of the plan's instances would stay there (divergent or
    impossible), or, when none would, how many the plan moves."""
    staying: dict[str, int] = {}
    moving: dict[str, int] = {}
    for one in plan.instances:
        counts = staying if one.kind in STAYING else moving
        for path in one.states or (one.state,):
            counts[path] = counts.get(path, 0) + 1
    old = engine.definition(plan.definition, plan.from_version)
    new = engine.definition(plan.definition, plan.to_version)
    which = "instances that would stay" if staying else "instances the plan moves"
    title = f"{plan.definition}: version {plan.from_version} → {plan.to_version} · {which}"
    svg = diagrams.diff_diagram(old, new, staying or moving, "svg", title=title, fallback=True)
    return svg.decode()


@router.get("/definitions/{name}/migrate", response_class=HTMLResponse, response_model=None)
def migrate_page(
    request: Request,
    name: str,
    from_version: Annotated[int | None, Query(alias="from", ge=1)] = None,
    to_version: Annotated[int | None, Query(alias="to", ge=1)] = None,
    mapping: Annotated[str, Query(alias="map")] = "",
) -> Response:
    if (redirect := locked_out(request)) is not None:
        return redirect
    engine = _engine(request)
    values: dict[str, Any] = {"name": name, "from_version": from_version}
    values |= {"to_version": to_version, "map_text": mapping, "plan": None, "svg": ""}
    try:
        latest = engine.versions(name)[-1]
    except TurnoutError as exc:
        return render(request, "error.html", message=str(exc), status_code=404)
    values["latest"] = latest
    if from_version is None:
        return render(request, "migrate.html", **values)
    try:
        plan = engine.plan_migration(name, from_version, to_version, _state_map(mapping))
    except TurnoutError as exc:
        status = 404 if isinstance(exc, NotFound) else 422
        return render(request, "migrate.html", status_code=status, error=str(exc), **values)
    values |= {"plan": plan, "svg": _picture(engine, plan), "to_version": plan.to_version}
    return render(request, "migrate.html", **values)


@router.post("/definitions/{name}/migrate", response_class=HTMLResponse, response_model=None)
def apply_from_form(
    request: Request,
    name: str,
    from_version: Annotated[int, Form(alias="from")],
    to_version: Annotated[int, Form(alias="to")],
    mapping: Annotated[str, Form(alias="map")] = "",
    form_token: Annotated[str, Form()] = "",
) -> Response:
    if (redirect := locked_out(request)) is not None:
        return redirect
    if (refused := forged(request, form_token)) is not None:
        return refused
    engine = _engine(request)
    values: dict[str, Any] = {"name": name, "from_version": from_version}
    values |= {"to_version": to_version, "map_text": mapping, "plan": None, "svg": ""}
    try:
        values["latest"] = engine.versions(name)[-1]
        plan = engine.plan_migration(name, from_version, to_version, _state_map(mapping))
        result = engine.migrate(plan)
    except TurnoutError as exc:
        status = 404 if isinstance(exc, NotFound) else 422
        return render(request, "migrate.html", status_code=status, error=str(exc), **values)
    again = urlencode({"from": from_version, "to": to_version, "map": mapping})
    return render(request, "migrate.html", result=result, again=again, **values)

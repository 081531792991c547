"""The dashboard's lists: the home page (definitions with their heat maps and counts), a
definition's page, and the instance list, newest first, sortable by its columns and filtered
on the server, one page at a time by the cursors of `Engine.instance_page`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from statemachines.errors import InvalidInput, TurnoutError

from ..engine import Engine
from ..listing import DEFAULT_SORT, Order
from ..search import parse_filters
from .links import href
from .pages import locked_out, render

router = APIRouter(include_in_schema=False)
STATUSES = ("scheduled", "running", "compensating", "succeeded", "failed", "cancelled")
PAGE_SIZES = (20, 50, 100, 200)
# The list's columns: (sort name or None, heading); a column first sorted descending (times,
# revisions) is newest or busiest first.
COLUMNS = (
    ("", "id"),
    ("definition", "definition"),
    ("key", "key"),
    ("state", "state"),
    ("status", "status"),
    ("revision", "rev"),
    ("created", "started"),
    ("updated", "updated"),
)
FIRST_DESCENDING = ("created", "updated", "revision")
FILTERS = ("definition", "state", "status", "q", "id", "where", "since", "until")


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


@router.get("/", response_class=HTMLResponse, response_model=None)
def home(request: Request) -> Response:
    """Every deployed definition with its heat map, how many instances it has by status
    and where its unfinished ones are."""
    if (redirect := locked_out(request)) is not None:
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
                "statuses": statuses,
                "all": sum(statuses.values()),
            }
        )
    return render(request, "home.html", definitions=rows)


@router.get("/definitions/{name}", response_class=HTMLResponse, response_model=None)
def definition_page(request: Request, name: str) -> Response:
    """A definition's heat map, where its instances are and its newest instances."""
    if (redirect := locked_out(request)) is not None:
        return redirect
    engine = _engine(request)
    try:
        definition = engine.definition(name)
        svg = engine.heat_diagram(name, fallback=True).decode()
    except TurnoutError as exc:
        return render(request, "error.html", message=str(exc), status_code=404)
    recent = engine.instance_page(definition=name, limit=20, count=True)
    return render(
        request,
        "definition.html",
        definition=definition,
        svg=svg,
        counts=engine.state_counts(name),
        statuses=engine.status_counts(name),
        recent=recent,
        versions=engine.versions(name),
    )


@dataclass(frozen=True)
class Heading:
    """A column heading of the list: its link sorts by the column (the other way round when
    the list is sorted by it already) and `aria_sort` says how it is sorted now."""

    label: str
    sort: str
    link: str | None
    aria_sort: str | None


def _moment(text: str, what: str) -> datetime | None:
    """The UTC time a filter field holds (the browser's `datetime-local` form, or ISO 8601
    with a zone); InvalidInput naming `what` for other text."""
    if not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: a zone that moves it out of range
        raise InvalidInput(f"{what} {text[:60]!r} is not a date and time") from None


def _headings(filters: dict[str, str], sort: str) -> list[Heading]:
    order = Order.parse(sort)
    found = []
    for name, label in COLUMNS:
        if not name:
            found.append(Heading(label, "", None, None))
            continue
        if order.name == name:
            other = name if order.descending else f"-{name}"
            aria = "descending" if order.descending else "ascending"
        else:
            other = f"-{name}" if name in FIRST_DESCENDING else name
            aria = None
        found.append(
            Heading(label, name, href("/instances", query={**filters, "sort": other}), aria)
        )
    return found


@router.get("/instances", response_class=HTMLResponse, response_model=None)
def instances_page(
    request: Request,
    definition: str = "",
    state: str = "",
    status: str = "",
    key: Annotated[str, Query(alias="q")] = "",
    instance_id: Annotated[str, Query(alias="id")] = "",
    where: str = "",
    time: str = "created",
    since: str = "",
    until: str = "",
    sort: str = DEFAULT_SORT,
    size: int = 50,
    cursor: str = "",
) -> Response:
    """The instances the filters select, a page at a time."""
    if (redirect := locked_out(request)) is not None:
        return redirect
    engine = _engine(request)
    filters = {
        "definition": definition,
        "state": state,
        "status": status,
        "q": key,
        "id": instance_id,
        "where": where,
        "time": "" if time == "created" else time,
        "since": since,
        "until": until,
        "size": "" if size == 50 else str(size),
    }
    try:
        if size not in PAGE_SIZES:
            raise InvalidInput(f"a page holds {', '.join(map(str, PAGE_SIZES))} instances")
        found = engine.instance_page(
            definition=definition or None,
            state=state or None,
            status=status or None,
            key_prefix=key or None,
            id_prefix=instance_id.strip() or None,
            # The list command's filters, separated by semicolons.
            where=parse_filters([part for part in where.split(";") if part.strip()]),
            time=time,
            since=_moment(since, "from"),
            until=_moment(until, "to"),
            sort=sort,
            limit=size,
            cursor=cursor or None,
            count=True,
        )
    except InvalidInput as exc:  # a filter that is none, a cursor of another listing
        return render(
            request, "error.html", title="Invalid input", message=str(exc), status_code=422
        )
    kept = {**filters, "sort": "" if sort == DEFAULT_SORT else sort}
    return render(
        request,
        "instances.html",
        found=found,
        filters=filters,
        headings=_headings(filters, found.sort),
        sort=found.sort,
        first=href("/instances", query=kept) if cursor else None,
        next=href("/instances", query={**kept, "cursor": found.next}) if found.next else None,
        previous=(
            href("/instances", query={**kept, "cursor": found.previous}) if found.previous else None
        ),
        statuses=STATUSES,
        sizes=PAGE_SIZES,
        names=[deployment.name for deployment in engine.definitions()],
        values=_form_values(filters, time, size),
        active=sum(1 for name in FILTERS if filters[name]),
    )


def _form_values(filters: dict[str, str], time: str, size: int) -> dict[str, Any]:
    """What the filter form's fields show: what was asked, the time kind and page size
    spelled out."""
    return {**filters, "time": time, "size": size}

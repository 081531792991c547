"""The change feed over HTTP: `GET /api/changes?after=N` pages through every committed step
in commit order; a reader passes the `next` it was given as `after` to read on."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from ..feed import MAX_FEED_LIMIT
from .routes import engine_of

router = APIRouter(tags=["changes"])


class ChangeOut(BaseModel):
    id: str = Field(description="'<instance id>.<revision>': the same wherever it travels.")
    position: int = Field(description="Its place in the feed.")
    instance_id: str
    key: str | None
    definition: str
    version: int
    revision: int
    kind: str = Field(description="The kind of the step's first history entry.")
    event: str | None
    from_state: str | None
    to_state: str
    status: str
    first_entry: int
    last_entry: int
    at: datetime


class ChangePage(BaseModel):
    items: list[ChangeOut]
    next: int = Field(description="Pass as `after` to read on (the same when nothing came).")


@router.get("/api/changes", response_model=ChangePage)
def list_changes(
    request: Request,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_FEED_LIMIT)] = 100,
    definition: Annotated[list[str] | None, Query()] = None,
) -> ChangePage:
    """Committed changes after position `after`, oldest first."""
    found = engine_of(request).changes(after, limit, definitions=definition or None)
    items = [ChangeOut(**change.to_json()) for change in found]
    return ChangePage(items=items, next=found[-1].position if found else after)

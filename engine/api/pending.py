"""`GET /api/instances/{id}/pending`: what an instance waits for, its unanswered tasks and its
timers, with an ETag so a page that polls it is answered 304 while nothing changed."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from .routes import engine_of

router = APIRouter(tags=["instances"])


class PendingTaskOut(BaseModel):
    id: str
    name: str
    state: str
    kind: str = Field(description="'task', 'item' (of a foreach) or another kind of work.")
    item: int | None
    status: str = Field(description="'ready' (waiting for a worker) or 'claimed' (leased).")
    attempt: int = Field(description="The attempt claimed last; 0 before the first claim.")
    max_attempts: int
    worker: str | None
    ready_at: datetime
    claimed_at: datetime | None
    lease_until: datetime | None
    last_error: dict[str, Any] | None = Field(
        description="The last failed attempt's error: type, message, traceback, seq, at."
    )


class PendingTimerOut(BaseModel):
    id: str
    state: str
    key: str
    due_at: datetime


class PendingOut(BaseModel):
    instance_id: str
    revision: int
    at: datetime = Field(description="When it was read, by the engine's clock.")
    tasks: list[PendingTaskOut]
    timers: list[PendingTimerOut]


def tag_of(body: Any, *extra: Any) -> str:
    """A strong ETag for a JSON-able value (and whatever else the caller adds)."""
    text = json.dumps([body, *extra], sort_keys=True, default=str)
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'


@router.get("/api/instances/{instance_id}/pending", response_model=PendingOut)
def read_pending(request: Request, response: Response, instance_id: str) -> Any:
    """The instance's unanswered tasks (attempt, worker, lease, last error) and its timers
    (due times). Sent with an ETag: with `If-None-Match` and nothing changed, 304."""
    body = engine_of(request).pending(instance_id).to_json()
    etag = tag_of({key: value for key, value in body.items() if key != "at"})
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    response.headers["ETag"] = etag
    return body

"""`POST /api/events:batch`: many events in one request, sent with `Engine.send_many`, an
outcome for each. Writes like any other: the guards ask for the token.

The body is checked whole before anything is sent: a malformed event (a missing `event`, an
unknown field, both `id` and `key`) is a 422 naming its place in the list, and more than
MAX_BATCH_EVENTS events a 413. What only the database can tell (no such instance, an event
the instance rejects, an idempotency key already applied) is that event's outcome.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..records import EventOutcome
from ..tracing import remote_parent
from .routes import InstanceOut, TraceparentHeader, engine_of, instance_out

router = APIRouter(tags=["instances"])
MAX_BATCH_EVENTS = 1000


class BatchEventIn(BaseModel):
    """One event of a batch: to the instance `id`, or to the instance of `definition` whose
    business key is `key`."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, max_length=200)
    definition: str | None = Field(None, max_length=200)
    key: str | None = Field(None, max_length=200)
    event: str = Field(min_length=1, max_length=200)
    data: Any = None
    idempotency_key: str | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def one_target(self) -> BatchEventIn:
        by_key = self.definition is not None or self.key is not None
        if (self.id is None) == (not by_key):
            raise ValueError('give "id", or "definition" and "key", not both')
        if by_key and (self.definition is None or self.key is None):
            raise ValueError('"key" needs "definition", and "definition" needs "key"')
        return self

    def sent(self) -> tuple[Any, ...]:
        target = self.id if self.id is not None else (self.definition, self.key)
        return (target, self.event, self.data, self.idempotency_key)


class BatchOutcomeOut(BaseModel):
    index: int = Field(description="The event's place in the request's list, from 0.")
    outcome: str = Field(description="applied, duplicate, rejected, not_found or invalid.")
    instance: InstanceOut | None = Field(
        None, description="After the event (applied); as it is (duplicate, rejected)."
    )
    allowed: list[str] | None = Field(None, description="The events it accepts (rejected).")
    message: str | None = Field(None, description="Why (rejected, not_found, invalid).")


class BatchOut(BaseModel):
    outcomes: list[BatchOutcomeOut]
    counts: dict[str, int] = Field(description="How many events had each outcome.")


@router.post("/api/events:batch", response_model=BatchOut)
def send_events(
    request: Request,
    events: Annotated[list[BatchEventIn], Body()],
    traceparent: TraceparentHeader = None,
) -> BatchOut | JSONResponse:
    """Send a list of events, in order, in as few transactions as they fit: an outcome for
    each, in the list's order; one rejected, unknown or duplicate changes nothing and does
    not stop the others. 413 over MAX_BATCH_EVENTS events."""
    if len(events) > MAX_BATCH_EVENTS:
        message = f"at most {MAX_BATCH_EVENTS} events per request, not {len(events)}"
        return JSONResponse({"error": "PayloadTooLarge", "message": message}, status_code=413)
    engine = engine_of(request)
    with remote_parent(engine.tracing, traceparent):
        outcomes = engine.send_many([event.sent() for event in events])
    return BatchOut(
        outcomes=[_outcome_out(engine, outcome) for outcome in outcomes],
        counts=dict(Counter(outcome.outcome for outcome in outcomes)),
    )


def _outcome_out(engine: Any, outcome: EventOutcome) -> BatchOutcomeOut:
    rejected = outcome.outcome == EventOutcome.REJECTED
    return BatchOutcomeOut(
        index=outcome.index,
        outcome=outcome.outcome,
        instance=None if outcome.instance is None else instance_out(engine, outcome.instance),
        allowed=list(outcome.allowed) if rejected else None,
        message=outcome.message or None,
    )

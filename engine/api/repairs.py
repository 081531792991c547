"""The JSON routes of an operator's repairs: redrive a failed instance, reset one to a state
by hand, and redrive the failed instances of a definition a filter selects (a dry run by
default). Writes like any other: the guards ask for the token.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, Field

from ..checks import MAX_LIST_LIMIT
from .routes import InstanceOut, engine_of, instance_out

router = APIRouter(tags=["repairs"])
MAX_REASON = 2000


class RedriveIn(BaseModel):
    reason: str | None = Field(None, max_length=MAX_REASON, description="Kept in its history.")


class ResetIn(BaseModel):
    to_state: str = Field(min_length=1, max_length=400, description="A state's full path.")
    context_patch: dict[str, Any] | None = Field(
        None, description="Keys set in the context (a shallow merge)."
    )
    reason: str = Field(min_length=1, max_length=MAX_REASON, description="Why (required).")


class RedriveManyIn(BaseModel):
    definition: str = Field(min_length=1, max_length=200)
    version: int | None = Field(None, ge=1)
    state: str | None = Field(
        None, description="Only those that failed in this state (or one inside it), or ended in it."
    )
    error_type: str | None = Field(None, description="Only those whose error has this type.")
    dry_run: bool = Field(True, description="Only say what each redrive would do (the default).")
    reason: str | None = Field(None, max_length=MAX_REASON)
    limit: int = Field(1000, ge=1, le=MAX_LIST_LIMIT)


class RedriveOutcomeOut(BaseModel):
    id: str
    outcome: str = Field(description="'redriven', 'would redrive' or 'refused'.")
    state: str = Field(description="Where its error arose.")
    error_type: str
    message: str = Field(description="Why it was refused.")


class RedriveManyOut(BaseModel):
    dry_run: bool
    items: list[RedriveOutcomeOut]


@router.post("/api/instances/{instance_id}/redrive", response_model=InstanceOut)
def redrive_instance(
    request: Request, instance_id: str, body: Annotated[RedriveIn | None, Body()] = None
) -> InstanceOut:
    """Restart a failed instance where it failed, running again only what had not
    succeeded; 409 when it cannot be redriven (not failed, compensated, or ended in a
    `final: failed` state its definition chose)."""
    engine = engine_of(request)
    return instance_out(engine, engine.redrive(instance_id, body.reason if body else None))


@router.post("/api/instances/{instance_id}/reset", response_model=InstanceOut)
def reset_instance(request: Request, instance_id: str, body: ResetIn) -> InstanceOut:
    """Move an instance by hand to `to_state`, its work dropped and the state's scheduled,
    its context patched; 422 naming the states there are when it has no such state."""
    engine = engine_of(request)
    instance = engine.reset(instance_id, body.to_state, body.context_patch, reason=body.reason)
    return instance_out(engine, instance)


@router.post("/api/instances:redrive", response_model=RedriveManyOut)
def redrive_many(request: Request, body: RedriveManyIn) -> RedriveManyOut:
    """Redrive the failed instances of a definition the filters select, oldest first, or
    with `dry_run` (the default) only say what each redrive would do."""
    outcomes = engine_of(request).redrive_many(
        body.definition,
        version=body.version,
        state=body.state,
        error_type=body.error_type,
        dry_run=body.dry_run,
        reason=body.reason,
        limit=body.limit,
    )
    items = [RedriveOutcomeOut(**outcome.to_json()) for outcome in outcomes]
    return RedriveManyOut(dry_run=body.dry_run, items=items)

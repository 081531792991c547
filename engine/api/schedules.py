"""The JSON routes of schedules: list and add them, read, pause, resume and delete one.
Writes like any other: the guards ask for the token."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from ..schedule_times import Schedule
from ..tables import CRON_LENGTH
from .routes import engine_of

router = APIRouter(tags=["schedules"])


class ScheduleIn(BaseModel):
    name: str = Field(min_length=1, max_length=100, description="Unique; letters, digits, . _ -")
    definition: str = Field(min_length=1, max_length=200)
    version: int | None = Field(None, ge=1, description="None: the latest at each start.")
    cron: str | None = Field(None, max_length=CRON_LENGTH, description="5 or 6 fields.")
    every: str | int | None = Field(None, description="Seconds, or text such as 10m or 1h30m.")
    timezone: str = Field("UTC", max_length=64, description="The IANA zone cron is read in.")
    data: dict[str, Any] | None = Field(None, description="The context each instance starts with.")
    overlap: str = Field("skip", description="skip, allow or buffer_one.")
    catch_up: str = Field("last", description="none, last or all (the 100 newest at most).")
    start_at: datetime | None = Field(None, description="The first tick is at or after it.")


class ScheduleOut(BaseModel):
    name: str
    definition: str
    version: int | None
    data: dict[str, Any]
    cron: str | None
    every_seconds: int | None
    expression: str
    timezone: str
    overlap: str
    catch_up: str
    paused: bool
    next_run_at: str = Field(description="ISO 8601, UTC.")
    next_run_local: str = Field(description="ISO 8601, in the schedule's time zone.")
    last_run_at: str | None
    last_instance_id: str | None
    buffered_tick: str | None
    last_error: str | None
    created_at: str
    updated_at: str


def schedule_out(schedule: Schedule) -> ScheduleOut:
    return ScheduleOut(**schedule.to_json())


@router.get("/api/schedules", response_model=list[ScheduleOut])
def list_schedules(request: Request) -> list[ScheduleOut]:
    """Every schedule, by name, with its next run."""
    return [schedule_out(schedule) for schedule in engine_of(request).schedules()]


@router.post("/api/schedules", response_model=ScheduleOut, status_code=201)
def add_schedule(request: Request, body: ScheduleIn) -> ScheduleOut:
    """Add a schedule (give `cron` or `every`); 422 for what cannot be, 404 for an unknown
    definition, 409 when the name is taken."""
    options = body.model_dump(exclude={"name", "definition"})
    return schedule_out(engine_of(request).add_schedule(body.name, body.definition, **options))


@router.get("/api/schedules/{name}", response_model=ScheduleOut)
def get_schedule(request: Request, name: str) -> ScheduleOut:
    """One schedule; 404 when there is none of that name."""
    return schedule_out(engine_of(request).schedule(name))


@router.delete("/api/schedules/{name}", status_code=204)
def delete_schedule(request: Request, name: str) -> Response:
    """Delete a schedule (the instances it started stay); 404 when there is none."""
    engine_of(request).delete_schedule(name)
    return Response(status_code=204)


@router.post("/api/schedules/{name}/pause", response_model=ScheduleOut)
def pause_schedule(request: Request, name: str) -> ScheduleOut:
    """Start no instance on its ticks until it is resumed."""
    return schedule_out(engine_of(request).pause_schedule(name))


@router.post("/api/schedules/{name}/resume", response_model=ScheduleOut)
def resume_schedule(request: Request, name: str) -> ScheduleOut:
    """Start instances again from its next tick; the ticks passed while paused are skipped."""
    return schedule_out(engine_of(request).resume_schedule(name))

"""The JSON routes of migrations: plan the move of a definition's running instances to
another version, and apply a plan (or plan and apply at once). Writes like every other
`POST /api` route: behind the token when one is set.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from statemachines.errors import InvalidInput
from statemachines.migration_plan import MigrationPlan

from ..engine import Engine
from ..migration_result import MigrationResult

router = APIRouter(tags=["migrations"])


class PlanIn(BaseModel):
    """What to plan: the version the instances are on, the version to move them to (the
    latest when left out), the state map (old state path -> new state path) and which
    running instances to take (`state`, `key_prefix`, `ids`; every one when left out)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    from_version: int = Field(alias="from", ge=1)
    to_version: int | None = Field(None, alias="to", ge=1)
    state_map: dict[str, str] = Field(default_factory=dict)
    where: dict[str, Any] | None = None


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _plan(engine: Engine, name: str, body: PlanIn) -> MigrationPlan:
    return engine.plan_migration(
        name, body.from_version, body.to_version, state_map=body.state_map, where=body.where
    )


@router.post("/api/definitions/{name}/migrations:plan")
def plan_migration(request: Request, name: str, body: PlanIn) -> dict[str, Any]:
    """Classify the running instances of `name` on version `from` for a move to `to`:
    safe, mapped, divergent or impossible, with counts per class and per state and, for a
    divergent instance, its first diverging history entry. Nothing is written."""
    return _plan(_engine(request), name, body).to_json()


@router.post("/api/definitions/{name}/migrations:apply")
def apply_migration(
    request: Request,
    name: str,
    body: Annotated[
        dict[str, Any],
        Body(
            description="A plan as `migrations:plan` answered it; or `{from, to, state_map, "
            "where}` to plan and apply at once."
        ),
    ],
) -> dict[str, Any]:
    """Move the plan's safe and mapped instances to its new version, each in a transaction
    of its own, checked again as it moves; one already moved is skipped, so a plan applied
    twice moves each instance once. The answer lists every instance with its outcome."""
    engine = _engine(request)
    if "instances" in body:
        plan = MigrationPlan.from_json(body)
        if plan.definition != name:
            raise InvalidInput(f"the plan is for {plan.definition!r}, not for {name!r}")
    else:
        try:
            wanted = PlanIn.model_validate(body)
        except ValidationError as exc:
            problems = [
                f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
                for error in exc.errors()
            ]
            message = "not a plan, nor what to plan: " + "; ".join(problems)
            raise InvalidInput(message, problems) from None
        plan = _plan(engine, name, wanted)
    result: MigrationResult = engine.migrate(plan)
    return result.to_json()

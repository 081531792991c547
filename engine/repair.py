"""An operator's repairs of instances: redrive a failed instance where it failed, reset one
to a state by hand, and redrive every failed instance a filter selects (or, for a dry run,
say what a redrive of each would do). Each change is one transaction, written here; the
`Engine` calls delegate to the functions at the end, and what a repair means for the
machine is `statemachines/redrive.py`'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, TypeVar

from statemachines import Status, Step
from statemachines.errors import (
    DatabaseUnavailable,
    InvalidInput,
    RedriveRefused,
    ResetRefused,
    TurnoutError,
)
from statemachines.steps import deadline_timer

from .catalog import Catalog
from .checks import MAX_LIST_LIMIT, check_id, check_version, checked
from .children import persist_step
from .persist import Applied, error_of, load_locked, snapshot_of
from .records import Instance
from .records import RedriveOutcome as RedriveOutcome  # Engine.redrive_many's answer
from .rows import InstanceRow
from .store import Store
from .transaction import Transaction

MAX_REASON_CHARS = 2000
PAGE = 500  # failed instances read at a time while selecting those to redrive
Result = TypeVar("Result")


# -- the transactions ------------------------------------------------------------------------
def redrive(
    tx: Transaction, catalog: Catalog, instance_id: str, reason: str | None, now: datetime
) -> Applied:
    """Restart the failed instance where it failed; RedriveRefused, writing nothing, when
    it cannot be. Whatever work a failed instance may still hold is dropped first, so the
    redrive's work is all it has."""
    row = load_locked(tx, instance_id)
    machine = catalog.version(tx, row.definition, row.version).machine
    try:
        step = machine.redrive(snapshot_of(row), reason, now)
    except RedriveRefused as exc:
        raise RedriveRefused(exc.reason, row.id) from None
    tx.drop_all_work(row.id)
    return persist_step(tx, catalog, row, _stamped(step, row), now, machine.definition)


def reset(
    tx: Transaction,
    catalog: Catalog,
    instance_id: str,
    to_state: str,
    patch: dict[str, Any] | None,
    reason: str,
    now: datetime,
) -> Applied:
    """Move the instance to `to_state` with its context patched: all its work (tasks,
    timers, the running children of the states it leaves) dropped, the new state's work
    scheduled. ResetRefused or UnknownState, writing nothing, when it cannot be."""
    row = load_locked(tx, instance_id)
    machine = catalog.version(tx, row.definition, row.version).machine
    try:
        step = machine.reset(snapshot_of(row), to_state, patch, reason, now)
    except ResetRefused as exc:
        raise ResetRefused(exc.reason, row.id) from None
    tx.drop_all_work(row.id)
    if step.status == Status.RUNNING and "deadline_at" in step.machine:
        tx.insert_timers(row.id, [deadline_timer(step.machine)])  # the move keeps the deadline
    return persist_step(tx, catalog, row, _stamped(step, row), now, machine.definition)


def _stamped(step: Step, row: InstanceRow) -> Step:
    """The step with the revision it gives the instance written in its first entry (the
    redrive's or the reset's), so that the audit trail names it."""
    first = step.history[0]
    step.history[0] = dataclasses.replace(first, data={**first.data, "revision": row.revision + 1})
    return step


def _compensated_long_ago(store: Store, row: InstanceRow | None) -> None:
    """RedriveRefused when `row` failed before failed instances kept their failure point
    (which says whether compensation ran) and its history shows compensation run for its
    failure: the machine alone would enter the failed state again afresh."""
    machine = row.machine if row is not None else None
    if row is None or row.status != Status.FAILED or not isinstance(machine, dict):
        return
    error = machine.get("error")
    if "redrive" in machine or machine.get("active") or not isinstance(error, dict):
        return
    ran = [
        str(entry.data["task"])
        for entry in store.history(row.id, row.definition)
        if entry.kind == "compensate"
        and entry.seq > int(error.get("seq") or 0)
        and isinstance(entry.data, dict)
        and entry.data.get("task")
    ]
    if ran:
        reason = f"compensation ran for its failure ({', '.join(ran)}); reset it instead"
        raise RedriveRefused(reason, row.id)


# -- the Engine's calls ----------------------------------------------------------------------
class Facade(Protocol):
    """What of the `Engine` the calls below use."""

    catalog: Catalog
    store: Store

    def clock(self) -> datetime: ...
    def _apply(self, operation: Callable[..., Result], *args: Any) -> Result: ...
    def _publish(self, applied: Applied | None) -> None: ...


def redrive_instance(engine: Facade, instance_id: str, reason: str | None) -> Instance:
    """`Engine.redrive`: check, apply in one transaction, publish."""
    check_id(instance_id)
    reason = _reason(reason, required=False)
    _compensated_long_ago(engine.store, engine.store.get_instance(instance_id))
    applied = engine._apply(redrive, engine.catalog, instance_id, reason, engine.clock())
    engine._publish(applied)
    return applied.instance


def reset_instance(
    engine: Facade, instance_id: str, to_state: str, patch: Any, reason: str
) -> Instance:
    """`Engine.reset`: check, apply in one transaction, publish."""
    check_id(instance_id)
    if not isinstance(to_state, str):
        raise InvalidInput(f"a state path must be text, not {type(to_state).__name__}")
    explained = str(_reason(reason, required=True))
    if patch is not None:
        patch = checked(patch, "the context patch")
        if not isinstance(patch, dict):
            raise InvalidInput("a context patch must be a JSON object (its keys are set)")
    now = engine.clock()
    applied = engine._apply(reset, engine.catalog, instance_id, to_state, patch, explained, now)
    engine._publish(applied)
    return applied.instance


def _reason(reason: Any, required: bool) -> str | None:
    """The reason as it is recorded; InvalidInput for one that is not text, too long, or
    (`required`) missing or blank."""
    if reason is None and not required:
        return None
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("a reason is required: an operator's move is always explained")
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidInput(f"a reason is {len(reason)} characters, over {MAX_REASON_CHARS}")
    return str(checked(reason, "the reason"))


def redrive_many(
    engine: Facade,
    definition: str,
    version: int | None,
    state: str | None,
    error_type: str | None,
    dry_run: bool,
    reason: str | None,
    limit: int,
) -> list[RedriveOutcome]:
    """`Engine.redrive_many`: select the failed instances, oldest first, then redrive each
    in a transaction of its own (or, for a dry run, compute its redrive and write nothing).
    A refusal is the instance's outcome, not the call's; a database failure stops the call."""
    check_version(definition, version)
    if not 0 < limit <= MAX_LIST_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIST_LIMIT}")
    reason = _reason(reason, required=False)
    with engine.store.reading() as tx:
        engine.catalog.version(tx, definition, version)  # DefinitionNotFound, say, at once
    rows = _selected(engine.store, definition, version, state, error_type, limit)
    return [_redrive_one(engine, row, reason, dry_run) for row in rows]


def _selected(
    store: Store,
    definition: str,
    version: int | None,
    state: str | None,
    error_type: str | None,
    limit: int,
) -> list[InstanceRow]:
    """The failed instances of `definition` that `_matches` selects, at most `limit`, oldest
    first; read in full before any changes, so that redriving them does not move the pages."""
    found: list[InstanceRow] = []
    offset = 0
    while len(found) < limit:
        page = store.list_instances(
            definition=definition, status=Status.FAILED, limit=PAGE, offset=offset
        )
        found.extend(row for row in page if _matches(row, version, state, error_type))
        if len(page) < PAGE:
            break
        offset += PAGE
    return found[:limit]


def _matches(
    row: InstanceRow, version: int | None, state: str | None, error_type: str | None
) -> bool:
    """Whether the failed instance `row` is selected: of `version`, with an error of type
    `error_type`, and `state` the state it ended in, or one its error arose in or a redrive
    would restart from, or a state around either."""
    error = error_of(row) or {}
    if version is not None and row.version != version:
        return False
    if error_type is not None and error.get("type") != error_type:
        return False
    if state is None or row.state == state:
        return True
    point = row.machine.get("redrive") if isinstance(row.machine, dict) else None
    places = [error.get("state"), point.get("state") if isinstance(point, dict) else None]
    return any(isinstance(at, str) and (at + ".").startswith(state + ".") for at in places)


def _redrive_one(
    engine: Facade, row: InstanceRow, reason: str | None, dry_run: bool
) -> RedriveOutcome:
    error = error_of(row) or {}
    state, error_type = str(error.get("state", "")), str(error.get("type", ""))
    try:
        _compensated_long_ago(engine.store, row)
        if dry_run:
            with engine.store.reading() as tx:
                machine = engine.catalog.version(tx, row.definition, row.version).machine
            machine.redrive(snapshot_of(row), reason, engine.clock())
            return RedriveOutcome(row.id, RedriveOutcome.WOULD_REDRIVE, state, error_type)
        applied = engine._apply(redrive, engine.catalog, row.id, reason, engine.clock())
    except DatabaseUnavailable:
        raise
    except TurnoutError as exc:
        message = exc.reason if isinstance(exc, RedriveRefused) else str(exc)
        return RedriveOutcome(row.id, RedriveOutcome.REFUSED, state, error_type, message)
    engine._publish(applied)
    return RedriveOutcome(row.id, RedriveOutcome.REDRIVEN, state, error_type)

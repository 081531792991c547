"""How one step is written inside the current transaction: the instance row (its revision
checked), the history entries, the work its left states drop and the tasks and timers it
creates; and the caller-facing `Instance` of a row.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from statemachines import CompiledMachine, Definition, Snapshot, Status, Step
from statemachines.errors import (
    DefinitionError,
    DefinitionNotFound,
    ExpressionError,
    InstanceNotFound,
    InvalidInput,
    TurnoutError,
)
from statemachines.failures import faulted
from statemachines.steps import Entry

from .codec import copied
from .counts import tally_status
from .records import HistoryEntry, Instance, new_entry, new_instance
from .rows import Claim, InstanceRow, TaskRow, Written, new_row
from .transaction import Transaction

# Raised while applying a timer, a task's answer or an expiry, these are the instance's own
# fault (see `guarded.apply_guarded`), as is any exception that is not a TurnoutError; other
# TurnoutErrors (DatabaseUnavailable, TaskNotFound, a refused answer...) are the caller's.
_INSTANCE_FAULTS = (
    DefinitionError,
    DefinitionNotFound,
    InstanceNotFound,
    InvalidInput,
    ExpressionError,
)


def instance_fault(exc: Exception) -> bool:
    """Whether `exc`, raised applying work to an instance, is the instance's own fault."""
    return not isinstance(exc, TurnoutError) or isinstance(exc, _INSTANCE_FAULTS)


@dataclass
class Applied:
    """A step written in the current transaction: the instance after it, its new history.

    `written` is the transaction's own list of every step it persisted, of this instance and
    of any other (a parent, a child): shared by the Applied of one transaction, it is
    emptied by the first publication, which runs the in-process hooks of them all.
    """

    instance: Instance
    entries: list[HistoryEntry]
    claimed: list[TaskRow] = field(default_factory=list)  # new tasks written claimed
    written: list[Written] = field(default_factory=list)


def snapshot(row: InstanceRow) -> Instance:
    """The caller-facing view of an instance row."""
    return new_instance(  # Instance's fields in order
        row.id,
        row.key,
        row.definition,
        row.version,
        row.state,
        list(row.active or []),
        row.status,
        row.context,
        row.created_at,
        row.updated_at,
        row.revision,
        None,  # last_error: read by Engine.get
        error_of(row),
        row.parent_id,
        [],  # children: read by Engine.get
        due_of(row),
        [],  # held: read by Engine.get
    )


def error_of(row: InstanceRow) -> dict[str, Any] | None:
    """The error a failed instance ended with, as its machine data keeps it."""
    if row.status != Status.FAILED or not isinstance(row.machine, dict):
        return None
    error = row.machine.get("error")
    return error if isinstance(error, dict) else None


def due_of(row: InstanceRow) -> datetime | None:
    """When a scheduled instance starts (scheduled_starts.py); None for any other."""
    if row.status != Status.SCHEDULED or not isinstance(row.machine, dict):
        return None
    due = row.machine.get("due_at")
    return datetime.fromisoformat(due) if isinstance(due, str) else None


def persist(
    tx: Transaction,
    row: InstanceRow,
    step: Step,
    now: datetime,
    definition: Definition | None = None,
    *,
    insert: bool = False,
    finished: tuple[str, int] | None = None,
    claim: Claim | None = None,
) -> Applied:
    """Write `step` over `row` inside `tx`: instance, history, work dropped and created.

    With `definition`, only the states that can have tasks or timers have work to drop;
    `finished` is the state entry whose one task this step answers (nothing else of it
    to drop); `claim` takes one of the new tasks for the worker going on with the instance;
    with `insert`, `row` is a new instance, written once as it is after the step.
    """
    new = new_row(  # built directly: dataclasses.replace costs more, on every event
        row.id,
        row.key,
        row.definition,
        row.version,
        step.state or row.state,
        step.atomic,
        step.status,
        step.context,
        step.machine,
        row.revision + 1,
        row.history_seq + len(step.history),
        row.created_at,
        now,
        row.parent_id,
    )
    entries = [
        new_entry(
            row.history_seq + i,
            now,
            e.kind,
            e.event,
            e.from_state,
            e.to_state,
            e.data,
            row.id,
            row.definition,
        )
        for i, e in enumerate(step.history, 1)
    ]
    # The instance row is written first: without a row lock, its revision check is what
    # detects a concurrent writer, before anything else is written.
    if insert:
        tx.insert_instance(new)
    else:
        tx.update_instance(new, row)
    tx.append_history(entries)
    tx.insert_change(new, None if insert else row.state, entries)
    tx.written.append(Written(None if insert else row, new, entries))
    if insert or step.status != row.status:  # the metrics count starts and ends
        tally_status(tx.tallies, row.definition, step.status, insert)
    if step.cancelled:
        if definition is None:
            tx.drop_work(row.id, step.cancelled, step.cancelled)
        else:
            tasks_of, timers_of = [], []
            work = definition.work
            for pair in step.cancelled:
                kinds = work.get(pair[0])
                if kinds is None:  # a parallel state's region is no state: it has timers only
                    timers_of.append(pair)
                    continue
                foreach, task, timers = kinds
                if foreach or (task and pair != finished):
                    tasks_of.append(pair)
                if timers:
                    timers_of.append(pair)
            if tasks_of or timers_of:
                tx.drop_work(row.id, tasks_of, timers_of)
    claimed = tx.insert_tasks(row.id, step.tasks, now, claim) if step.tasks else []
    if step.timers:
        tx.insert_timers(row.id, step.timers)
    return Applied(snapshot(new), entries, claimed, tx.written)


def record(tx: Transaction, row: InstanceRow, entries: list[Entry], now: datetime) -> Applied:
    """Append history entries that change nothing else (a retry, a stale result)."""
    return persist(tx, row, Step(row.machine, row.context, row.status, list(entries)), now)


def snapshot_of(row: InstanceRow) -> Snapshot:
    """What the compiled machine reads of an instance row: the row's machine data and
    context copied for it (the row stays as read: the hooks compare the two)."""
    return Snapshot(copied(row.machine), copied(row.context), row.status, row.history_seq, True)


def event_step(
    machine: CompiledMachine, row: InstanceRow, event: str, data: Any, now: datetime
) -> Step:
    """The step of `event` on `row`: a plain move (statemachines/flat.py) straight from the
    row's data, which it reads without changing or copying; any other by the full run, on
    a copy. EventRejected, changing nothing, if no transition takes it."""
    as_read = Snapshot(row.machine, row.context, row.status, row.history_seq)
    step = machine.send_flat(as_read, event, data)
    return step if step is not None else machine.send_by_run(snapshot_of(row), event, data, now)


def load_locked(tx: Transaction, instance_id: str) -> InstanceRow:
    """The instance row, locked against other writers until the transaction ends."""
    row = tx.lock_instance(instance_id)
    if row is None:
        raise InstanceNotFound(instance_id)
    return row


def fail_instance(
    tx: Transaction, row: InstanceRow, error: dict[str, Any], now: datetime
) -> Applied:
    """An operation on the instance failed for a reason other than the caller's or the
    database's (a value that cannot be stored, a corrupt row, a definition that no longer
    loads): record `error` as an `error` entry, drop all its tasks and timers, end `failed`.

    No compensation runs: the machine that would plan it may be what is broken. A finished
    instance keeps its status; only the entry is added. An instance that ends failed here
    keeps `error` as its error (the entry's seq, its state), unless it was already failing
    with one (compensating after a failure).
    """
    # Written as read but for status, counters and the error: the machine itself may be
    # what is broken.
    status, machine = faulted(row.machine, row.status, row.state, error, row.history_seq + 1)
    new = dataclasses.replace(
        row,
        status=status,
        machine=machine,
        revision=row.revision + 1,
        history_seq=row.history_seq + 1,
        updated_at=now,
    )
    entry = HistoryEntry(
        new.history_seq, now, "error", None, row.state or None, None, error, row.id, row.definition
    )
    tx.update_instance(new, row)
    tx.append_history([entry])
    tx.insert_change(new, row.state, [entry])
    tx.written.append(Written(row, new, [entry]))
    if status != row.status:
        tally_status(tx.tallies, row.definition, status, False)
    tx.drop_all_work(row.id)
    return Applied(snapshot(new), [entry], written=tx.written)

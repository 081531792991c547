"""Applying one operation to one instance inside one transaction.

The compiled machine of `statemachines` computes each step; this module locks the instance,
persists the step (instance row, history, tasks, timers) and hands back what will commit.
Task outcomes (results, failed attempts, retries, stale answers) and timers are decided here.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from statemachines import CompiledMachine, Definition, Entry, Step, storable
from statemachines.errors import (
    ContextTooLarge,
    InstanceNotFound,
    TaskNotFound,
    TaskNotHeld,
    ValueNotStorable,
)

from .records import HistoryEntry, Instance
from .transaction import Claim, InstanceRow, TaskRow, TimerRow, Transaction

MAX_RESULT_BYTES = 1_000_000
MAX_HISTORY = 100_000
MAX_STALE_BYTES = 4096  # of a late answer's result or error kept in its `stale` entry
Compiled = Callable[[InstanceRow], CompiledMachine]


@dataclass
class Applied:
    """A step written in the current transaction: the instance after it, its new history."""

    instance: Instance
    entries: list[HistoryEntry]
    claimed: list[TaskRow] = field(default_factory=list)  # new tasks written claimed


def snapshot(row: InstanceRow) -> Instance:
    """The caller-facing view of an instance row."""
    return Instance(
        id=row.id,
        key=row.key,
        definition=row.definition,
        version=row.version,
        state=row.state,
        active=list(row.active or []),
        status=row.status,
        context=row.context,
        created_at=row.created_at,
        updated_at=row.updated_at,
        revision=row.revision,
    )


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
    new = InstanceRow(  # built directly: dataclasses.replace costs more, on every event
        row.id, row.key, row.definition, row.version, step.state or row.state, step.active,
        step.status, step.context, step.machine, row.revision + 1,
        row.history_seq + len(step.history), row.created_at, now)  # fmt: skip
    entries = [
        HistoryEntry(
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
    if step.cancelled:
        if definition is None:
            tx.drop_work(row.id, step.cancelled, step.cancelled)
        else:
            states = [(pair, definition.state(pair[0])) for pair in step.cancelled]
            tx.drop_work(
                row.id,
                [p for p, state in states if state.foreach or (state.task and p != finished)],
                [p for p, state in states if state.after],
            )
    claimed = tx.insert_tasks(row.id, step.tasks, now, claim) if step.tasks else []
    if step.timers:
        tx.insert_timers(row.id, step.timers)
    return Applied(snapshot(new), entries, claimed)


def record(tx: Transaction, row: InstanceRow, entries: list[Entry], now: datetime) -> Applied:
    """Append history entries that change nothing else (a retry, a stale result)."""
    return persist(tx, row, Step(row.machine, row.context, row.status, list(entries)), now)


def load_locked(tx: Transaction, instance_id: str) -> InstanceRow:
    """The instance row, locked against other writers until the transaction ends."""
    row = tx.lock_instance(instance_id)
    if row is None:
        raise InstanceNotFound(instance_id)
    return row


# -- task outcomes -----------------------------------------------------------------------------
def check_result(result: Any) -> tuple[Any, dict[str, Any] | None]:
    """(`result` as it is stored, None) when `storable` takes it and it is of a sane size;
    else (None, the error of the attempt)."""
    try:
        result = storable(result, "result")
    except ValueNotStorable as exc:
        return None, {"type": "ResultError", "message": str(exc)}
    size = len(json.dumps(result))
    if size > MAX_RESULT_BYTES:
        return None, {
            "type": "ResultError",
            "message": f"the result is {size} bytes, over the limit of {MAX_RESULT_BYTES}",
        }
    return result, None


def complete_task(
    tx: Transaction,
    compiled: Compiled,
    task_id: str,
    worker: str,
    result: Any,
    now: datetime,
    claim: Claim | None = None,
    attempt: int | None = None,
) -> tuple[bool, Applied | None]:
    """Apply a task's result; (False, ...) when it was stale or came too late. With `claim`,
    a new task the result leads to may be written claimed (`Applied.claimed`); with
    `attempt`, an answer to another attempt than the task's current one is refused."""
    result, error = check_result(result)
    task, row = _lock_task(tx, task_id)
    _check_attempt(task, worker, attempt)
    if not _holds(tx, task, worker, now):
        late = {"result": result} if error is None else {"error": error}
        return False, _stale(tx, row, task, worker, "done", late, now)
    if error is None and _timed_out(task, now):
        error = _timeout_error(task)
    if error is not None:
        return False, failed_attempt(tx, compiled, row, task, error, now)
    machine = compiled(row)
    step = machine.task_done(row.machine, row.context, row.status, task.ref, result, now)
    try:  # the instance row is written first
        one_task = task.item is None and task.kind == "task"  # not a foreach item
        entry = (task.state_path, task.activation) if one_task else None
        applied = persist(tx, row, step, now, machine.definition, finished=entry, claim=claim)
    except ContextTooLarge as exc:
        error = {"type": "ResultError", "message": str(exc)}
        return False, failed_attempt(tx, compiled, row, task, error, now)
    tx.update_task(task.id, status="done")
    return True, applied


def fail_task(
    tx: Transaction,
    compiled: Compiled,
    task_id: str,
    worker: str,
    error: dict[str, Any],
    now: datetime,
    attempt: int | None = None,
) -> tuple[bool, Applied | None]:
    """Count a failed attempt; (False, ...) when the holder had lost the task."""
    task, row = _lock_task(tx, task_id)
    _check_attempt(task, worker, attempt)
    if not _holds(tx, task, worker, now):
        return False, _stale(tx, row, task, worker, "failed", {"error": error}, now)
    if _timed_out(task, now):
        error = _timeout_error(task)
    return True, failed_attempt(tx, compiled, row, task, error, now)


def failed_attempt(
    tx: Transaction,
    compiled: Compiled,
    row: InstanceRow,
    task: TaskRow,
    error: dict[str, Any],
    now: datetime,
) -> Applied:
    """Retry after the policy's wait if attempts are left, else fire `failed`."""
    if task.attempt < task.max_attempts:
        ready_at = now + retry_wait(task.retry, task.attempt)
        # The worker stays named (as after a lapse) until the next claim: see `_stale`.
        tx.update_task(task.id, status="ready", claimed_at=None, lease_until=None,
                       ready_at=ready_at)  # fmt: skip
        return record(
            tx,
            row,
            [
                Entry(
                    "retry",
                    "failed",
                    task.state_path,
                    None,
                    {
                        "task": task.name,
                        "attempt": task.attempt,
                        "error": error,
                        "next_attempt_at": ready_at.isoformat(),
                    },
                )
            ],
            now,
        )
    tx.update_task(task.id, status="done")
    step = compiled(row).task_failed(
        row.machine, row.context, row.status, task.ref, error, task.attempt, now
    )
    return persist(tx, row, step, now)


def retry_wait(policy: dict[str, Any], failed_attempts: int) -> timedelta:
    """The wait before the next attempt once `failed_attempts` attempts have failed."""
    seconds = (
        policy.get("delay_ms", 1000)
        / 1000
        * policy.get("backoff", 2.0) ** max(failed_attempts - 1, 0)
    )
    if policy.get("max_delay_ms") is not None:
        seconds = min(seconds, policy["max_delay_ms"] / 1000)
    if policy.get("jitter"):
        seconds *= random.uniform(0.5, 1.0)
    return timedelta(seconds=min(seconds, 10 * 365 * 86400))


def expire_task(tx: Transaction, compiled: Compiled, task_id: str, now: datetime) -> Applied | None:
    """A claimed task past its timeout fails its attempt; past its lease it is released."""
    task, row = _lock_task(tx, task_id)
    if task.status != "claimed":
        return None
    if _timed_out(task, now):
        return failed_attempt(tx, compiled, row, task, _timeout_error(task), now)
    if task.lease_until is not None and task.lease_until <= now:
        _release(tx, task)
    return None


def _release(tx: Transaction, task: TaskRow) -> None:
    """The holder's lease lapsed (it died or hung): the attempt is not used up, and anyone
    may claim the task again. The row keeps naming the holder until the next claim: its late
    answer is then recognised (and recorded stale) while anyone else's is refused."""
    tx.update_task(task.id, status="ready", claimed_at=None, lease_until=None,
                   attempt=max(task.attempt - 1, 0))  # fmt: skip


def fire_timer(
    tx: Transaction, compiled: Compiled, timer: TimerRow, now: datetime
) -> Applied | None:
    """Fire a due timer unless another worker took it; a timer of a left state does nothing."""
    row = load_locked(tx, timer.instance_id)
    if not tx.take_timer(timer.id):
        return None
    step = compiled(row).timer_fired(
        row.machine, row.context, row.status, (timer.state_path, timer.activation), timer.key, now
    )
    if not step.changed and not step.history:
        return None
    return persist(tx, row, step, now)


# -- engine faults -----------------------------------------------------------------------------


def fail_poisoned(tx: Transaction, *, error: dict[str, Any], now: datetime,
                  task_id: str | None = None, timer_id: str | None = None,
                  instance_id: str | None = None) -> Applied:  # fmt: skip
    """Fail the instance that a task (`task_id`), a timer (`timer_id`) or an operation on
    `instance_id` could not be applied to; the timer is taken so no sweep fires it again."""
    if instance_id is not None:
        row = load_locked(tx, instance_id)
    else:
        task, found = tx.lock_task(task_id or "")
        if task is None or found is None:
            raise InstanceNotFound(task.instance_id if task else f"of task {task_id}")
        row = found
    if timer_id is not None:
        tx.take_timer(timer_id)
    return fail_instance(tx, row, error, now)


def fail_instance(tx: Transaction, row: InstanceRow, error: dict[str, Any],
                  now: datetime) -> Applied:  # fmt: skip
    """An operation on the instance failed for a reason other than the caller's or the
    database's (a value that cannot be stored, a corrupt row, a definition that no longer
    loads): record `error` as an `error` entry, drop all its tasks and timers, end `failed`.

    No compensation runs: the machine that would plan it may be what is broken. A finished
    instance keeps its status; only the entry is added.
    """
    # Written as read but for status and counters: the machine itself may be what is broken.
    status = row.status if row.status in ("succeeded", "failed", "cancelled") else "failed"
    new = dataclasses.replace(row, status=status, revision=row.revision + 1,
                              history_seq=row.history_seq + 1, updated_at=now)  # fmt: skip
    entry = HistoryEntry(new.history_seq, now, "error", None, row.state or None, None, error,
                         row.id, row.definition)  # fmt: skip
    tx.update_instance(new, row)
    tx.append_history([entry])
    tx.drop_all_work(row.id)
    return Applied(snapshot(new), [entry])


def drop_item(tx: Transaction, task_id: str | None, timer_id: str | None) -> None:
    """Set aside a task or timer whose instance cannot even be failed (its row is unreadable
    or gone), so that no sweep takes it up again."""
    if task_id is not None:
        tx.update_task(task_id, status="dropped", worker=None, lease_until=None)
    if timer_id is not None:
        tx.take_timer(timer_id)


def _lock_task(tx: Transaction, task_id: str) -> tuple[TaskRow, InstanceRow]:
    task, row = tx.lock_task(task_id)
    if task is None:
        raise TaskNotFound(task_id)
    if row is None:
        raise InstanceNotFound(task.instance_id)
    return task, row


def _check_attempt(task: TaskRow, worker: str, attempt: int | None) -> None:
    """A worker's handler that outlived its attempt's timeout answers late, and the same
    worker may hold the retry by then: its answer must not pass for the retry's."""
    if attempt is not None and attempt != task.attempt:
        raise TaskNotHeld(task.id, worker, f"the answer is for attempt {attempt}, and the task "
                          f"is at attempt {task.attempt}")  # fmt: skip


def _holds(tx: Transaction, task: TaskRow, worker: str, now: datetime) -> bool:
    """Whether `worker` still holds `task`; a lapsed lease is released for another claim."""
    if task.status != "claimed" or task.worker != worker:
        return False
    if task.lease_until is not None and task.lease_until < now and not _timed_out(task, now):
        _release(tx, task)
        return False
    return True


def _timed_out(task: TaskRow, now: datetime) -> bool:
    timeout, claimed = task.timeout, task.claimed_at
    return timeout is not None and claimed is not None and now - claimed > timeout


def _timeout_error(task: TaskRow) -> dict[str, Any]:
    seconds = (task.timeout_ms or 0) / 1000
    return {
        "type": "Timeout",
        "message": f"attempt {task.attempt} of {task.name!r} ran past its timeout of {seconds:g}s",
    }


def _stale(
    tx: Transaction,
    row: InstanceRow,
    task: TaskRow,
    worker: str,
    event: str,
    data: dict[str, Any],
    now: datetime,
) -> Applied:
    """A late answer from the task's last holder (its lease lapsed, its attempt timed out, or
    the state was left), recorded once as a `stale` entry with its result or error cut to
    MAX_STALE_BYTES. TaskNotHeld, writing nothing, for any other caller, for the same caller
    again, and when the instance's history is full."""
    if task.worker != worker:
        raise TaskNotHeld(task.id, worker)
    if row.history_seq >= MAX_HISTORY:
        raise TaskNotHeld(task.id, worker, f"the instance's history holds {MAX_HISTORY} "
                          "entries, the most it may; the late answer is not recorded")  # fmt: skip
    # No one live holds the task (a claimed row naming this worker has a lapsed lease, just
    # released): forgetting the name makes a second late answer a refusal, not another entry.
    tx.update_task(task.id, worker=None)
    ((name, value),) = data.items()
    entry = {"task": task.name, "task_id": task.id, "worker": worker, **_bounded(name, value)}
    return record(tx, row, [Entry("stale", event, task.state_path, None, entry)], now)


def _bounded(name: str, value: Any) -> dict[str, Any]:
    """`{name: value}`, or the first MAX_STALE_BYTES of value's JSON text with `truncated`
    giving its full size: a late answer is kept for the record, not for use."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return {name: f"<a {type(value).__name__} that is not a JSON value>"}
    raw = text.encode()
    if len(raw) <= MAX_STALE_BYTES:
        return {name: value}
    return {name: raw[:MAX_STALE_BYTES].decode(errors="ignore"), "truncated": len(raw)}

"""Every operation on an instance, as the transaction that makes it.

One function per `Engine` verb, each taking the open transaction, the catalog of deployed
versions, the verb's arguments and the time, and returning what will commit (`Applied`): the
compiled machine of `statemachines` computes the step from the instance's snapshot, and this
module locks the instance, writes the step (instance row, history, tasks, timers) and decides
task outcomes (results, failed attempts, retries, stale answers) and timers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from statemachines import CompiledMachine, Status, Step, storable
from statemachines.errors import (
    ContextTooLarge,
    EventRejected,
    InstanceNotFound,
    TaskNotFound,
    TaskNotHeld,
    ValueNotStorable,
)
from statemachines.model import Retried, Retry
from statemachines.steps import FINISHED, Entry

from . import children, scheduled_starts
from .catalog import Catalog, Version
from .children import persist_step
from .counts import ACCEPTED, ATTEMPT, LEASE_EXPIRED, POISONED
from .persist import Applied, event_step, fail_instance, load_locked, record, snapshot, snapshot_of
from .persist import instance_fault as instance_fault  # guarded.py asks it here
from .records import ClaimedTask
from .rows import Claim, InstanceRow, TaskRow, TimerRow, new_id
from .tables import TaskState
from .transaction import Transaction

MAX_RESULT_BYTES = 1_000_000
MAX_HISTORY = 100_000
MAX_STALE_BYTES = 4096  # of a late answer's result or error kept in its `stale` entry


@dataclass
class Completed:
    """What a task's answer did: whether it was applied (False: stale, refused as late, or a
    failed attempt), the step written, and the instance's next task claimed with it (read
    once the transaction has ended)."""

    ok: bool
    applied: Applied | None
    following: Callable[[], list[TaskRow]] = list


class Poisoned(NamedTuple):
    """What to fail, or set aside, when work cannot be applied to its instance."""

    task_id: str | None = None
    timer_id: str | None = None
    instance_id: str | None = None


# -- instances ---------------------------------------------------------------------------------
def start(
    tx: Transaction,
    catalog: Catalog,
    definition: str,
    version: int | None,
    data: dict[str, Any],
    key: str | None,
    now: datetime,
    deadline: timedelta | None = None,
) -> Applied:
    """A new instance of `definition` (version `version`, else the latest) with `data` as
    its context, checked against the version's input schema; `deadline`, if given, instead
    of the definition's."""
    return start_batch(tx, catalog, definition, version, [(data, key)], now, deadline)[0]


def start_batch(
    tx: Transaction,
    catalog: Catalog,
    definition: str,
    version: int | None,
    items: Iterable[tuple[dict[str, Any], str | None]],
    now: datetime,
    deadline: timedelta | None = None,
) -> list[Applied]:
    """One new instance per (data, key) of `items`; every item is checked before any is
    written, and the batch commits or fails as a whole."""
    found = catalog.version(tx, definition, version)
    prepared = [_first_step(found, data, key, now, deadline) for data, key in items]
    return [persist_step(tx, catalog, row, step, now, insert=True) for row, step in prepared]


def _first_step(
    found: Version,
    data: dict[str, Any],
    key: str | None,
    now: datetime,
    deadline: timedelta | None = None,
) -> tuple[InstanceRow, Step]:
    found.check_input(data)
    step = found.machine.start(data, now, deadline)
    row = InstanceRow.new(new_id(), key, found.definition.name, found.number, now)
    return row, step


def send(
    tx: Transaction,
    catalog: Catalog,
    instance_id: str,
    event: str,
    data: Any,
    idempotency_key: str | None,
    now: datetime,
) -> Applied:
    """Apply `event` with payload `data`; EventRejected (writing nothing) if no transition
    takes it. An event already accepted under `idempotency_key` changes nothing (no entries)."""
    row = load_locked(tx, instance_id)
    if idempotency_key is not None and tx.seen_idempotency(row.id, idempotency_key):
        return Applied(snapshot(row), [])
    try:
        if row.history_seq >= MAX_HISTORY:
            reason = f"the instance's history holds {MAX_HISTORY} entries, the most it may"
            raise EventRejected(event, row.state, [], reason)
        machine = catalog.version(tx, row.definition, row.version).machine
        step = event_step(machine, row, event, data, now)
    except EventRejected as exc:
        exc.definition = row.definition  # what the metrics count it under
        raise
    applied = persist_step(tx, catalog, row, step, now, machine.definition)
    if idempotency_key is not None:
        tx.remember_idempotency(row.id, idempotency_key, now)
    tx.tallies.append((ACCEPTED, row.definition))
    return applied


def cancel(
    tx: Transaction, catalog: Catalog, instance_id: str, reason: str | None, now: datetime
) -> Applied:
    """Stop a running instance: drop its work, run its compensations, end `cancelled`."""
    row = load_locked(tx, instance_id)
    if row.status == Status.SCHEDULED:  # not started yet: nothing ran, nothing to undo
        return scheduled_starts.cancel(tx, row, reason, now)
    machine = catalog.version(tx, row.definition, row.version).machine
    return persist_step(tx, catalog, row, machine.cancel(snapshot_of(row), reason, now), now)


# -- tasks -------------------------------------------------------------------------------------
def claim_tasks(
    tx: Transaction,
    names: list[str] | None,
    worker: str,
    lease: timedelta,
    limit: int,
    now: datetime,
) -> Callable[[], list[TaskRow]]:
    """Take up to `limit` ready tasks named in `names` (None: any) for `worker` until
    now + lease; the function returned reads them once the transaction has ended."""
    return tx.claim_tasks(names, worker, now, lease, limit)


def renew_lease(tx: Transaction, task_id: str, worker: str, until: datetime) -> bool:
    """Extend the lease of a task `worker` holds; False when it no longer holds it."""
    return tx.renew_lease(task_id, worker, until)


def complete_and_claim(
    tx: Transaction,
    catalog: Catalog,
    task_id: str,
    worker: str,
    result: Any,
    names: list[str],
    lease: timedelta,
    attempt: int | None,
    now: datetime,
    *,
    locked: tuple[TaskRow, InstanceRow] | None = None,
) -> Completed:
    """Apply a task's result, then claim the instance's next ready task if its name is in
    `names`, so that a worker carries on without another round trip.

    A new task the result creates that `worker` has a handler for is written claimed, with
    no claim of its own; failing that, a ready task of the instance is claimed, unless it has
    finished. At most one: the instance's other ready tasks stay for other workers.
    """
    claim = Claim(frozenset(names), worker, now + lease) if names else None
    ok, applied = complete_task(tx, catalog, task_id, worker, result, now, claim, attempt, locked)
    if not ok or applied is None or not names:
        return Completed(ok, applied)
    taken = applied.claimed
    if taken or applied.instance.status in FINISHED:
        return Completed(ok, applied, lambda: taken)
    instance = applied.instance.id
    following = tx.claim_tasks(names, worker, now, lease, 1, instance_id=instance)
    return Completed(ok, applied, following)


def _machine_of(tx: Transaction, catalog: Catalog, row: InstanceRow) -> CompiledMachine:
    return catalog.version(tx, row.definition, row.version).machine


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
    catalog: Catalog,
    task_id: str,
    worker: str,
    result: Any,
    now: datetime,
    claim: Claim | None = None,
    attempt: int | None = None,
    locked: tuple[TaskRow, InstanceRow] | None = None,
) -> tuple[bool, Applied | None]:
    """Apply a task's result; (False, ...) when it was stale or came too late. With `claim`,
    a new task the result leads to may be written claimed (`Applied.claimed`); with
    `attempt`, an answer to another attempt than the task's current one is refused;
    `locked`, the task and its instance as this transaction locked them (batching.py)."""
    result, error = check_result(result)
    task, row = locked or _lock_task(tx, task_id)
    _check_attempt(task, worker, attempt)
    if not _holds(tx, task, worker, now):
        late = {"result": result} if error is None else {"error": error}
        return False, _stale(tx, row, task, worker, "done", late, now)
    if error is None and task.timed_out(now):
        error = _timeout_error(task)
        tx.tallies.append((ATTEMPT, task.name, "timed_out"))
    elif error is not None:
        tx.tallies.append((ATTEMPT, task.name, "failed"))
    if error is not None:
        return False, failed_attempt(tx, catalog, row, task, error, now)
    machine = _machine_of(tx, catalog, row)
    step = machine.task_done(snapshot_of(row), task.ref, result, now)
    try:  # the instance row is written first
        one_task = task.item is None and task.kind == "task"  # not a foreach item
        entry = (task.state_path, task.activation) if one_task else None
        applied = persist_step(
            tx, catalog, row, step, now, machine.definition, finished=entry, claim=claim
        )
    except ContextTooLarge as exc:
        error = {"type": "ResultError", "message": str(exc)}
        tx.tallies.append((ATTEMPT, task.name, "failed"))
        return False, failed_attempt(tx, catalog, row, task, error, now)
    tx.update_task(task.id, status=TaskState.DONE)
    tx.tallies.append((ATTEMPT, task.name, "completed"))
    return True, applied


def fail_task(
    tx: Transaction,
    catalog: Catalog,
    task_id: str,
    worker: str,
    error: dict[str, Any],
    attempt: int | None,
    now: datetime,
) -> tuple[bool, Applied | None]:
    """Count a failed attempt; (False, ...) when the holder had lost the task."""
    task, row = _lock_task(tx, task_id)
    _check_attempt(task, worker, attempt)
    if not _holds(tx, task, worker, now):
        return False, _stale(tx, row, task, worker, "failed", {"error": error}, now)
    timed_out = task.timed_out(now)
    if timed_out:
        error = _timeout_error(task)
    tx.tallies.append((ATTEMPT, task.name, "timed_out" if timed_out else "failed"))
    return True, failed_attempt(tx, catalog, row, task, error, now)


def failed_attempt(
    tx: Transaction,
    catalog: Catalog,
    row: InstanceRow,
    task: TaskRow,
    error: dict[str, Any],
    now: datetime,
) -> Applied:
    """Retry after the wait of the policy the error's type goes to, while that policy's
    failures are fewer than its attempts; else fire `failed`."""
    retry = Retry.from_json(task.retry)
    retried = retry.after_failure(str(error.get("type", "")), _failures(task, retry))
    if retried.again:
        ready_at = now + retry.wait(retried)
        data: dict[str, Any] = {
            "task": task.name,
            "attempt": task.attempt,
            "error": error,
            "next_attempt_at": ready_at.isoformat(),
        }
        counts: dict[str, Any] = {}
        if retry.typed:  # its own failures by policy, kept on the row
            counts["retry"] = {**task.retry, "failures": list(retried.failures)}
            data["policy"] = _policy_entry(retry, retried)
        # The worker stays named (as after a lapse) until the next claim: see `_stale`.
        tx.update_task(
            task.id,
            status=TaskState.READY,
            claimed_at=None,
            lease_until=None,
            ready_at=ready_at,
            **counts,
        )
        return record(tx, row, [Entry("retry", "failed", task.state_path, None, data)], now)
    tx.update_task(task.id, status=TaskState.DONE)
    machine = _machine_of(tx, catalog, row)
    step = machine.task_failed(snapshot_of(row), task.ref, error, task.attempt, now)
    return persist_step(tx, catalog, row, step, now)


def _failures(task: TaskRow, retry: Retry) -> tuple[int, ...]:
    """Each policy's failed attempts so far. The one policy for every type has them all:
    every attempt before the current one (a lapse gives its attempt back)."""
    if not retry.typed:
        return (task.attempt - 1,)
    kept = task.retry.get("failures") or []
    return tuple(int(kept[at]) if at < len(kept) else 0 for at in range(len(retry.policies)))


def _policy_entry(retry: Retry, retried: Retried) -> dict[str, Any]:
    """Which policy a retry went by, for its history entry: its place in the list, the
    error types it names (empty: every other type), its failures and attempts."""
    assert retried.policy is not None
    policy = retry.policies[retried.policy]
    return {
        "index": retried.policy,
        "errors": list(policy.errors),
        "failures": retried.failures[retried.policy],
        "attempts": policy.attempts,
    }


def expire_task(tx: Transaction, catalog: Catalog, task_id: str, now: datetime) -> Applied | None:
    """A claimed task past its timeout fails its attempt; past its lease it is released."""
    task, row = _lock_task(tx, task_id)
    if task.status != TaskState.CLAIMED:
        return None
    if task.timed_out(now):
        tx.tallies.append((ATTEMPT, task.name, "timed_out"))
        return failed_attempt(tx, catalog, row, task, _timeout_error(task), now)
    if task.lease_until is not None and task.lease_until <= now:
        _release(tx, task)
    return None


def _release(tx: Transaction, task: TaskRow) -> None:
    """The holder's lease lapsed (it died or hung): the attempt is not used up, and anyone
    may claim the task again. The row keeps naming the holder until the next claim: its late
    answer is then recognised (and recorded stale) while anyone else's is refused."""
    attempt = max(task.attempt - 1, 0)
    tx.update_task(
        task.id, status=TaskState.READY, claimed_at=None, lease_until=None, attempt=attempt
    )
    tx.tallies.append((LEASE_EXPIRED, task.name))


def fire_timer(tx: Transaction, catalog: Catalog, timer: TimerRow, now: datetime) -> Applied | None:
    """Fire a due timer unless another worker took it; a timer of a left state does nothing."""
    row = load_locked(tx, timer.instance_id)
    if not tx.take_timer(timer.id):
        return None
    if timer.key.startswith(children.CHILD_TIMER):  # a child of a call state has ended
        return children.deliver(tx, catalog, row, timer, now)
    if timer.key == scheduled_starts.START_TIMER and not timer.state_path:
        return scheduled_starts.fire(tx, catalog, row, now)
    ref = (timer.state_path, timer.activation)
    step = _machine_of(tx, catalog, row).timer_fired(snapshot_of(row), ref, timer.key, now)
    if not step.changed and not step.history:
        return None
    return persist_step(tx, catalog, row, step, now)


# -- engine faults -----------------------------------------------------------------------------


def fail_poisoned(
    tx: Transaction, catalog: Catalog, error: dict[str, Any], poisoned: Poisoned, now: datetime
) -> Applied:
    """Fail the instance that a task (`task_id`), a timer (`timer_id`) or an operation on
    `instance_id` could not be applied to; the timer is taken so no sweep fires it again.
    As for any other end, its running children are cancelled and its parent is told."""
    task_id, timer_id, instance_id = poisoned
    if instance_id is not None:
        row = load_locked(tx, instance_id)
    else:
        task, found = tx.lock_task(task_id or "")
        if task is None or found is None:
            raise InstanceNotFound(task.instance_id if task else f"of task {task_id}")
        row = found
    if timer_id is not None:
        tx.take_timer(timer_id)
    failed = fail_instance(tx, row, error, now)
    tx.tallies.append((POISONED, "failed"))
    if row.status not in FINISHED:
        status = failed.instance.status
        failed.entries.extend(children.end_children(tx, catalog, row.id, status, now))
        children.ended(tx, row.id, row.machine, status, now)
    return failed


def drop_item(tx: Transaction, task_id: str | None, timer_id: str | None) -> None:
    """Set aside a task or timer whose instance cannot even be failed (its row is unreadable
    or gone), so that no sweep takes it up again."""
    tx.tallies.append((POISONED, "set_aside"))
    if task_id is not None:
        tx.update_task(task_id, status=TaskState.DROPPED, worker=None, lease_until=None)
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
        raise TaskNotHeld(
            task.id,
            worker,
            f"the answer is for attempt {attempt}, and the task is at attempt {task.attempt}",
        )


def _holds(tx: Transaction, task: TaskRow, worker: str, now: datetime) -> bool:
    """Whether `worker` still holds `task`; a lapsed lease is released for another claim."""
    if task.status != TaskState.CLAIMED or task.worker != worker:
        return False
    if task.lease_until is not None and task.lease_until < now and not task.timed_out(now):
        _release(tx, task)
        return False
    return True


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
        raise TaskNotHeld(
            task.id,
            worker,
            f"the instance's history holds {MAX_HISTORY} "
            "entries, the most it may; the late answer is not recorded",
        )
    # No one live holds the task (a claimed row naming this worker has a lapsed lease, just
    # released): forgetting the name makes a second late answer a refusal, not another entry.
    tx.update_task(task.id, worker=None)
    tx.tallies.append((ATTEMPT, task.name, "stale"))
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


def claimed_task(row: TaskRow, lease_until: datetime) -> ClaimedTask:
    """What a worker is given for a task it has claimed."""
    timeout = None if row.timeout_ms is None else row.timeout_ms / 1000
    return ClaimedTask(
        row.id,
        row.name,
        row.input,
        row.attempt,
        row.max_attempts,
        row.instance_id,
        row.state_path,
        row.kind,
        lease_until,
        timeout,
        row.activation,
        row.item,
        row.claimed_at,
    )

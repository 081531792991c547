"""The calls of `Engine` for workers, in this process or elsewhere: claiming tasks, answering
them, renewing leases, expiring attempts, firing timers, and running work (a part of
`Engine`)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from statemachines import storable

from . import batching, flow_control, flow_statements, guarded, runtime
from .catalog import Catalog
from .counts import Counts
from .persist import Applied
from .records import ClaimedTask
from .retention import PurgeResult
from .schedules import next_tick
from .store import Store
from .worker import Worker

if TYPE_CHECKING:
    from .tracing import Tracing

Result = TypeVar("Result")


def seconds(value: timedelta | float) -> timedelta:
    """A duration given as a timedelta or as seconds, as a timedelta."""
    return value if isinstance(value, timedelta) else timedelta(seconds=value)


class TaskCalls:
    """Tasks and timers: what workers call (a part of `Engine`)."""

    if TYPE_CHECKING:  # the other parts of `Engine`
        store: Store
        catalog: Catalog
        clock: Callable[[], datetime]
        lease: timedelta
        worker_id: str
        handlers: dict[str, Callable[..., Any]]
        change_retention: timedelta | None
        tracing: Tracing | None
        counts: Counts
        _flow_limits: flow_control.Limits

        def wait_for_changes(self, timeout: float) -> bool: ...

        def prune_changes(
            self, older_than: timedelta | float, *, batch: int = 1000, batches: int | None = None
        ) -> int: ...

        def run_due_schedules(self, limit: int = 100) -> int: ...
        def apply_retention(self, *, batches: int | None = 1, batch: int = 500) -> PurgeResult: ...

        def _apply(self, operation: Callable[..., Result], *args: Any) -> Result: ...

        def _publish(self, applied: Applied | None) -> None: ...

    def claim_tasks(
        self,
        names: list[str] | None,
        worker: str | None = None,
        lease: timedelta | float | None = None,
        limit: int = 1,
        *,
        expire: bool = True,
    ) -> list[ClaimedTask]:
        """Take up to `limit` ready tasks named in `names` (None: any) under a lease.

        First (unless `expire` is False, for a caller that has just done it) attempts past
        their timeout are failed and lapsed leases released, so those tasks can be claimed.
        """
        if expire:
            self.expire_tasks()
        holder = worker or self.worker_id
        span = self.lease if lease is None else seconds(lease)
        now = self.clock()
        limits = self._flow_limits.current()
        if limits and (names is None or any(name in limits for name in names)):
            claimed = self._apply(flow_control.claim_tasks, limits, names, holder, span, limit, now)
            rows = claimed()
            if len(rows) < limit and (
                further := flow_statements.widened(limits, names, self.store.postgres)
            ):
                more = self._apply(
                    flow_control.claim_tasks,
                    limits,
                    further,
                    holder,
                    span,
                    limit - len(rows),
                    now,
                    True,
                )
                rows = sorted([*rows, *more()], key=lambda row: (row.ready_at, row.id))
        else:  # no flow control: the claim as it always was
            rows = self._apply(runtime.claim_tasks, names, holder, span, limit, now)()
        return [runtime.claimed_task(r, now + span) for r in rows]

    def complete_task(
        self, task_id: str, worker: str | None, result: Any, *, attempt: int | None = None
    ) -> bool:
        """Apply a task's result; False when it was stale (the lease was lost) or failed.
        With `attempt` (the `ClaimedTask.attempt` answered), TaskNotHeld, writing nothing,
        when the task has moved on to another attempt.

        A late answer (from the last holder, after its lease lapsed, its attempt timed out or
        its state was left) is recorded once as `stale`; TaskNotHeld, writing nothing, when
        `worker` neither holds the task nor is the last holder with no late answer recorded.
        """
        return self.complete_and_claim(task_id, worker, result, [], attempt=attempt)[0]

    def complete_and_claim(
        self,
        task_id: str,
        worker: str | None,
        result: Any,
        names: list[str],
        *,
        attempt: int | None = None,
    ) -> tuple[bool, list[ClaimedTask]]:
        """`complete_task`, then, in the same transaction, claim the instance's next ready
        task if its name is in `names`: a worker carries on without another round trip."""
        holder = worker or self.worker_id
        names = self._flow_limits.unlimited(names)  # a limited task is claimed under its limits
        now = self.clock()
        done = guarded.apply_guarded(
            self,
            f"the result of task {task_id}",
            runtime.Poisoned(task_id=task_id),
            runtime.complete_and_claim,
            *(self.catalog, task_id, holder, result, names, self.lease, attempt, now),
        )
        if done is None:
            return False, []
        self._publish(done.applied)
        return done.ok, [runtime.claimed_task(r, now + self.lease) for r in done.following()]

    def complete_batch(
        self, answers: list[batching.Answer]
    ) -> list[tuple[bool, list[ClaimedTask]] | Exception]:
        """`complete_and_claim` for each of `answers`, in one transaction unless some
        cannot be applied (those are applied alone, the others again without them); each
        outcome is what `complete_and_claim` returns or raises for that answer."""
        if self._flow_limits.current():  # limited tasks are claimed under their limits
            unlimited = self._flow_limits.unlimited
            answers = [dataclasses.replace(a, names=unlimited(a.names)) for a in answers]
        return batching.apply_answers(self, answers)

    def fail_task(
        self,
        task_id: str,
        worker: str | None,
        error: str | dict[str, Any],
        *,
        attempt: int | None = None,
    ) -> bool:
        """Count a failed attempt of a task; False when the worker no longer held it (a late
        answer, recorded `stale` once); TaskNotHeld as for `complete_task`."""
        if isinstance(error, str):
            error = {"type": "TaskError", "message": error}
        stored: dict[str, Any] = storable(dict(error), "error")  # refused before any write
        holder = worker or self.worker_id
        now = self.clock()
        failed = guarded.apply_guarded(
            self,
            f"the failure of task {task_id}",
            runtime.Poisoned(task_id=task_id),
            runtime.fail_task,
            *(self.catalog, task_id, holder, stored, attempt, now),
        )
        if failed is None:
            return False
        ok, applied = failed
        self._publish(applied)
        return ok

    def heartbeat(
        self, task_id: str, worker: str | None = None, lease: timedelta | float | None = None
    ) -> bool:
        """Extend the lease of a held task; False when the worker has lost it."""
        span = self.lease if lease is None else seconds(lease)
        until = self.clock() + span
        return self._apply(runtime.renew_lease, task_id, worker or self.worker_id, until)

    def expire_tasks(self, limit: int = 100) -> int:
        """Fail attempts past their timeout and release tasks whose lease lapsed."""
        now = self.clock()
        with self.store.reading() as tx:
            ids = {t.id for t in tx.timed_out_tasks(now, limit)}
            ids |= {t.id for t in tx.lapsed_tasks(now, limit)}
        for task_id in sorted(ids):
            what, poisoned = f"the expiry of task {task_id}", runtime.Poisoned(task_id=task_id)
            expire = runtime.expire_task
            self._publish(
                guarded.apply_guarded(self, what, poisoned, expire, self.catalog, task_id, now)
            )
        return len(ids)

    def fire_due_timers(self, limit: int = 100) -> int:
        """Fire the timers due by the engine's clock; return how many fired."""
        now = self.clock()
        with self.store.reading() as tx:
            due = tx.due_timers(now, limit)
        fired = 0
        for timer in due:
            poisoned = runtime.Poisoned(timer_id=timer.id, instance_id=timer.instance_id)
            fire = runtime.fire_timer
            applied = guarded.apply_guarded(
                self, f"timer {timer.key!r}", poisoned, fire, self.catalog, timer, now
            )
            if applied is not None:
                fired += 1
                self.counts.fired((now - timer.due_at).total_seconds())
                self._publish(applied)
        return fired

    def next_due(self) -> datetime | None:
        """When the earliest waiting timer, retry or schedule tick becomes due (None: nothing
        waits)."""
        with self.store.reading() as tx:
            found = (tx.next_due(), next_tick(tx))
        return min((moment for moment in found if moment is not None), default=None)

    # -- running work ----------------------------------------------------------------------
    def run_until_idle(self, max_rounds: int = 100_000) -> int:
        """Run every ready task and due timer in this process until none is left; count them."""
        return Worker(self).run_until_idle(max_rounds)

    def work(
        self,
        *,
        concurrency: int = 4,
        stop: threading.Event | None = None,
        poll_interval: float = 0.2,
        tasks: list[str] | None = None,
        batch: int = batching.DEFAULT_BATCH,
        linger: timedelta | float = batching.DEFAULT_LINGER,
    ) -> None:
        """Claim and run tasks and timers until `stop` is set (or KeyboardInterrupt).

        At most `concurrency` handlers run at once, each in a thread of its own: one hung past
        its timeout has lost its attempt but keeps its slot until it returns. An `async def`
        handler runs on a new event loop in its thread (`AsyncEngine.work` runs it on yours).

        Group commit: the handlers' results are applied up to `batch` per transaction, a
        result waiting at most `linger` (seconds) for others while handlers still run, and
        not at all when none does. Each is applied as alone: once, only while its lease is
        held, in order per instance, and one that cannot be applied fails alone.
        `linger=0` (or `batch=1`) commits each result in a transaction of its own.
        """
        wait = seconds(linger).total_seconds()
        worker = Worker(self, concurrency=concurrency, tasks=tasks, batch=batch, linger=wait)
        worker.work(stop, poll_interval)

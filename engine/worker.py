"""Workers: claim ready tasks and due timers, run the handlers, answer, renew leases.

`run_until_idle` runs everything due in the calling thread (tests, scripts); `work` is the
long-running loop, one daemon thread per task in hand, any number of them per database.
A handler's exception is logged (logger `turnout.worker`) and fails its attempt, with the
head of its traceback in the instance's history.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from statemachines.errors import DatabaseUnavailable, TaskNotHeld

from .batching import DEFAULT_BATCH, DEFAULT_LINGER, Answer, Answered, Committer
from .counts import Counts
from .handlers import plan_of
from .records import ClaimedTask, error_details
from .retention import PurgeResult
from .store import Store

if TYPE_CHECKING:
    from .tracing import Attempt, Tracing

log = logging.getLogger("turnout.worker")
SWEEP_SECONDS = 0.25
# How often a worker applies the change feed's and the definitions' retention, one bounded
# batch at a time.
PRUNE_SECONDS = 60.0


class TaskSource(Protocol):
    """What a worker needs of an engine (`Engine` is one): the handlers it runs, who it is,
    how long it holds a task, and the calls that claim, answer and sweep. Typed here, so
    the workers never import the engine that runs them."""

    @property
    def handlers(self) -> Mapping[str, Callable[..., Any]]: ...

    @property
    def worker_id(self) -> str: ...

    @property
    def store(self) -> Store: ...

    @property
    def lease(self) -> timedelta: ...

    @property
    def tracing(self) -> Tracing | None: ...

    @property
    def counts(self) -> Counts: ...

    def claim_tasks(
        self, names: list[str] | None, *, limit: int = 1, expire: bool = True
    ) -> list[ClaimedTask]: ...

    def complete_and_claim(
        self,
        task_id: str,
        worker: str | None,
        result: Any,
        names: list[str],
        *,
        attempt: int | None = None,
    ) -> tuple[bool, list[ClaimedTask]]: ...

    def complete_batch(self, answers: list[Answer]) -> list[Answered | Exception]: ...

    def fail_task(
        self,
        task_id: str,
        worker: str | None,
        error: str | dict[str, Any],
        *,
        attempt: int | None = None,
    ) -> bool: ...

    def heartbeat(self, task_id: str) -> bool: ...

    def expire_tasks(self) -> int: ...

    def fire_due_timers(self) -> int: ...

    def run_due_schedules(self) -> int: ...

    def wait_for_changes(self, timeout: float) -> bool: ...

    @property
    def change_retention(self) -> timedelta | None: ...

    def prune_changes(
        self, older_than: timedelta | float, *, batch: int = 1000, batches: int | None = None
    ) -> int: ...

    def apply_retention(self, *, batches: int | None = 1, batch: int = 500) -> PurgeResult: ...


def call_handler(handler: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a task handler, def or async def, and return its result.

    An async def runs to completion on an event loop of its own (`asyncio.run` in the calling
    thread): `AsyncEngine` is the way to run handlers on an application's loop.
    """
    result = handler(*args, **kwargs)
    if inspect.isawaitable(result):
        return asyncio.run(_awaited(result))
    return result


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class Runner:
    """What every worker knows: its engine, how many handlers it may run at once, which
    tasks it takes (those `engine` has handlers for, or only those named in `tasks`), and
    what it has done so far."""

    def __init__(
        self, engine: TaskSource, *, concurrency: int = 4, tasks: list[str] | None = None
    ) -> None:
        self.engine = engine
        self.concurrency = max(1, concurrency)
        self.only = tasks
        self.ran = 0
        self.failed = 0
        self.timers = 0
        self.pruned_at = time.monotonic()

    def prune(self) -> None:
        """Every PRUNE_SECONDS, one batch of the changes past the engine's retention, and
        one batch per definition of the finished instances past the definition's."""
        if time.monotonic() - self.pruned_at < PRUNE_SECONDS:
            return
        self.pruned_at = time.monotonic()
        if self.engine.change_retention is not None:
            self.engine.prune_changes(self.engine.change_retention, batches=1)
        purged = self.engine.apply_retention(batches=1)
        if purged.instances:
            log.info("retention: %d finished instances purged", purged.instances)

    def names(self) -> list[str]:
        names = sorted(self.engine.handlers)
        return [n for n in names if n in self.only] if self.only is not None else names


class Worker(Runner):
    """Runs tasks in threads: the caller's (`run_until_idle`) or one per task in hand.

    In the worker loop, the answers of the tasks in hand are applied together, up to `batch`
    per transaction, each waiting up to `linger` seconds for others (see batching.py);
    `linger=0` or `batch=1` applies each answer in a transaction of its own.
    """

    def __init__(
        self,
        engine: TaskSource,
        *,
        concurrency: int = 4,
        tasks: list[str] | None = None,
        batch: int = DEFAULT_BATCH,
        linger: float = DEFAULT_LINGER,
    ) -> None:
        super().__init__(engine, concurrency=concurrency, tasks=tasks)
        if batch < 1 or linger < 0:
            raise ValueError(f"batch must be 1 or more and linger 0 or more, not {batch}, {linger}")
        self.batch = batch
        self.linger = linger
        self.committer: Committer | None = None  # while `work` runs with batching

    def run(self, task: ClaimedTask, slot: Slot | None = None) -> bool:
        """Run one claimed task's handler and answer; then go on with the instance's next
        task if answering claimed one for this worker. True when the results were applied.

        `slot`, in the worker loop, follows the task in hand (for leases and timeouts).
        """
        applied = True
        names = self.names()
        current: ClaimedTask | None = task
        while current is not None:
            if slot is not None:
                slot.hold(current)
            tracing = self.engine.tracing
            if tracing is None:
                answered = self.attempt(current, names, None)
            else:  # the attempt's span is current while its handler runs and it is answered
                with tracing.attempt(current, self.engine.worker_id) as traced:
                    answered = self.attempt(current, names, traced)
            if answered is None:
                return False
            ok, following = answered
            applied = applied and ok
            current = following[0] if following else None
        return applied

    def attempt(
        self, task: ClaimedTask, names: list[str], traced: Attempt | None
    ) -> tuple[bool, list[ClaimedTask]] | None:
        """Run `task`'s handler once and answer: whether the result was applied and the
        task claimed after it; None when the attempt failed or was no longer held."""
        handler = self.engine.handlers[task.name]
        plan = plan_of(handler)
        # The instance's key, definition and version: read only for a context.
        row = self.engine.store.get_instance(task.instance_id) if plan.wants_context else None
        committer = self.committer
        try:
            # While it runs, a batch of answers may wait for this one (see batching.py).
            with committer.handling() if committer is not None else contextlib.nullcontext():
                traceparent = None if traced is None else traced.traceparent
                args, kwargs = plan.arguments(task, row, traceparent)
                began = time.perf_counter()
                try:
                    result = call_handler(handler, *args, **kwargs)
                finally:  # the handler's own time, its answer's aside
                    self.engine.counts.ran(task.name, time.perf_counter() - began)
        except Exception as exc:
            self.failed += 1
            error = handler_failed(task, exc)
            if traced is not None:
                traced.failed(exc, error["type"])
            # A lease that lapsed and was claimed again: the answer is no longer this worker's.
            with contextlib.suppress(TaskNotHeld):
                self.engine.fail_task(task.id, self.engine.worker_id, error, attempt=task.attempt)
            return None
        finally:
            self.ran += 1
        answer = (
            self.engine.complete_and_claim if committer is None else committer.complete_and_claim
        )
        try:
            ok, following = answer(
                task.id, self.engine.worker_id, result, names, attempt=task.attempt
            )
        except TaskNotHeld:  # as above
            if traced is not None:
                traced.ended("not held")
            return None
        if traced is not None:
            traced.ended("done" if ok else "stale")
        return ok, following

    def run_until_idle(self, max_rounds: int = 100_000) -> int:
        """Run ready tasks and due timers in this thread until none is left; count them."""
        count = 0
        names = self.names()
        for _ in range(max_rounds):
            expired = self.engine.expire_tasks()
            fired = self.engine.fire_due_timers()
            self.timers += fired
            started = self.engine.run_due_schedules()
            claimed = self.engine.claim_tasks(names, limit=50, expire=False) if names else []
            ran = self.ran
            for task in claimed:
                try:
                    self.run(task)
                except DatabaseUnavailable:
                    raise
                except Exception:  # one task that cannot be answered does not stop the rest
                    log.exception("task %s (%s) could not be answered", task.id, task.name)
            count += fired + (self.ran - ran)
            if not (expired or fired or started or claimed):
                break
        return count

    def work(self, stop: threading.Event | None = None, poll_interval: float = 0.2) -> None:
        """Claim and run work until `stop` is set or the process is interrupted.

        Tasks in hand when stopping are finished and answered before returning. A database
        that goes away is waited for: the loop reconnects by itself.
        """
        stop = stop or threading.Event()
        names = self.names()
        slots: list[Slot] = []
        beat = threading.Thread(target=self._heartbeats, args=(stop, slots), daemon=True)
        beat.start()
        if self.batch > 1 and self.linger > 0:
            # On PostgreSQL two batches in flight: one is gathered and sent while the other's
            # round trips are under way. SQLite has one writer at a time: one batch.
            flushers = 2 if self.engine.store.postgres else 1
            self.committer = Committer(
                self.engine.complete_batch, self.batch, self.linger, flushers
            )
            self.committer.start()
        pause = poll_interval
        swept = 0.0
        try:
            while not stop.is_set():
                try:
                    # Timers and lapsed leases are looked for a few times a second, not on
                    # every round: tasks are what a busy worker spends its rounds on.
                    sweep = time.monotonic() - swept >= SWEEP_SECONDS
                    busy = self._round(names, slots, sweep)
                    swept = time.monotonic() if sweep else swept
                    pause = poll_interval
                except DatabaseUnavailable as exc:
                    log.warning("%s; retrying", exc)
                    busy, pause = False, min(max(pause * 2, 0.5), 10.0)
                except Exception:  # a sweep that lost every retry (say): the next round goes on
                    log.exception("a worker round failed; retrying")
                    busy, pause = False, min(max(pause * 2, 0.5), 10.0)
                if not busy and not stop.is_set():
                    # A committed change (on PostgreSQL, any process's) may have made a
                    # task ready: wake for it rather than sleep the pause out.
                    self.engine.wait_for_changes(min(pause, SWEEP_SECONDS))
        except KeyboardInterrupt:
            stop.set()
        finally:
            stop.set()
            # Tasks in hand are waited for; a handler already past its timeout is not.
            for slot in list(slots):
                left = None if slot.deadline is None else max(slot.deadline - time.monotonic(), 0)
                slot.thread.join(left)
            if self.committer is not None:  # what the handlers answered is applied
                self.committer.stop()
                self.committer = None

    def _round(self, names: list[str], slots: list[Slot], sweep: bool) -> bool:
        for slot in list(slots):
            # A handler hung past its timeout has lost its attempt (`expire_tasks` failed it)
            # but still runs, and so still takes its slot: a worker never runs more handlers
            # than its concurrency.
            if not slot.thread.is_alive():
                slots.remove(slot)
        busy = False
        free = self.concurrency - len(slots)
        # Claims first: a worker woken by a commit starts its task before it sweeps.
        if free > 0 and names:
            for task in self.engine.claim_tasks(names, limit=free, expire=False):
                slot = Slot(task)
                slot.thread = threading.Thread(
                    target=self._run_logged,
                    args=(task, slot),
                    daemon=True,
                    name=f"turnout-task-{task.id[:8]}",
                )
                slots.append(slot)
                slot.thread.start()
                busy = True
        if sweep:
            fired = self.engine.fire_due_timers()
            self.timers += fired
            started = self.engine.run_due_schedules()
            busy = bool(self.engine.expire_tasks()) | bool(fired) | bool(started) | busy
            self.prune()
        return busy

    def _run_logged(self, task: ClaimedTask, slot: Slot) -> None:
        try:
            self.run(task, slot)
        except Exception:  # the database went away mid-answer; the lease will lapse
            log.exception("task %s (%s) could not be answered", slot.task_id, task.name)

    def _heartbeats(self, stop: threading.Event, slots: list[Slot]) -> None:
        interval = max(self.engine.lease.total_seconds() / 3, 0.05)
        while not stop.wait(interval):
            for slot in list(slots):
                try:
                    self.engine.heartbeat(slot.task_id)
                except Exception:
                    log.warning("could not renew the lease of task %s", slot.task_id)


def handler_failed(task: ClaimedTask, exc: Exception) -> dict[str, Any]:
    """Log a handler's exception with its traceback; the error its failed attempt records."""
    error = error_details(exc)
    log.warning(
        "task %s (%s), attempt %d of %d, of instance %s raised %s",
        task.id,
        task.name,
        task.attempt,
        task.max_attempts,
        task.instance_id,
        error["type"],
        exc_info=exc,
    )
    return error


class Slot:
    """One task at a time in the worker loop: the thread running it and what it holds now."""

    def __init__(self, task: ClaimedTask) -> None:
        self.thread = threading.Thread()
        self.task_id = task.id
        self.deadline: float | None = None
        self.hold(task)

    def hold(self, task: ClaimedTask) -> None:
        """The thread has moved on to `task`: renew its lease, mind its timeout."""
        self.task_id = task.id
        self.deadline = None if task.timeout is None else time.monotonic() + task.timeout

"""The asyncio worker behind `AsyncEngine.work` and `AsyncEngine.run_until_idle`.

`async def` handlers are awaited on the running loop (the application's: its queues, locks
and clients work in them); `def` handlers run in a thread pool of `concurrency` threads.
Claims, answers and lease renewals go through the synchronous `Engine` in worker threads,
so the loop is never blocked by the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from statemachines.errors import DatabaseUnavailable, TaskNotHeld

from .handlers import plan_of
from .records import ClaimedTask
from .worker import SWEEP_SECONDS, Runner, TaskSource, handler_failed

if TYPE_CHECKING:
    from .tracing import Attempt

log = logging.getLogger("turnout.worker")
R = TypeVar("R")


class AsyncWorker(Runner):
    """Runs tasks on the running event loop, at most `concurrency` handlers at a time."""

    def __init__(
        self, engine: TaskSource, *, concurrency: int = 4, tasks: list[str] | None = None
    ) -> None:
        super().__init__(engine, concurrency=concurrency, tasks=tasks)
        self.held: dict[asyncio.Task[bool], str] = {}  # task in hand -> the task id it holds
        self._pool: ThreadPoolExecutor | None = None

    async def _engine(self, call: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        return await asyncio.to_thread(functools.partial(call, *args, **kwargs))

    async def call_handler(self, handler: Any, *args: Any, **kwargs: Any) -> Any:
        """Await an async def handler here, on the running loop; run a def in the pool."""
        if inspect.iscoroutinefunction(handler):
            return await handler(*args, **kwargs)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="turnout-task")
        # Run in this task's context (as `asyncio.to_thread` would): a traced attempt's span
        # is the current one in the handler too.
        call = functools.partial(contextvars.copy_context().run, handler, *args, **kwargs)
        result = await asyncio.get_running_loop().run_in_executor(self._pool, call)
        if inspect.isawaitable(result):  # a def that hands back a coroutine
            result = await result
        return result

    async def run(self, task: ClaimedTask) -> bool:
        """Run one claimed task's handler and answer; then go on with the instance's next
        task if answering claimed one for this worker. True when the results were applied."""
        applied = True
        names = self.names()
        current: ClaimedTask | None = task
        me = asyncio.current_task()
        while current is not None:
            if me in self.held:  # in the loop of `work`: the lease renewed is this task's
                self.held[me] = current.id
            tracing = self.engine.tracing
            if tracing is None:
                answered = await self.attempt(current, names, None)
            else:  # the attempt's span is current while its handler runs and it is answered
                with tracing.attempt(current, self.engine.worker_id) as traced:
                    answered = await self.attempt(current, names, traced)
            if answered is None:
                return False
            ok, following = answered
            applied = applied and ok
            current = following[0] if following else None
        return applied

    async def attempt(
        self, task: ClaimedTask, names: list[str], traced: Attempt | None
    ) -> tuple[bool, list[ClaimedTask]] | None:
        """Run `task`'s handler once and answer: whether the result was applied and the
        task claimed after it; None when the attempt failed or was no longer held."""
        handler = self.engine.handlers[task.name]
        plan = plan_of(handler)
        row = None
        if plan.wants_context:  # the instance's key, definition and version
            row = await self._engine(self.engine.store.get_instance, task.instance_id)
        try:
            args, kwargs = plan.arguments(task, row, None if traced is None else traced.traceparent)
            began = time.perf_counter()
            try:
                result = await self.call_handler(handler, *args, **kwargs)
            finally:  # the handler's own time, its answer's aside
                self.engine.counts.ran(task.name, time.perf_counter() - began)
        except Exception as exc:
            self.failed += 1
            error = handler_failed(task, exc)
            if traced is not None:
                traced.failed(exc, error["type"])
            # A lease that lapsed and was claimed again: the answer is no longer this worker's.
            with contextlib.suppress(TaskNotHeld):
                await self._engine(
                    self.engine.fail_task,
                    task.id,
                    self.engine.worker_id,
                    error,
                    attempt=task.attempt,
                )
            return None
        finally:
            self.ran += 1
        try:
            ok, following = await self._engine(
                self.engine.complete_and_claim,
                task.id,
                self.engine.worker_id,
                result,
                names,
                attempt=task.attempt,
            )
        except TaskNotHeld:  # as above
            if traced is not None:
                traced.ended("not held")
            return None
        if traced is not None:
            traced.ended("done" if ok else "stale")
        return ok, following

    async def run_until_idle(self, max_rounds: int = 100_000) -> int:
        """Run ready tasks (one at a time) and due timers until none is left; count them."""
        count = 0
        names = self.names()
        try:
            for _ in range(max_rounds):
                expired = await self._engine(self.engine.expire_tasks)
                fired = await self._engine(self.engine.fire_due_timers)
                self.timers += fired
                started = await self._engine(self.engine.run_due_schedules)
                claimed = (
                    await self._engine(self.engine.claim_tasks, names, limit=50, expire=False)
                    if names
                    else []
                )
                ran = self.ran
                for task in claimed:
                    try:
                        await self.run(task)
                    except DatabaseUnavailable:
                        raise
                    except Exception:  # one task that cannot be answered does not stop the rest
                        log.exception("task %s (%s) could not be answered", task.id, task.name)
                count += fired + (self.ran - ran)
                if not (expired or fired or started or claimed):
                    break
        finally:
            self._close_pool()
        return count

    async def work(self, poll_interval: float = 0.2) -> None:
        """Claim and run work until cancelled. On cancellation no more is claimed, and the
        tasks in hand are finished and answered before the cancellation goes on."""
        names = self.names()
        running: set[asyncio.Task[bool]] = set()
        beat = asyncio.create_task(self._heartbeats())
        pause = poll_interval
        swept = 0.0
        waker: asyncio.Future[bool] | None = None  # a wait for the change feed, in a thread
        try:
            while True:
                busy = False
                try:
                    # Claims first: a worker woken by a commit starts its task before it sweeps.
                    free = self.concurrency - len(running)
                    if free > 0 and names:
                        busy = await self._claim(names, free, running)
                    if time.monotonic() - swept >= SWEEP_SECONDS:
                        fired = await self._engine(self.engine.fire_due_timers)
                        self.timers += fired
                        expired = await self._engine(self.engine.expire_tasks)
                        started = await self._engine(self.engine.run_due_schedules)
                        busy = bool(expired) | bool(fired) | bool(started) | busy
                        await self._engine(self.prune)
                        swept = time.monotonic()
                    pause = poll_interval
                except DatabaseUnavailable as exc:
                    log.warning("%s; retrying", exc)
                    pause = min(max(pause * 2, 0.5), 10.0)
                except Exception:  # a sweep that lost every retry (say): the next round goes on
                    log.exception("a worker round failed; retrying")
                    pause = min(max(pause * 2, 0.5), 10.0)
                if not busy or len(running) >= self.concurrency:
                    # Wake when a handler finishes (a slot is free), when a change commits
                    # with a slot free (on PostgreSQL, any process's: a task may be ready),
                    # or when the next sweep is due.
                    wait = min(pause, SWEEP_SECONDS) if not busy else SWEEP_SECONDS
                    waiting: set[asyncio.Future[Any]] = set(running)
                    if len(running) < self.concurrency:
                        if waker is None or waker.done():
                            waker = asyncio.ensure_future(
                                self._engine(self.engine.wait_for_changes, wait)
                            )
                            waker.add_done_callback(_retrieved)
                        waiting.add(waker)
                    await asyncio.wait(waiting, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if waker is not None:  # its thread ends by itself within a sweep's time
                waker.cancel()
            try:
                if running:  # asyncio.wait, unlike gather, never cancels what it waits for
                    await asyncio.wait(running)
            finally:
                beat.cancel()
                self._close_pool()

    async def _claim(self, names: list[str], free: int, running: set[asyncio.Task[bool]]) -> bool:
        """Claim up to `free` tasks and start them. A claim under way when cancelled still
        completes in its thread: what it took is started, then the cancellation goes on."""
        claim = asyncio.ensure_future(
            self._engine(self.engine.claim_tasks, names, limit=free, expire=False)
        )
        try:
            claimed = await asyncio.shield(claim)
        except asyncio.CancelledError:
            for task in await claim:
                self._start(task, running)
            raise
        for task in claimed:
            self._start(task, running)
        return bool(claimed)

    def _start(self, task: ClaimedTask, running: set[asyncio.Task[bool]]) -> None:
        job = asyncio.create_task(self._run_logged(task), name=f"turnout-task-{task.id[:8]}")
        self.held[job] = task.id
        running.add(job)

        def done(finished: asyncio.Task[bool]) -> None:
            running.discard(finished)
            self.held.pop(finished, None)

        job.add_done_callback(done)

    async def _run_logged(self, task: ClaimedTask) -> bool:
        try:
            return await self.run(task)
        except Exception:  # the database went away mid-answer; the lease will lapse
            log.exception("task %s (%s) could not be answered", task.id, task.name)
            return False

    async def _heartbeats(self) -> None:
        interval = max(self.engine.lease.total_seconds() / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            for task_id in list(self.held.values()):
                try:
                    await self._engine(self.engine.heartbeat, task_id)
                except Exception:
                    log.warning("could not renew the lease of task %s", task_id)

    def _close_pool(self) -> None:
        # A def handler hung in the pool is not waited for; its thread ends when it returns.
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


def _retrieved(waited: asyncio.Future[Any]) -> None:
    """A wait for the feed that failed is only a wake-up missed: its error is not raised."""
    if not waited.cancelled() and waited.exception() is not None:
        log.warning("waiting for changes failed: %s", waited.exception())

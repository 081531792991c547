"""Workers: claim ready tasks and due timers, run the handlers, answer, renew leases.

`run_until_idle` runs everything due in the calling thread (tests, scripts); `work` is the
long-running loop, one daemon thread per task in hand, any number of them per database.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from .records import ClaimedTask
from .store import DatabaseUnavailable

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger("turnout.worker")
MAX_ERROR_CHARS = 2000


def call_handler(handler: Any, value: Any) -> Any:
    """Call a task handler, def or async def, and return its result."""
    result = handler(value)
    if inspect.isawaitable(result):
        return asyncio.run(_awaited(result))
    return result


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class Worker:
    """Runs the tasks whose handlers `engine` has (or only those named in `tasks`)."""

    def __init__(
        self, engine: Engine, *, concurrency: int = 4, tasks: list[str] | None = None
    ) -> None:
        self.engine = engine
        self.concurrency = max(1, concurrency)
        self.only = tasks
        self.ran = 0
        self.failed = 0
        self.timers = 0

    def names(self) -> list[str]:
        names = sorted(self.engine.handlers)
        return [n for n in names if n in self.only] if self.only is not None else names

    def run(self, task: ClaimedTask) -> bool:
        """Run one claimed task's handler and answer; True when the result was applied."""
        handler = self.engine.handlers[task.name]
        try:
            result = call_handler(handler, task.input)
        except Exception as exc:
            self.failed += 1
            error = {"type": type(exc).__name__, "message": str(exc)[:MAX_ERROR_CHARS]}
            self.engine.fail_task(task.id, self.engine.worker_id, error)
            return False
        finally:
            self.ran += 1
        return self.engine.complete_task(task.id, self.engine.worker_id, result)

    def run_until_idle(self, max_rounds: int = 100_000) -> int:
        """Run ready tasks and due timers in this thread until none is left; count them."""
        count = 0
        names = self.names()
        for _ in range(max_rounds):
            expired = self.engine.expire_tasks()
            fired = self.engine.fire_due_timers()
            self.timers += fired
            claimed = self.engine.claim_tasks(names, limit=50, expire=False) if names else []
            for task in claimed:
                self.run(task)
            count += fired + len(claimed)
            if not (expired or fired or claimed):
                break
        return count

    def work(self, stop: threading.Event | None = None, poll_interval: float = 0.2) -> None:
        """Claim and run work until `stop` is set or the process is interrupted.

        Tasks in hand when stopping are finished and answered before returning. A database
        that goes away is waited for: the loop reconnects by itself.
        """
        stop = stop or threading.Event()
        names = self.names()
        in_hand: dict[str, tuple[threading.Thread, float | None]] = {}
        beat = threading.Thread(target=self._heartbeats, args=(stop, in_hand), daemon=True)
        beat.start()
        pause = poll_interval
        try:
            while not stop.is_set():
                try:
                    busy = self._round(names, in_hand)
                    pause = poll_interval
                except DatabaseUnavailable as exc:
                    log.warning("%s; retrying", exc)
                    busy, pause = False, min(max(pause * 2, 0.5), 10.0)
                if not busy:
                    stop.wait(pause)
        except KeyboardInterrupt:
            stop.set()
        finally:
            stop.set()
            for thread, deadline in list(in_hand.values()):
                left = None if deadline is None else max(deadline - time.monotonic(), 0)
                thread.join(left)

    def _round(
        self, names: list[str], in_hand: dict[str, tuple[threading.Thread, float | None]]
    ) -> bool:
        now = time.monotonic()
        for task_id, (thread, deadline) in list(in_hand.items()):
            # A hung handler past its timeout no longer takes a slot; its attempt has failed.
            if not thread.is_alive() or (deadline is not None and now > deadline):
                del in_hand[task_id]
        fired = self.engine.fire_due_timers()
        self.timers += fired
        busy = bool(self.engine.expire_tasks()) | bool(fired)
        free = self.concurrency - len(in_hand)
        if free > 0 and names:
            for task in self.engine.claim_tasks(names, limit=free, expire=False):
                thread = threading.Thread(
                    target=self._run_logged,
                    args=(task,),
                    daemon=True,
                    name=f"turnout-task-{task.id[:8]}",
                )
                deadline = None if task.timeout is None else now + task.timeout
                in_hand[task.id] = (thread, deadline)
                thread.start()
                busy = True
        return busy

    def _run_logged(self, task: ClaimedTask) -> None:
        try:
            self.run(task)
        except Exception:  # the database went away mid-answer; the lease will lapse
            log.exception("task %s (%s) could not be answered", task.id, task.name)

    def _heartbeats(
        self, stop: threading.Event, in_hand: dict[str, tuple[threading.Thread, float | None]]
    ) -> None:
        interval = max(self.engine.lease.total_seconds() / 3, 0.05)
        while not stop.wait(interval):
            for task_id in list(in_hand):
                try:
                    self.engine.heartbeat(task_id)
                except Exception:
                    log.warning("could not renew the lease of task %s", task_id)

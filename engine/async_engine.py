"""The asyncio interface: `AsyncEngine`, the same calls as `Engine`, awaited.

Each call runs the synchronous engine in a worker thread, so an event loop is never blocked
by the database; the semantics and the transactions are exactly the `Engine`'s. The worker
(`work`, `run_until_idle`) is `async_worker.py`: handlers run on the application's loop.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from statemachines import Definition

from .async_worker import AsyncWorker
from .engine import Clock, Engine, Handler, Subscriber
from .records import ClaimedTask, Deployment, HistoryEntry, Instance
from .store import BUSY_TIMEOUT_SECONDS

P = ParamSpec("P")
R = TypeVar("R")


class AsyncEngine:
    """`Engine` for asyncio applications: every method is a coroutine of the same name.

    Handlers may be `async def` (awaited on the caller's loop) or `def` (run in a bounded
    thread pool); `work()` runs the worker loop until cancelled.
    """

    def __init__(
        self,
        url: str | None = None,
        clock: Clock | None = None,
        *,
        lease: timedelta | float = 30.0,
        worker_id: str | None = None,
        locking: str = "row",
        busy_timeout: float = BUSY_TIMEOUT_SECONDS,
    ) -> None:
        self.sync = Engine(url, clock, lease=lease, worker_id=worker_id, locking=locking,
                           busy_timeout=busy_timeout)  # fmt: skip

    async def _run(self, call: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        return await asyncio.to_thread(functools.partial(call, *args, **kwargs))

    async def __aenter__(self) -> AsyncEngine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def task(self, name: str) -> Callable[[Handler], Handler]:
        """Decorator registering the handler of task `name` (a def or an async def)."""
        return self.sync.task(name)

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(entry)` after commit for each history entry (in a worker thread)."""
        return self.sync.subscribe(callback)

    async def deploy(self, source: str | Path | Definition) -> Deployment:
        return await self._run(self.sync.deploy, source)

    async def definition(self, name: str, version: int | None = None) -> Definition:
        return await self._run(self.sync.definition, name, version)

    async def definitions(self) -> list[Deployment]:
        return await self._run(self.sync.definitions)

    async def start(
        self,
        definition: str,
        data: dict[str, Any] | None = None,
        *,
        key: str | None = None,
        version: int | None = None,
    ) -> Instance:
        return await self._run(self.sync.start, definition, data, key=key, version=version)

    async def send(
        self, instance_id: str, event: str, data: Any = None, *, idempotency_key: str | None = None
    ) -> Instance:
        return await self._run(
            self.sync.send, instance_id, event, data, idempotency_key=idempotency_key
        )

    async def send_by_key(
        self,
        definition: str,
        key: str,
        event: str,
        data: Any = None,
        *,
        idempotency_key: str | None = None,
    ) -> Instance:
        return await self._run(
            self.sync.send_by_key, definition, key, event, data, idempotency_key=idempotency_key
        )

    async def get(self, instance_id: str) -> Instance:
        return await self._run(self.sync.get, instance_id)

    async def get_by_key(self, definition: str, key: str) -> Instance:
        return await self._run(self.sync.get_by_key, definition, key)

    async def history(self, instance_id: str) -> list[HistoryEntry]:
        return await self._run(self.sync.history, instance_id)

    async def instances(
        self,
        definition: str | None = None,
        state: str | None = None,
        status: str | None = None,
        key: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Instance]:
        return await self._run(self.sync.instances, definition, state, status, key, limit, offset)

    async def allowed(self, instance: str | Instance) -> list[str]:
        return await self._run(self.sync.allowed, instance)

    async def cancel(self, instance_id: str, reason: str | None = None) -> Instance:
        return await self._run(self.sync.cancel, instance_id, reason)

    async def claim_tasks(
        self,
        names: list[str] | None,
        worker: str | None = None,
        lease: timedelta | float | None = None,
        limit: int = 1,
    ) -> list[ClaimedTask]:
        return await self._run(self.sync.claim_tasks, names, worker, lease, limit)

    async def complete_task(self, task_id: str, worker: str | None, result: Any) -> bool:
        return await self._run(self.sync.complete_task, task_id, worker, result)

    async def fail_task(
        self, task_id: str, worker: str | None, error: str | dict[str, Any]
    ) -> bool:
        return await self._run(self.sync.fail_task, task_id, worker, error)

    async def heartbeat(
        self, task_id: str, worker: str | None = None, lease: timedelta | float | None = None
    ) -> bool:
        return await self._run(self.sync.heartbeat, task_id, worker, lease)

    async def run_until_idle(self, max_rounds: int = 100_000) -> int:
        """Run every ready task and due timer until none is left; count them. `async def`
        handlers are awaited on this loop."""
        return await AsyncWorker(self.sync).run_until_idle(max_rounds)

    async def work(
        self, *, concurrency: int = 4, poll_interval: float = 0.2, tasks: list[str] | None = None
    ) -> None:
        """Run the worker loop until this coroutine is cancelled: `async def` handlers on
        this loop, `def` handlers in a pool of `concurrency` threads, never more than
        `concurrency` at once. Cancelled, it claims no more and finishes the tasks in hand."""
        worker = AsyncWorker(self.sync, concurrency=concurrency, tasks=tasks)
        await worker.work(poll_interval)

    async def diagram(
        self, instance_id: str, format: str = "svg", *, fallback: bool = False
    ) -> bytes:
        return await self._run(self.sync.diagram, instance_id, format, fallback=fallback)

    async def aclose(self) -> None:
        await self._run(self.sync.close)

"""The asyncio interface: `AsyncEngine`, the same calls as `Engine`, awaited.

Each call is made from `Engine`'s own method by `awaited`: it runs the synchronous call in a
worker thread, so an event loop is never blocked by the database, and the semantics, the
signature and the transactions are exactly the `Engine`'s. Only the worker (`work`,
`run_until_idle`, in `async_worker.py`: handlers run on the application's loop), the
registrations (`task`, `subscribe`, the hooks) and the hook runner's loop are written here.
A test checks that the two classes have the same public names and parameters, so a new
`Engine` call needs its line here.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from .app_transaction import awaited_within
from .async_worker import AsyncWorker
from .engine import Clock, Engine, Handler, Subscriber
from .hooks import Hook
from .one_trip import ONE_TRIP
from .store import BUSY_TIMEOUT_SECONDS

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider
    from prometheus_client.registry import CollectorRegistry

P = ParamSpec("P")
R = TypeVar("R")


def awaited(
    method: Callable[Concatenate[Engine, P], R],
) -> Callable[Concatenate[AsyncEngine, P], Coroutine[Any, Any, R]]:
    """`Engine.method` as a coroutine method of `AsyncEngine`, with its signature and
    docstring: awaited, it runs the method on the engine in a worker thread (given the
    application's AsyncSession or AsyncConnection as `within`, on its connection instead,
    in its transaction: see app_transaction.py)."""

    @functools.wraps(method)
    async def call(self: AsyncEngine, /, *args: P.args, **kwargs: P.kwargs) -> R:
        if hasattr(kwargs.get("within"), "run_sync"):  # an AsyncSession or AsyncConnection
            return await awaited_within(method, self.sync, args, kwargs)
        return await asyncio.to_thread(method, self.sync, *args, **kwargs)

    return call


class AsyncEngine:
    """`Engine` for asyncio applications: every method is a coroutine of the same name.

    Handlers may be `async def` (awaited on the caller's loop) or `def` (run in a bounded
    thread pool); `work()` runs the worker loop until cancelled. The constructor takes the
    same arguments as `Engine`'s; `sync` is the `Engine` underneath.
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
        change_retention: timedelta | float | None = timedelta(days=7),
        listen: bool = True,
        upgrade: bool = False,
        retention: timedelta | float | None = None,
        tracer_provider: TracerProvider | None = None,
        send_path: str = ONE_TRIP,
    ) -> None:
        self.sync = Engine(
            url,
            clock,
            lease=lease,
            worker_id=worker_id,
            locking=locking,
            busy_timeout=busy_timeout,
            change_retention=change_retention,
            listen=listen,
            upgrade=upgrade,
            retention=retention,
            tracer_provider=tracer_provider,
            send_path=send_path,
        )

    async def __aenter__(self) -> AsyncEngine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- definitions
    deploy = awaited(Engine.deploy)
    definition = awaited(Engine.definition)
    definitions = awaited(Engine.definitions)
    versions = awaited(Engine.versions)
    version_counts = awaited(Engine.version_counts)
    version_diff = awaited(Engine.version_diff)

    # -- handlers and subscribers: registrations, nothing to wait for
    def task(self, name: str) -> Callable[[Handler], Handler]:
        """Decorator registering the handler of task `name` (a def or an async def)."""
        return self.sync.task(name)

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(entry)` after commit for each history entry (in a worker thread)."""
        return self.sync.subscribe(callback)

    def on_enter(
        self, definition: str, state: str | None = None, *, durable: bool = False
    ) -> Callable[[Hook], Hook]:
        """Decorator registering a hook on entering `state` (see `Engine.on_enter`)."""
        return self.sync.on_enter(definition, state, durable=durable)

    def on_exit(
        self, definition: str, state: str | None = None, *, durable: bool = False
    ) -> Callable[[Hook], Hook]:
        """Decorator registering a hook on leaving `state` (see `Engine.on_exit`)."""
        return self.sync.on_exit(definition, state, durable=durable)

    def on_transition(
        self,
        definition: str,
        *,
        source: str | None = None,
        dest: str | None = None,
        event: str | None = None,
        durable: bool = False,
    ) -> Callable[[Hook], Hook]:
        """Decorator registering a hook on transitions (see `Engine.on_transition`)."""
        return self.sync.on_transition(
            definition, source=source, dest=dest, event=event, durable=durable
        )

    def trace(self, provider: TracerProvider | None = None, *, enabled: bool = True) -> None:
        """Trace the instances with OpenTelemetry (see `Engine.trace`)."""
        self.sync.trace(provider, enabled=enabled)

    # -- durable hooks
    deliver_hooks = awaited(Engine.deliver_hooks)

    async def run_hooks(self, name: str = "hooks", *, limit: int = 100, idle: float = 1.0) -> None:
        """Deliver the durable hooks (`Engine.run_hooks`, in a worker thread: hooks are
        plain functions) until this coroutine is cancelled; the round under way is
        finished first."""
        stop = threading.Event()
        loop = asyncio.ensure_future(
            asyncio.to_thread(self.sync.run_hooks, name, stop=stop, limit=limit, idle=idle)
        )
        try:
            await asyncio.shield(loop)
        finally:
            stop.set()
            await loop

    # -- instances
    start = awaited(Engine.start)
    start_many = awaited(Engine.start_many)
    send = awaited(Engine.send)
    send_by_key = awaited(Engine.send_by_key)
    send_many = awaited(Engine.send_many)
    get = awaited(Engine.get)
    get_by_key = awaited(Engine.get_by_key)
    resolve_id = awaited(Engine.resolve_id)
    history = awaited(Engine.history)
    timeline = awaited(Engine.timeline)
    pending = awaited(Engine.pending)
    export_histories = awaited(Engine.export_histories)
    instances = awaited(Engine.instances)
    instance_page = awaited(Engine.instance_page)
    context_index = awaited(Engine.context_index)
    create_context_index = awaited(Engine.create_context_index)
    state_counts = awaited(Engine.state_counts)
    status_counts = awaited(Engine.status_counts)
    check_health = awaited(Engine.check_health)
    allowed = awaited(Engine.allowed)
    cancel = awaited(Engine.cancel)
    redrive = awaited(Engine.redrive)
    reset = awaited(Engine.reset)
    redrive_many = awaited(Engine.redrive_many)
    plan_migration = awaited(Engine.plan_migration)
    migrate = awaited(Engine.migrate)

    # -- the change feed
    changes = awaited(Engine.changes)
    latest_change = awaited(Engine.latest_change)
    change_cursor = awaited(Engine.change_cursor)
    save_change_cursor = awaited(Engine.save_change_cursor)
    drop_change_cursor = awaited(Engine.drop_change_cursor)
    prune_changes = awaited(Engine.prune_changes)

    # -- retention
    purge = awaited(Engine.purge)
    apply_retention = awaited(Engine.apply_retention)
    wait_for_changes = awaited(Engine.wait_for_changes)

    @property
    def safe_url(self) -> str:
        """The database URL with any password hidden, fit to print."""
        return self.sync.safe_url

    def metrics_registry(self, registry: CollectorRegistry | None = None) -> CollectorRegistry:
        """The Prometheus registry of the engine's metrics (see `Engine.metrics_registry`):
        nothing is read until it is scraped, so there is nothing to wait for."""
        return self.sync.metrics_registry(registry)

    # -- tasks, for workers in this process or elsewhere
    claim_tasks = awaited(Engine.claim_tasks)
    complete_task = awaited(Engine.complete_task)
    complete_and_claim = awaited(Engine.complete_and_claim)
    complete_batch = awaited(Engine.complete_batch)
    fail_task = awaited(Engine.fail_task)
    heartbeat = awaited(Engine.heartbeat)
    expire_tasks = awaited(Engine.expire_tasks)
    fire_due_timers = awaited(Engine.fire_due_timers)
    next_due = awaited(Engine.next_due)

    # -- schedules
    add_schedule = awaited(Engine.add_schedule)
    schedules = awaited(Engine.schedules)
    schedule = awaited(Engine.schedule)
    pause_schedule = awaited(Engine.pause_schedule)
    resume_schedule = awaited(Engine.resume_schedule)
    delete_schedule = awaited(Engine.delete_schedule)
    run_due_schedules = awaited(Engine.run_due_schedules)

    # flow control (flow_calls.py)
    limit_task = awaited(Engine.limit_task)
    clear_task_limit = awaited(Engine.clear_task_limit)
    task_limits = awaited(Engine.task_limits)
    load_task_limits = awaited(Engine.load_task_limits)
    held_tasks = awaited(Engine.held_tasks)

    # -- running work, on the caller's loop
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

    # -- diagrams
    diagram = awaited(Engine.diagram)
    heat_diagram = awaited(Engine.heat_diagram)
    definition_diagram = awaited(Engine.definition_diagram)
    diff_diagram = awaited(Engine.diff_diagram)

    close = awaited(Engine.close)
    aclose = close  # the name asyncio libraries close with

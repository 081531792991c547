"""The `Engine` facade: deploy definitions, start and advance instances, run tasks and timers.

Thin by design: a method checks its arguments, reads the clock, runs one function of
`runtime.py` in one transaction, publishes what committed to the subscribers and the
in-process hooks (hooks.py) and returns. The semantics are `statemachines`'; what each
deployed version means is the catalog's; the SQL is `transaction.py`'s. Nothing about an
instance is kept in memory between calls.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import statemachines
from statemachines import Definition
from statemachines.errors import (
    ConcurrentUpdate,
    DefinitionError,
    EventRejected,
    InstanceNotFound,
    Problem,
)

from . import repair, runtime, search, travel
from .app_transaction import AppTransactions
from .batch_events import EventBatches
from .catalog import Catalog, Version
from .checks import MAX_LIST_OFFSET as MAX_LIST_OFFSET  # the HTTP API's check uses it
from .checks import check_id, check_key, check_page, check_start, check_version, checked
from .counts import REJECTED, Counts
from .drawing import Pictures
from .exports import Exported, Selection, write_histories
from .feed import ChangeFeed, Listener
from .flow_calls import FlowCalls, prioritized
from .handlers import plan_of
from .hooks import Hooks, Registry
from .listing import InstancePages
from .metrics import Metrics
from .migration import Migrations
from .one_trip import ONE_TRIP, OneTripSends
from .pending import PendingReads
from .persist import Applied, snapshot, snapshot_of
from .records import Deployment, HistoryEntry, Instance, last_error_of
from .retention import Retention
from .rows import InstanceRow
from .scheduled_starts import ScheduledStarts, when
from .schedules import Schedules
from .search import Searches
from .store import BUSY_TIMEOUT_SECONDS, Store
from .task_calls import TaskCalls, seconds
from .timeline import Timeline, timeline_of
from .tracing import Traced, tracing_for
from .versions import VersionCalls

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

DEFAULT_URL = "sqlite:///turnout.db"
MAX_CONFLICT_RETRIES = 100
Clock = Callable[[], datetime]
Handler = Callable[..., Any]  # handler(input) or handler(input, context)
Subscriber = Callable[[HistoryEntry], None]
Result = TypeVar("Result")
log = logging.getLogger("turnout.engine")


def utc_now() -> datetime:
    """The default clock: the current time, aware, in UTC."""
    return datetime.now(UTC)


class Engine(
    EventBatches,
    Pictures,
    VersionCalls,
    Migrations,
    ChangeFeed,
    Hooks,
    TaskCalls,
    Schedules,
    ScheduledStarts,
    Retention,
    Searches,
    InstancePages,
    Traced,
    Metrics,
    OneTripSends,
    PendingReads,
    AppTransactions,
    FlowCalls,
):
    """A durable workflow engine over one database.

    `url` is an SQLAlchemy URL (`TURNOUT_DB`, else `sqlite:///turnout.db`); `clock` returns an
    aware UTC datetime and drives timers, retries, timeouts and leases, so tests move time
    instead of sleeping; `lease` is how long a worker holds a task before another may take it
    over if the holder stops renewing it. `locking` is how concurrent writers to one instance
    are kept apart on PostgreSQL: "row" (`SELECT ... FOR UPDATE`, the default) or
    "optimistic" (no lock; the revision check of the update makes the loser retry).
    `send_path` is how `send` writes on PostgreSQL: "one_trip" (the default) computes the step
    from the row this engine's last send to the instance committed and writes it,
    revision-checked, in one round trip, reading the row only when that guess was stale;
    "read" always reads the row first (two round trips). See one_trip.py.
    `busy_timeout` is how many seconds an SQLite write waits for a lock another process
    holds (reads wait at most 5 s) before DatabaseUnavailable says the file is locked.
    `change_retention` is how long the change feed keeps a change every named reader has
    passed (workers prune the older ones; None keeps them all). `retention` is how long a
    finished instance of a definition without a `retention` of its own is kept (workers
    purge the older ones, see retention.py; None, the default: until purged).
    `tracer_provider` traces the instances with OpenTelemetry (see tracing.py; by default,
    with the global provider if the application has set one).
    `listen=False` keeps `wait_for_changes`, and so idle workers and hook runners, from
    LISTENing on PostgreSQL (behind a pooler that cannot, say): they poll instead.
    `upgrade=True` upgrades a PostgreSQL database at an older schema revision when it is
    opened instead of refusing it (SchemaOutdated); SQLite always upgrades itself (see
    engine/schema).
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
        self.url = url or os.environ.get("TURNOUT_DB") or DEFAULT_URL
        self.store = Store(self.url, locking, busy_timeout, "upgrade" if upgrade else "check")
        self._init_sends(send_path)
        self.clock: Clock = clock or utc_now
        self.lease = seconds(lease)
        self.worker_id = worker_id or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.handlers: dict[str, Handler] = {}
        self._subscribers: list[Subscriber] = []
        self._hooks = Registry()  # hooks.py
        self.catalog = Catalog()
        self.listener = Listener(self.store, listen)
        self.change_retention = None if change_retention is None else seconds(change_retention)
        self.retention = None if retention is None else seconds(retention)
        self.tracing = tracing_for(tracer_provider)
        self.counts = Counts()  # what this engine did in this process, for its metrics

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- definitions -----------------------------------------------------------------------
    def deploy(self, source: str | Path | Definition) -> Deployment:
        """Register a definition (path, YAML text or Definition); the same content is a no-op."""
        definition = statemachines.load(source)
        name, version, created = self.store.save_definition(
            definition.name, definition.version, definition.digest, definition.source, self.clock()
        )
        if version is None:
            message = (
                f"version {definition.version} of {definition.name!r} already exists with other "
                "content; change the version or leave it out to deploy the next one"
            )
            raise DefinitionError([Problem(message, 1, 1, definition.file)])
        return Deployment(name, version, definition.digest, created)

    def definition(self, name: str, version: int | None = None) -> Definition:
        """The deployed Definition `name` (the latest version unless `version` is given)."""
        return self._version(name, version).definition

    def _version(self, name: str, version: int | None) -> Version:
        check_version(name, version)
        if version is not None:
            known = self.catalog.known(name, version)
            if known is not None:
                return known
        with self.store.reading() as tx:
            return self.catalog.version(tx, name, version)

    def definitions(self) -> list[Deployment]:
        """The latest version of every deployed definition, by name."""
        return [Deployment(n, v, d, False) for n, v, d in self.store.list_definitions()]

    # -- handlers and subscribers ----------------------------------------------------------
    def task(self, name: str) -> Callable[[Handler], Handler]:
        """Decorator registering the handler of task `name` (a def or an async def), called
        as `handler(input)` or `handler(input, context)`: see handlers.py."""

        def register(handler: Handler) -> Handler:
            plan_of(handler)  # its signature read once: how it takes its input and a context
            self.handlers[name] = handler
            return handler

        return register

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(entry)` for each history entry after its transaction commits.

        Returns a function that unsubscribes. A callback that raises is logged (logger
        `turnout.engine`) and otherwise ignored: the change it reports has committed already.
        """
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def _publish(self, applied: Applied | None) -> None:
        if applied is None:
            return
        if self.tracing is not None:
            self.tracing.published(applied)
        self.listener.poke()
        for entry in applied.entries:
            for callback in list(self._subscribers):
                try:
                    callback(entry)
                except Exception:  # a subscriber's bug must not fail the caller
                    log.exception(
                        "subscriber %r failed on entry %d (%s) of instance %s",
                        callback,
                        entry.seq,
                        entry.kind,
                        entry.instance_id,
                    )
        self._after_commit(applied.written)

    def _apply(self, operation: Callable[..., Result], *args: Any) -> Result:
        """`operation(tx, *args)` in one transaction. With row locks a conflict cannot
        happen; with optimistic locking the loser retries."""
        if self.tracing is not None:
            self.tracing.began()
        for attempt in range(MAX_CONFLICT_RETRIES):
            try:
                with self.store.transaction() as tx:
                    result = operation(tx, *args)
                if tx.tallies:
                    self.counts.committed(tx.tallies)
                return result
            except ConcurrentUpdate:
                if attempt == MAX_CONFLICT_RETRIES - 1:
                    raise
                time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        raise AssertionError("unreachable")

    # -- instances -------------------------------------------------------------------------
    def start(
        self,
        definition: str,
        data: dict[str, Any] | None = None,
        *,
        key: str | None = None,
        version: int | None = None,
        within: Any = None,
        at: datetime | str | None = None,
        delay: timedelta | float | str | None = None,
        debounce: timedelta | float | str | None = None,
        deadline: timedelta | float | str | None = None,
        priority: int = 0,
        debounce_max: timedelta | float | str | None = None,
    ) -> Instance:
        """Start an instance of `definition` with `data` as its context.

        `key` is an optional business key, unique per definition name (DuplicateKey), text
        of at most 200 characters. The data is checked against the definition's `input`
        schema (InvalidInput). With `at` (an aware datetime) or `delay` (a duration: a
        timedelta, seconds, or text such as '10m') the instance is `scheduled` until then;
        with `debounce` (a duration, and a key), a start of a key whose instance is still
        scheduled replaces its data and restarts the window (scheduled_starts.py), and
        `debounce_max` (a duration, at least the window) bounds the wait: the instance starts
        no later than that long after the first start of its key, however many follow.
        `deadline` (a duration) replaces the definition's: past it, a running instance
        fails with DeadlineExceeded.

        `within` is the application's SQLAlchemy Session or Connection on the engine's
        database: the instance is written in its transaction, visible once the application
        commits, gone without a trace if it rolls back, and told to subscribers and hooks
        only after the commit (another database: InvalidInput); a scheduled or debounced
        start as well.

        `priority` orders the claims of its flow-controlled tasks (higher first; see
        flow_control.py); a debounced start's replaces the pending start's.
        """
        check_version(definition, version)
        item = check_start(data, key)
        now = self.clock()
        later = when(now, key, at, delay, debounce, deadline, debounce_max)
        start = prioritized(runtime.start, priority) if priority else runtime.start
        if later.due is not None:
            return self._start_later(definition, version, [item], later, now, priority, within)[0]
        if within is not None:
            args = (self.catalog, definition, version, *item, now, later.deadline)
            return self._within(within, start, *args).instance
        applied = self._apply(start, self.catalog, definition, version, *item, now, later.deadline)
        self._publish(applied)
        return applied.instance

    def start_many(
        self,
        definition: str,
        items: Iterable[dict[str, Any]],
        *,
        keys: Iterable[str | None] | None = None,
        version: int | None = None,
        batch: int = 500,
        progress: Callable[[int], None] | None = None,
        within: Any = None,
        at: datetime | str | None = None,
        delay: timedelta | float | str | None = None,
        deadline: timedelta | float | str | None = None,
        priority: int = 0,
    ) -> list[str]:
        """Start one instance per item of `items` (with `keys`, if given), `batch` per
        transaction; return their ids in order.

        Every item is checked before its batch is written; each batch commits or fails as a
        whole (DuplicateKey, say), and the batches before it stay. Every batch starts the
        version the first one started. `progress(n)` is called with the number started so
        far after each batch. `at`, `delay` and `deadline` are as for `start`, for every item.
        With `within`, every batch is written in the application's transaction (see `start`).
        `priority` is each instance's, as for `start`.
        """
        check_version(definition, version)
        later = when(self.clock(), None, at, delay, None, deadline)
        key_list = iter(keys) if keys is not None else None
        ids: list[str] = []
        pending: list[tuple[dict[str, Any], str | None]] = []

        def flush() -> None:
            nonlocal version
            now = self.clock()
            if later.due is not None:
                scheduled = self._start_later(
                    definition, version, pending, later, now, priority, within
                )
                version = scheduled[0].version
                ids.extend(instance.id for instance in scheduled)
            else:
                args = (
                    prioritized(runtime.start_batch, priority) if priority else runtime.start_batch,
                    self.catalog,
                    definition,
                    version,
                    pending,
                    now,
                    later.deadline,
                )
                started = self._within(within, *args) if within is not None else self._apply(*args)
                for applied in started if within is None else ():  # else published at its commit
                    self._publish(applied)
                version = started[0].instance.version
                ids.extend(applied.instance.id for applied in started)
            pending.clear()
            if progress is not None:
                progress(len(ids))

        for data in items:
            key = next(key_list, None) if key_list is not None else None
            pending.append(check_start(data, key))
            if len(pending) >= batch:
                flush()
        if pending:
            flush()
        return ids

    def send(
        self,
        instance_id: str,
        event: str,
        data: Any = None,
        *,
        idempotency_key: str | None = None,
        within: Any = None,
    ) -> Instance:
        """Send `event` with payload `data`; EventRejected (changing nothing) if none takes it.

        With `idempotency_key`, an event this instance has already accepted under that key is
        not applied again: the current instance is returned. An idempotency key is text of
        at most 200 characters. `within`: the application's transaction, as for `start`;
        an event rolled back with it was never applied, and its idempotency key is free.
        """
        check_id(instance_id)
        if idempotency_key is not None:
            check_key(idempotency_key, "an idempotency key")
        if data is not None:
            data = checked(data, "event data")
        if within is not None:
            args = (instance_id, event, data, idempotency_key, self.clock())
            return self._send_within(within, runtime.send, *args).instance
        try:
            applied = self._send_step(instance_id, event, data, idempotency_key, self.clock())
        except EventRejected as exc:
            self.counts.tally((REJECTED, exc.definition or ""))
            raise
        self._publish(applied)
        return applied.instance

    def send_by_key(
        self,
        definition: str,
        key: str,
        event: str,
        data: Any = None,
        *,
        idempotency_key: str | None = None,
        within: Any = None,
    ) -> Instance:
        """`send` to the instance of `definition` whose business key is `key` (with
        `within`, found in the application's transaction: it may have started it)."""
        if within is not None:
            return self._send_by_key_within(within, definition, key, event, data, idempotency_key)
        return self.send(
            self._id_for_key(definition, key), event, data, idempotency_key=idempotency_key
        )

    def _id_for_key(self, definition: str, key: str) -> str:
        check_key(key, "a business key")
        with self.store.reading() as tx:
            found = tx.find_by_key(definition, key)
        if found is None:
            raise InstanceNotFound(f"{definition}/{key}")
        return found

    def get(self, instance_id: str, at: int | None = None) -> Instance:
        """The instance as it is now, with the newest error of its history (`last_error`)
        and the instances its call states started (`children`); with `at`, as it stood
        once the transaction that wrote history entry `at` had committed (see travel.py)."""
        row = self._row(instance_id)
        if at is not None:
            return travel.instance_at(
                row, travel.looked_back(self.store, row, at, self._machine_of)[0]
            )
        entry = self.store.last_error(row.id, row.history_seq)
        with self.store.reading() as tx:
            found = tx.children(row.id)
        held = self.held_tasks(row.id) if row.status == "running" else []
        return dataclasses.replace(
            snapshot(row), last_error=last_error_of(entry), children=found, held=held
        )

    def timeline(self, instance_id: str) -> Timeline:
        """Every commit of the instance's history with its context changes (see timeline.py)."""
        return timeline_of(self.store, self._row(instance_id), self._machine_of)

    def resolve_id(self, given: str) -> str:
        """The full id of the one instance whose id starts with `given` (a unique prefix, as
        a person types it; a full id is returned as it is): AmbiguousId, listing candidates,
        when several do (see ids.py)."""
        from .ids import resolve_id

        return resolve_id(self.store, given)

    def get_by_key(self, definition: str, key: str) -> Instance:
        """The instance of `definition` whose business key is `key`."""
        return self.get(self._id_for_key(definition, key))

    def _row(self, instance_id: str) -> InstanceRow:
        check_id(instance_id)
        row = self.store.get_instance(instance_id)
        if row is None:
            raise InstanceNotFound(instance_id)
        return row

    def history(self, instance_id: str) -> list[HistoryEntry]:
        """Every history entry of the instance, oldest first."""
        row = self._row(instance_id)
        return self.store.history(instance_id, row.definition)

    def export_histories(
        self,
        name: str,
        output: TextIO,
        *,
        version: int | None = None,
        status: str | None = None,
        since: datetime | None = None,
    ) -> Exported:
        """Write the history of every instance of `name` (of `version`, with `status`,
        started at or after `since`) to `output` as the JSON lines `check_histories` reads."""
        self._version(name, version)  # DefinitionNotFound before anything is written
        selection = Selection(name, version, status, since)
        selection.check()
        return write_histories(self.store, selection, output)

    def instances(
        self,
        definition: str | None = None,
        state: str | None = None,
        status: str | None = None,
        key: str | None = None,
        limit: int = 100,
        offset: int = 0,
        parent: str | None = None,
        where: Mapping[str, Any] | None = None,
    ) -> list[Instance]:
        """Instances matching every filter given (`parent`: those the instance's call states
        started; `where`: context paths to values or to {operator: value}, see search.py),
        oldest first, `limit` at most."""
        check_page(limit, offset)
        filters = {"definition": definition, "state": state, "status": status, "key": key}
        found = search.clauses(where, self.store.postgres)
        rows = self.store.list_instances(
            **filters, limit=limit, offset=offset, parent=parent, where=found
        )
        return [snapshot(row) for row in rows]

    def state_counts(self, definition: str) -> dict[str, int]:
        """How many unfinished instances of `definition` are in each top-level state."""
        return self.store.count_by_state(definition)

    def status_counts(self, definition: str) -> dict[str, int]:
        """How many instances of `definition` have each status."""
        return self.store.count_by_status(definition)

    def check_health(self) -> None:
        """Return when the database answers; raise DatabaseUnavailable when it does not."""
        self.store.ping()

    @property
    def safe_url(self) -> str:
        """The database URL with any password hidden, fit to print."""
        return self.store.safe_url

    def allowed(self, instance: str | Instance) -> list[str]:
        """The events the instance's active states have transitions for, guards aside.

        Given an `Instance` (one a call returned), the answer is for that snapshot, without
        reading the database again; given an id, for the instance as it is now.
        """
        if isinstance(instance, str):
            row = self._row(instance)
            machine = self._version(row.definition, row.version).machine
            return machine.allowed(snapshot_of(row))
        machine = self._version(instance.definition, instance.version).machine
        return machine.allowed_in(instance.active, instance.status)

    def cancel(self, instance_id: str, reason: str | None = None) -> Instance:
        """Stop a running instance: drop its work, run compensations, end `cancelled`."""
        check_id(instance_id)
        applied = self._apply(runtime.cancel, self.catalog, instance_id, reason, self.clock())
        self._publish(applied)
        return applied.instance

    def redrive(self, instance_id: str, reason: str | None = None) -> Instance:
        """Restart a failed instance where it failed, running again what had not succeeded."""
        return repair.redrive_instance(self, instance_id, reason)

    def reset(
        self, instance_id: str, to_state: str, context_patch: Any = None, *, reason: str
    ) -> Instance:
        """Move an instance by hand to `to_state`, its context patched; see repair.py."""
        return repair.reset_instance(self, instance_id, to_state, context_patch, reason)

    def redrive_many(
        self,
        definition: str,
        *,
        version: int | None = None,
        state: str | None = None,
        error_type: str | None = None,
        dry_run: bool = True,
        reason: str | None = None,
        limit: int = 1000,
    ) -> list[repair.RedriveOutcome]:
        """Redrive the failed instances of `definition` the filters select (or, `dry_run`,
        say what each redrive would do, writing nothing): each outcome, oldest first."""
        return repair.redrive_many(
            self, definition, version, state, error_type, dry_run, reason, limit
        )

    def close(self) -> None:
        """Release the database connections."""
        self.listener.close()
        self.store.close()

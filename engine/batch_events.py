"""Batched event intake: `Engine.send_many` applies a list of events in one transaction per
batch, with an outcome for each event, for consumers that read events from a broker in batches.

Every event of a batch is decided in turn, in input order (so several events to one instance
apply in order), on the instance as the events before it left it: an unknown instance, a
rejected event or a duplicate idempotency key writes nothing and does not stop the others.
The instances of a batch are read, and on PostgreSQL locked, by one statement in the order
of their ids, so two batches over the same instances wait for one another rather than
deadlock, and no event costs a round trip of its own.

An event whose write fails (a value the database refuses, say) is known only once the writes
reach the database, at COMMIT on PostgreSQL: the batch is then rolled back and run again
carefully, each event inside a SAVEPOINT whose writes are checked before the next event, so
the failing one is rolled back alone and reported 'invalid'.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from statemachines.errors import (
    ConcurrentUpdate,
    DatabaseUnavailable,
    EventRejected,
    InstanceNotFound,
    InvalidInput,
    TurnoutError,
)

from .checks import check_id, check_key, checked
from .children import persist_step
from .counts import ACCEPTED, REJECTED, Counts
from .persist import Applied, event_step, snapshot
from .records import EventOutcome
from .rows import InstanceRow
from .runtime import MAX_HISTORY
from .store import _is_data_error, _is_operational_error
from .tables import instances_t
from .transaction import Transaction

if TYPE_CHECKING:
    from .catalog import Catalog
    from .store import Store

Result = TypeVar("Result")
log = logging.getLogger("turnout.engine")
DEFAULT_BATCH = 500
_FIELDS = ", ".join(column.name for column in instances_t.c)  # InstanceRow's, in order
_READ_MANY = {
    # SQLite holds the database's write lock from BEGIN IMMEDIATE: reading is enough.
    "sqlite": f"SELECT {_FIELDS} FROM turnout_instances "
    "WHERE id IN (SELECT value FROM json_each(?))",
    "optimistic": f"SELECT {_FIELDS} FROM turnout_instances WHERE id = ANY(%s)",
    "row": f"SELECT {_FIELDS} FROM turnout_instances WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
}
# Rows found by pairs of values, the pairs one parameter (a JSON list on SQLite, two arrays
# on PostgreSQL): {pairs} is filled in with the form of the database's.
_PAIRS = {
    "sqlite": "(SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?))",
    "postgres": "(SELECT * FROM unnest(%s::text[], %s::text[]))",
}
_SEEN_KEYS = "SELECT instance_id, key FROM turnout_idempotency WHERE (instance_id, key) IN {pairs}"
_KEYED_IDS = "SELECT definition, key, id FROM turnout_instances WHERE (definition, key) IN {pairs}"


@dataclass
class _Item:
    """One event of the list, checked: its target (an id, or a definition and business key)
    and what to send; `refused`, the outcome of one that cannot be sent at all."""

    index: int
    instance_id: str | None = None
    by_key: tuple[str, str] | None = None
    event: str = ""
    data: Any = None
    idempotency_key: str | None = None
    refused: EventOutcome | None = None  # why it cannot be sent at all


@dataclass
class _Decided:
    """An event's outcome inside its transaction, and the step it wrote when applied."""

    outcome: EventOutcome
    applied: Applied | None = None
    definition: str = ""  # of a rejected event's instance, for the metrics


@dataclass
class _Read:
    """What a batch knows of its instances: their rows as the batch has left them, and the
    idempotency keys applied to them (before, or by the batch's events so far)."""

    rows: dict[str, InstanceRow]
    seen: set[tuple[str, str]]

    def copy(self) -> _Read:
        return _Read(dict(self.rows), set(self.seen))


class _WriteFailed(Exception):
    """An event's write failed in a batch run without savepoints: run it again carefully."""


def checked_item(index: int, given: Any) -> _Item:
    """`given` as an `_Item`: (target, event[, data[, idempotency_key]]), the target an
    instance id or a (definition, business key) pair; what is wrong with it otherwise."""
    if not isinstance(given, (tuple, list)) or not 2 <= len(given) <= 4:
        shape = "an event is (instance, event[, data[, idempotency_key]])"
        return _Item(index, refused=EventOutcome(index, EventOutcome.INVALID, message=shape))
    target, event, data, idempotency_key = (*given, None, None)[:4]
    item = _Item(index, event=event)
    try:
        if isinstance(target, (tuple, list)):
            if len(target) != 2 or not isinstance(target[0], str):
                raise InvalidInput("a business key is given as (definition, key)")
            check_key(target[1], "a business key")
            item.by_key = (target[0], target[1])
        else:
            check_id(target)
            item.instance_id = target
        if not isinstance(event, str) or not event:
            raise InvalidInput("the event must be a non-empty name")
        if idempotency_key is not None:
            check_key(idempotency_key, "an idempotency key")
        item.idempotency_key = idempotency_key
        item.data = None if data is None else checked(data, "event data")
    except InstanceNotFound as exc:  # an id no instance can have
        item.refused = EventOutcome(index, EventOutcome.NOT_FOUND, message=str(exc))
    except TurnoutError as exc:  # InvalidInput, ValueNotStorable
        item.refused = EventOutcome(index, EventOutcome.INVALID, message=str(exc))
    return item


def apply_events(
    tx: Transaction, catalog: Catalog, items: list[_Item], careful: bool, now: datetime
) -> list[_Decided]:
    """Decide and write every item in turn, in one transaction. `careful`: each inside a
    SAVEPOINT, its writes checked before the next (see the module)."""
    named = sorted({item.by_key for item in items if item.by_key and item.refused is None})
    keyed = {(name, key): found for name, key, found in _by_pairs(tx, _KEYED_IDS, named)}
    ids = {
        item.index: keyed.get(item.by_key) if item.by_key else item.instance_id
        for item in items
        if item.refused is None
    }
    rows = _read_rows(tx, sorted({found for found in ids.values() if found is not None}))
    keys = {
        (found, item.idempotency_key)
        for item in items
        if item.idempotency_key is not None and (found := ids.get(item.index)) in rows
    }
    seen = {(str(found), str(key)) for found, key in _by_pairs(tx, _SEEN_KEYS, sorted(keys))}
    read = _Read(rows, seen)
    decided = []
    for item in items:
        instance_id = ids.get(item.index)
        row = read.rows.get(instance_id) if instance_id is not None else None
        if item.refused is not None:
            decided.append(_Decided(item.refused))
        elif row is None:
            missing = "/".join(item.by_key) if item.by_key else str(item.instance_id)
            message = str(InstanceNotFound(missing))
            decided.append(
                _Decided(EventOutcome(item.index, EventOutcome.NOT_FOUND, message=message))
            )
        elif careful:
            decided.append(_carefully(tx, catalog, read, row, item, now))
        else:
            decided.append(_one(tx, catalog, read, row, item, now, careful=False))
    return decided


def _read_rows(tx: Transaction, ids: list[str]) -> dict[str, InstanceRow]:
    """The instance rows of `ids`, locked on PostgreSQL under row locking, in one statement."""
    if not ids:
        return {}
    if tx.postgres:
        cursor = tx.cursor.connection.cursor()  # its own, as `Transaction._read` explains
        cursor.execute(_READ_MANY["optimistic" if tx.optimistic else "row"], (ids,))
    else:
        cursor = tx.cursor
        cursor.execute(_READ_MANY["sqlite"], (json.dumps(ids),))
    found = (tx.instance_of(values) for values in cursor.fetchall())
    return {row.id: row for row in found if row is not None}


def _by_pairs(tx: Transaction, sql: str, pairs: list[tuple[str, str]]) -> list[Any]:
    """The rows `sql` finds for `pairs` (of text), in one statement; none for no pairs."""
    if not pairs:
        return []
    if tx.postgres:
        cursor = tx.cursor.connection.cursor()  # its own, as `Transaction._read` explains
        params: tuple[Any, ...] = ([pair[0] for pair in pairs], [pair[1] for pair in pairs])
        cursor.execute(sql.format(pairs=_PAIRS["postgres"]), params)
    else:
        cursor = tx.cursor
        cursor.execute(sql.format(pairs=_PAIRS["sqlite"]), (json.dumps(pairs),))
    return list(cursor.fetchall())


def _one(
    tx: Transaction,
    catalog: Catalog,
    read: _Read,
    row: InstanceRow,
    item: _Item,
    now: datetime,
    careful: bool,
) -> _Decided:
    """`runtime.send` on the row as the batch has left it: decided first (nothing written
    when the event is a duplicate or rejected), then written."""
    key = item.idempotency_key
    if key is not None and (row.id, key) in read.seen:
        return _Decided(EventOutcome(item.index, EventOutcome.DUPLICATE, snapshot(row)))
    try:
        if row.history_seq >= MAX_HISTORY:
            reason = f"the instance's history holds {MAX_HISTORY} entries, the most it may"
            raise EventRejected(item.event, row.state, [], reason)
        machine = catalog.version(tx, row.definition, row.version).machine
        step = event_step(machine, row, item.event, item.data, now)
    except EventRejected as exc:
        rejected = EventOutcome(
            item.index, EventOutcome.REJECTED, snapshot(row), list(exc.allowed), str(exc)
        )
        return _Decided(rejected, definition=row.definition)
    written = len(tx.written)
    try:
        applied = persist_step(tx, catalog, row, step, now, machine.definition)
        if key is not None:
            tx.remember_idempotency(row.id, key, now)
    except ConcurrentUpdate:
        raise
    except Exception as exc:
        if careful:
            raise
        raise _WriteFailed() from exc
    for step_written in tx.written[written:]:  # this instance, and any other the step changed
        read.rows[step_written.after.id] = step_written.after
    if key is not None:
        read.seen.add((row.id, key))
    tx.tallies.append((ACCEPTED, row.definition))
    return _Decided(EventOutcome(item.index, EventOutcome.APPLIED, applied.instance), applied)


def _carefully(
    tx: Transaction,
    catalog: Catalog,
    read: _Read,
    row: InstanceRow,
    item: _Item,
    now: datetime,
) -> _Decided:
    """`_one` inside a SAVEPOINT, its writes checked: a failing event is rolled back alone."""
    marks = (len(tx.written), len(tx.tallies), tx.changed)
    before = read.copy()  # what the batch knows before the event, should it be rolled back
    tx.cursor.execute("SAVEPOINT turnout_event")
    try:
        decided = _one(tx, catalog, read, row, item, now, careful=True)
        tx._sync()  # a write the database refuses fails here, inside its savepoint
    except ConcurrentUpdate:
        raise
    except Exception as exc:
        if _is_operational_error(exc) or isinstance(exc, DatabaseUnavailable):
            raise
        tx.cursor.execute("ROLLBACK TO SAVEPOINT turnout_event")
        del tx.written[marks[0] :]
        del tx.tallies[marks[1] :]
        tx.changed = marks[2]
        read.rows, read.seen = before.rows, before.seen
        reason = f"the database refused a value: {exc}" if _is_data_error(exc) else str(exc)
        if not isinstance(exc, TurnoutError):  # not the caller's mistake: worth a look
            log.warning("event %d of a batch to %s failed: %r", item.index, row.id, exc)
        return _Decided(EventOutcome(item.index, EventOutcome.INVALID, message=reason))
    tx.cursor.execute("RELEASE SAVEPOINT turnout_event")
    return decided


class EventBatches:
    """`send_many`: many events, one transaction per batch (a part of `Engine`)."""

    if TYPE_CHECKING:  # the other parts of `Engine`
        store: Store
        catalog: Catalog
        clock: Callable[[], datetime]
        counts: Counts

        def _apply(self, operation: Callable[..., Result], *args: Any) -> Result: ...

        def _publish(self, applied: Applied | None) -> None: ...

        def _within(self, within: Any, operation: Callable[..., Result], *args: Any) -> Result: ...

    def send_many(
        self, events: Iterable[Sequence[Any]], *, batch: int = DEFAULT_BATCH, within: Any = None
    ) -> list[EventOutcome]:
        """Send every event of `events`, `batch` per transaction; one EventOutcome each, in
        input order.

        An event is `(instance, event)`, `(instance, event, data)` or `(instance, event,
        data, idempotency_key)`, where `instance` is an instance id or a `(definition,
        business key)` pair. Events apply in order, each to the instance as the ones before
        it left it; one that is rejected, a duplicate, malformed or for no instance changes
        nothing and does not stop the others. Subscribers and hooks see each applied event
        once its batch has committed. A batch that cannot commit (DatabaseUnavailable)
        raises, and the batches before it stay. With `within` (the application's Session or
        Connection, as for `Engine.start`) every batch is written in the application's
        transaction and published at its commit.
        """
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise InvalidInput(f"batch must be a positive integer, not {batch!r}")
        outcomes: list[EventOutcome] = []
        pending: list[_Item] = []
        for index, given in enumerate(events):
            pending.append(checked_item(index, given))
            if len(pending) >= batch:
                outcomes.extend(self._send_batch(pending, within))
                pending = []
        if pending:
            outcomes.extend(self._send_batch(pending, within))
        return outcomes

    def _send_batch(self, items: list[_Item], within: Any = None) -> list[EventOutcome]:
        now = self.clock()
        # In the application's transaction (`within`) a failed run is rolled back to the
        # savepoint the call runs in, and run again there.
        run: Callable[..., list[_Decided]] = self._apply
        if within is not None:
            run = functools.partial(self._within, within)
        try:
            decided = run(apply_events, self.catalog, items, False, now)
        except (DatabaseUnavailable, ConcurrentUpdate):
            raise
        except Exception:
            # An event's write failed: which one, a run with a savepoint for each tells.
            decided = run(apply_events, self.catalog, items, True, now)
        return self._outcomes(decided, publish=within is None)

    def _outcomes(self, decided: list[_Decided], publish: bool) -> list[EventOutcome]:
        for done in decided:
            if done.applied is not None:
                if publish:
                    self._publish(done.applied)
            elif done.outcome.outcome == EventOutcome.REJECTED:
                self.counts.tally((REJECTED, done.definition))
        return [done.outcome for done in decided]

"""An event in one round trip on PostgreSQL: the step is computed from the instance row this
engine last wrote, and written as one statement whose every write depends on the row still
being at that revision, run alone in autocommit (one statement is atomic: no BEGIN, no
COMMIT, no pipeline to keep).

Reading the row first (locked) and writing after costs two round trips. Here the row is a
guess, kept from this engine's own last send to the instance (`KeptRows`, a bounded LRU of
the rows as committed): the step is computed from it as `runtime.send` computes it, but on
a `PlannedTransaction` that records the writes instead of running them. They are sent as one
statement of data-modifying CTEs: the instance's `UPDATE ... WHERE id = ? AND revision = ?`
(and, for a keyed event, no row of its idempotency key), and every other write (history,
change record, idempotency key, tasks, timers, work dropped, the feed's wake-up) reads the
update's RETURNING, so it takes effect only if the update did. When the guess was stale,
the statement wrote nothing and returns the current row instead, locked while it is read:
the step is computed again from that (one more round trip), and after a second miss, or
when anything about the step needs more than this statement can do (a read, another
instance's row, a refused event, a definition not loaded yet), the event goes the
authoritative way: `runtime.send` in a transaction that reads the row locked. A guess never
decides anything on its own: what the caller gets back is what committed.

A miss costs a statement that writes nothing and the step computed twice, so the engine
stops guessing where guesses miss: after a missed guess on an instance, its next COOL_FIRST
sends read first, then one guesses again (a probe); a probe that misses doubles the count
(up to COOL_MOST), one that holds ends the cooling. And while most first guesses miss
anywhere (many writers on the same few instances), sends read first but for one probe in
PROBE_EVERY (see KeptRows.get).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from statemachines.errors import TurnoutError

from . import runtime
from .changes import NOTIFY_CHANGES
from .codec import dumps as _dumps
from .persist import Applied, snapshot
from .rows import InstanceRow
from .store import _is_operational_error, _lost
from .transaction import _INSTANCE_FIELDS, POSTGRES_SQL, Transaction, _context_json

if TYPE_CHECKING:
    from .catalog import Catalog
    from .counts import Counts
    from .store import Store
    from .tracing import Tracing

ONE_TRIP = "one_trip"  # the kept row guessed, one round trip when the guess holds
READ_FIRST = "read"  # the row read (locked) first, then the writes: two round trips
SEND_PATHS = (ONE_TRIP, READ_FIRST)
KEPT_ROWS = 1024  # instance rows an engine keeps to guess from
# A row whose JSON is larger is not kept (its instance's sends read first): the kept rows'
# memory stays bounded (KEPT_ROWS * KEPT_ROW_BYTES at most), and for such a row the payload
# costs more than the round trip a guess would save.
KEPT_ROW_BYTES = 64 * 1024
GUESSES = 2  # the kept row, then the current one a missed guess returned
# Past this share of missed guesses (other writers moving the same instances), a guess costs
# more round trips than it saves: sends read first, guessing once in PROBE_EVERY to notice
# when the contention is over. The share is a moving average over about 1/MISS_WEIGHT guesses.
MOST_MISSES = 0.4
MISS_WEIGHT = 0.1
PROBE_EVERY = 16
# After a missed guess on an instance, its next sends read first: COOL_FIRST of them, then a
# probe; each probe that misses doubles the count, up to COOL_MOST.
COOL_FIRST = 16
COOL_MOST = 1024

# The writes of a step that a single statement may carry, each made to depend on the update.
_CONDITIONAL_WRITES = (
    "append_history",
    "insert_change",
    "remember_idempotency",
    "insert_task",
    "insert_timer",
    "drop_tasks",
    "drop_timers",
    "drop_all_tasks",
    "drop_all_timers",
)


def _conditional(sql: str) -> str:
    """`sql` (one of _CONDITIONAL_WRITES) as a write that happens only if `moved` has a row:
    an INSERT of VALUES becomes an INSERT of a SELECT from `moved`, an UPDATE or a DELETE
    gains a condition on it."""
    if sql.startswith("INSERT"):
        head, values = sql.split(" VALUES (")
        return f"{head} SELECT {values.removesuffix(')')} FROM moved"
    return f"{sql} AND EXISTS (SELECT 1 FROM moved)"


_WRITES = {name: _conditional(POSTGRES_SQL[name]) for name in _CONDITIONAL_WRITES}
_MOVE = (
    "moved AS (UPDATE turnout_instances SET state = %s, status = %s, active = %s::jsonb, "
    "context = %s::jsonb, machine = %s::jsonb, revision = %s, history_seq = %s, "
    "updated_at = %s WHERE id = %s AND revision = %s{unseen} RETURNING id)"
)
_UNSEEN = " AND NOT EXISTS (SELECT 1 FROM turnout_idempotency WHERE instance_id = %s AND key = %s)"
_SEEN = "EXISTS (SELECT 1 FROM turnout_idempotency WHERE instance_id = %s AND key = %s)"
# The wake-up of the feed's listeners (changes.py), sent only if the step is written.
_TOLD = f"told AS ({NOTIFY_CHANGES} FROM moved)"
# A missed guess: the current row, locked (so as it is once a writer holding it commits).
_FOUND = (
    f"found AS (SELECT {_INSTANCE_FIELDS} FROM turnout_instances WHERE id = %s "
    "AND NOT EXISTS (SELECT 1 FROM moved) FOR UPDATE)"
)
_OUTCOME = (
    "SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM told), {seen}, found.* "
    "FROM (SELECT 1) AS one LEFT JOIN found ON true"
)


class Unplanned(Exception):
    """The step needs more than one statement can do: a read, another instance's row."""


class Kept(NamedTuple):
    """An instance row as committed, its JSON columns kept as their text: each guess decodes
    its own copy, so nothing a caller does to a returned Instance reaches the next guess."""

    id: str
    key: str | None
    definition: str
    version: int
    state: str
    active: str
    status: str
    context: str
    machine: str
    revision: int
    history_seq: int
    created_at: datetime
    updated_at: datetime
    parent_id: str | None

    @classmethod
    def of(cls, row: InstanceRow, active: str, context: str, machine: str) -> Kept:
        return cls(
            row.id,
            row.key,
            row.definition,
            row.version,
            row.state,
            active,
            row.status,
            context,
            machine,
            row.revision,
            row.history_seq,
            row.created_at,
            row.updated_at,
            row.parent_id,
        )

    def row(self) -> InstanceRow:
        loads = json.loads
        return InstanceRow(
            self.id,
            self.key,
            self.definition,
            self.version,
            self.state,
            loads(self.active),
            self.status,
            loads(self.context),
            loads(self.machine),
            self.revision,
            self.history_seq,
            self.created_at,
            self.updated_at,
            self.parent_id,
        )


class KeptRows:
    """The instance rows this engine's sends last committed, by id, the `size` most recently
    used; only ever a guess (see the module), so a stale or missing one costs time, not
    correctness. Shared by the engine's threads.

    Its counts tell how guessing goes: `guesses` and `missed` (first guesses, and those that
    found the row moved), `cooled` (sends that read first because their instance cooled)."""

    def __init__(self, size: int = KEPT_ROWS) -> None:
        self.size = size
        self._rows: OrderedDict[str, Kept] = OrderedDict()
        # Per cooling instance: [sends left to read first, the count after the next miss].
        self._cooling: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self.misses = 0.0  # the moving share of missed guesses (threads may race: a guess)
        self._skipped = 0
        self.guesses = 0
        self.missed = 0
        self.cooled = 0

    def guessed(self, instance_id: str, missed: bool) -> None:
        """Count a first guess's outcome: in the share of misses, and for its instance, whose
        sends read first for a while after a miss (longer at each miss in a row), and guess
        again after a guess that held."""
        self.misses += MISS_WEIGHT * (missed - self.misses)
        with self._lock:
            self.guesses += 1
            if not missed:
                self._cooling.pop(instance_id, None)
                return
            self.missed += 1
            cooling = self._cooling.pop(instance_id, None)
            sends = cooling[1] if cooling is not None else COOL_FIRST
            self._cooling[instance_id] = [sends, min(sends * 2, COOL_MOST)]
            if len(self._cooling) > self.size:  # bounded as the rows are: the oldest go
                del self._cooling[next(iter(self._cooling))]

    def cooling(self, instance_id: str) -> int:
        """How many more sends to the instance read first before the next guess (0: none)."""
        cooling = self._cooling.get(instance_id)
        return cooling[0] if cooling is not None else 0

    def get(self, instance_id: str) -> InstanceRow | None:
        """The kept row of the instance to guess from; None when there is none, when the
        instance cools after a miss, or when guesses miss too often now (but for one probe
        in PROBE_EVERY)."""
        with self._lock:
            cooling = self._cooling.get(instance_id)
            if cooling is not None and cooling[0] > 0:
                cooling[0] -= 1
                self.cooled += 1
                return None
            if self.misses > MOST_MISSES:
                self._skipped += 1
                if self._skipped % PROBE_EVERY:
                    return None
            kept = self._rows.get(instance_id)
            if kept is None:
                return None
            self._rows.move_to_end(instance_id)
        return kept.row()

    def keep(self, kept: Kept) -> None:
        """Keep `kept`, unless a newer revision of the row is kept already (two threads'
        sends to one instance may end in either order) or its JSON is over KEPT_ROW_BYTES."""
        if len(kept.context) + len(kept.machine) + len(kept.active) > KEPT_ROW_BYTES:
            self.forget(kept.id)
            return
        with self._lock:
            known = self._rows.get(kept.id)
            if known is not None and known.revision > kept.revision:
                return
            self._rows[kept.id] = kept
            self._rows.move_to_end(kept.id)
            if len(self._rows) > self.size:
                self._rows.popitem(last=False)

    def forget(self, instance_id: str) -> None:
        """Forget the instance's row (its cooling stays: its next send reads first anyway)."""
        with self._lock:
            self._rows.pop(instance_id, None)

    def __len__(self) -> int:
        return len(self._rows)


class PlannedTransaction(Transaction):
    """A transaction that runs nothing: `runtime.send` computes the step over the guessed
    row and this records its writes, for `statement()` to send as one. Any read, any write
    of another instance's row and any write a single statement cannot carry is Unplanned."""

    def __init__(self, guessed: InstanceRow) -> None:
        super().__init__(None, True)
        self.guessed = guessed
        self.moved: tuple[InstanceRow, str, str, str] | None = None  # the row and its JSON
        self.writes: list[tuple[str, Sequence[Any]]] = []
        self.key: str | None = None  # the event's idempotency key

    def lock_instance(self, instance_id: str) -> InstanceRow | None:
        if instance_id != self.guessed.id:
            raise Unplanned(f"instance {instance_id}")
        return self.guessed

    def seen_idempotency(self, instance_id: str, key: str) -> bool:
        self.key = key  # checked by the statement itself: see `statement`
        return False

    def _read(self, name: str, params: Sequence[Any]) -> Any:
        raise Unplanned(name)

    def update_instance(self, new: InstanceRow, previous: InstanceRow) -> None:
        if self.moved is not None or previous is not self.guessed:
            raise Unplanned("a second instance row")
        self.moved = (new, _dumps(new.active), _context_json(new.context), _dumps(new.machine))

    def _run(self, name: str, params: Sequence[Any]) -> Any:
        if self.moved is None or name not in _WRITES:
            raise Unplanned(name)
        self.writes.append((name, params))
        return None

    def _run_each(self, name: str, rows: Sequence[Sequence[Any]]) -> None:
        for params in rows:
            self._run(name, params)

    def update_task(self, task_id: str, **values: Any) -> None:
        raise Unplanned("update_task")

    def statement(self) -> tuple[str, list[Any]]:
        """The one statement of the step, and its parameters (see the module)."""
        assert self.moved is not None
        new, active, context, machine = self.moved
        previous = self.guessed
        params: list[Any] = [
            new.state,
            new.status,
            active,
            context,
            machine,
            new.revision,
            new.history_seq,
            self._time(new.updated_at),
            new.id,
            previous.revision,
        ]
        keyed = self.key is not None
        if keyed:
            params += [new.id, self.key]
        parts = [_MOVE.format(unseen=_UNSEEN if keyed else "")]
        for number, (name, values) in enumerate(self.writes):
            parts.append(f"w{number} AS ({_WRITES[name]})")
            params.extend(values)
        parts += [_TOLD, _FOUND]
        params.append(new.id)
        if keyed:
            params += [new.id, self.key]
        outcome = _OUTCOME.format(seen=_SEEN if keyed else "false")
        return f"WITH {', '.join(parts)} {outcome}", params

    def kept(self) -> Kept:
        assert self.moved is not None
        return Kept.of(*self.moved)


class OneTripSends:
    """The `Engine`'s way of applying an event (`send_path`, see the module)."""

    store: Store
    catalog: Catalog
    counts: Counts
    tracing: Tracing | None

    if TYPE_CHECKING:

        def _apply(self, operation: Any, *args: Any) -> Any: ...

    def _init_sends(self, send_path: str) -> None:
        if send_path not in SEND_PATHS:
            raise ValueError(f"send_path must be one of {SEND_PATHS}, not {send_path!r}")
        self.send_path = send_path
        # SQLite has one writer at a time and no round trips: it always reads first.
        one_trip = send_path == ONE_TRIP and self.store.postgres
        self._kept: KeptRows | None = KeptRows() if one_trip else None

    def _send_step(
        self, instance_id: str, event: str, data: Any, key: str | None, now: datetime
    ) -> Applied:
        """`runtime.send` committed: in one round trip when a guessed row holds."""
        kept = self._kept
        arguments = (self.catalog, instance_id, event, data, key, now)
        if kept is None:
            done: Applied = self._apply(runtime.send, *arguments)
            return done
        guess = kept.get(instance_id)
        for attempt in range(GUESSES):
            if guess is None:
                break
            outcome = self._one_trip(kept, guess, event, data, key, now, attempt == 0)
            if isinstance(outcome, Applied):
                return outcome
            guess = outcome
        kept.forget(instance_id)
        applied: Applied = self._apply(runtime.send, *arguments)
        for step in applied.written:
            if step.after.id == instance_id:
                after = step.after
                texts = (_dumps(after.active), _dumps(after.context), _dumps(after.machine))
                kept.keep(Kept.of(after, *texts))
        return applied

    def _one_trip(
        self,
        kept: KeptRows,
        guess: InstanceRow,
        event: str,
        data: Any,
        key: str | None,
        now: datetime,
        first: bool,
    ) -> Applied | InstanceRow | None:
        """The event applied over `guess` in one statement: what committed (the step, or
        for a duplicate idempotency key the current instance), else the current row as the
        statement found it (None: not found, or no step to write from this guess)."""
        planned = PlannedTransaction(guess)
        try:
            applied = runtime.send(planned, self.catalog, guess.id, event, data, key, now)
        except Exception:  # noqa: BLE001 - whatever the guess leads to, the row read decides
            return None
        if planned.moved is None:
            return None
        sql, params = planned.statement()
        if self.tracing is not None:
            self.tracing.began()
        try:
            found = self._at_once(sql, params)
        except BaseException:
            kept.forget(guess.id)  # committed or not, unknown here
            raise
        moved, _, seen, *row = found
        if first:  # a kept row's staleness is what decides whether guessing pays
            kept.guessed(guess.id, not moved)
        if moved:
            if planned.tallies:
                self.counts.committed(planned.tallies)
            kept.keep(planned.kept())
            return applied
        current = planned.instance_of(row) if row[0] is not None else None
        if seen and current is not None:  # a duplicate: the instance as it is
            return Applied(snapshot(current), [])
        return current

    def _at_once(self, sql: str, params: Sequence[Any]) -> Any:
        """Run `sql` as a transaction of its own (autocommit: one statement is atomic, and
        needs neither BEGIN nor COMMIT) and give its row: one round trip, the driver's
        errors translated as the store's transactions translate them (store.py)."""
        with self.store.translated() as outcome:
            raw = self.store.engine.raw_connection()
            conn: Any = raw.driver_connection
            try:
                conn.autocommit = True
                outcome.unknown = True  # once sent, it may commit whatever becomes of us
                try:
                    return conn.execute(sql, params).fetchone()
                except BaseException:
                    # An error the server answered with means nothing was written.
                    outcome.unknown = _lost(conn)
                    raise
            except Exception as exc:
                if _is_operational_error(exc) or not isinstance(exc, TurnoutError):
                    raw.invalidate()  # as the store's transactions do: see there
                raise
            finally:
                if not conn.closed:
                    conn.autocommit = False
                raw.close()

"""The application's transaction: `start`, `start_many`, `send`, `send_by_key` and `send_many`
given `within=` (the application's SQLAlchemy Connection or Session on the engine's database)
write in it rather than in a transaction of their own.

Nothing they write is visible until the application commits, and a rollback leaves no trace.
Each call runs inside a SAVEPOINT, so a call that fails (a business key in use, a rejected
event) leaves the application's transaction as it was. The instance row is read locked (FOR
UPDATE on PostgreSQL; on SQLite the connection takes the write lock with BEGIN IMMEDIATE
unless its transaction has begun already), never guessed as one_trip.py guesses: a guess
that misses is retried in a transaction of the engine's own, which is not to be had here.
What was written reaches the subscribers, the in-process hooks and the metrics once the
application's transaction commits, and is forgotten if it rolls back (or if the savepoint it
was written under is rolled back).
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from statemachines.errors import EventRejected, InstanceNotFound, InvalidInput

from . import runtime
from .changes import NOTIFY_CHANGES
from .checks import check_key, checked
from .counts import REJECTED
from .persist import Applied
from .records import Instance
from .transaction import Transaction

if TYPE_CHECKING:
    from .catalog import Catalog
    from .counts import Counts
    from .store import Store

Result = TypeVar("Result")
log = logging.getLogger("turnout.engine")
_SAVEPOINT = "turnout_call"
# Who a PostgreSQL connection is talking to: two connections that answer alike share the
# database and the schema the engine's tables are in.
_POSTGRES_IDENTITY = (
    "SELECT current_database(), current_schema(), current_setting('port'), "
    "pg_postmaster_start_time()::text"
)


@dataclass
class _Pending:
    """What calls wrote in one application transaction, to publish once it commits; `marks`,
    how much had been written when each savepoint the application holds open began
    (savepoints nest: the last one begun is the first to end)."""

    steps: list[Applied] = field(default_factory=list)
    tallies: list[tuple[str, ...]] = field(default_factory=list)
    marks: list[tuple[int, int]] = field(default_factory=list)


class _Cursor:
    """A DB-API cursor of the application's connection that knows its connection (the
    asyncio drivers' adapted cursors do not), as `Transaction` expects of a cursor."""

    __slots__ = ("connection", "_cursor")

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self._cursor = connection.cursor()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        self._cursor.execute(sql, params)
        return self

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._cursor.executemany(sql, rows)

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._cursor.fetchall())

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)


def joined(within: Any) -> tuple[Session | sa.Connection, sa.Connection]:
    """The application's `within` (a Session or a Connection) and the connection its
    transaction runs on, that transaction begun if it was not."""
    if isinstance(within, Session):
        return within, within.connection()
    if isinstance(within, sa.Connection):
        if within.closed or within.invalidated:
            raise InvalidInput("the connection given as `within` is closed")
        if not within.in_transaction():
            within.begin()  # the application commits it, as any transaction it began
        return within, within
    name = type(within).__name__
    if name in ("AsyncSession", "AsyncConnection"):
        raise InvalidInput(f"an {name} is given as `within` to AsyncEngine's calls, not Engine's")
    raise InvalidInput(
        f"`within` must be the application's SQLAlchemy Connection or Session, not {name}"
    )


def applied_in(result: Any) -> list[Applied]:
    """The steps an operation's result reports: one Applied, a list of them, or the
    decided events of a batch (each with its `applied`, None when it wrote nothing)."""
    if isinstance(result, Applied):
        return [result]
    found = (
        item if isinstance(item, Applied) else getattr(item, "applied", None) for item in result
    )
    return [applied for applied in found if applied is not None]


def send_by_key(
    tx: Transaction,
    catalog: Catalog,
    definition: str,
    key: str,
    event: str,
    data: Any,
    idempotency_key: str | None,
    now: datetime,
) -> Applied:
    """`runtime.send` to the instance of `definition` whose business key is `key`, found in
    the same transaction (it may have been started in it)."""
    found = tx.find_by_key(definition, key)
    if found is None:
        raise InstanceNotFound(f"{definition}/{key}")
    return runtime.send(tx, catalog, found, event, data, idempotency_key, now)


class AppTransactions:
    """The calls' way into the application's transaction (a part of `Engine`)."""

    if TYPE_CHECKING:  # the other parts of `Engine`
        store: Store
        catalog: Catalog
        counts: Counts
        clock: Callable[[], datetime]

        def _publish(self, applied: Applied | None) -> None: ...

    @cached_property
    def _app_pending(self) -> weakref.WeakKeyDictionary[Any, _Pending]:
        """What is pending per application transaction (its Session or Connection)."""
        return weakref.WeakKeyDictionary()

    @cached_property
    def _app_verdicts(self) -> weakref.WeakKeyDictionary[sa.Engine, str]:
        """Per application engine, why its connections are not on this database ('' when
        they are)."""
        return weakref.WeakKeyDictionary()

    @cached_property
    def _app_connections(self) -> weakref.WeakSet[sa.Connection]:
        """The connections whose savepoints this engine listens to (a Session's connection
        changes with each of its transactions)."""
        return weakref.WeakSet()

    def _within(self, within: Any, operation: Callable[..., Result], *args: Any) -> Result:
        """`operation(tx, *args)` in the application's transaction `within`, inside a
        savepoint; what it wrote is published once that transaction commits."""
        owner, connection = joined(within)
        with self.store.translated():
            self._check_same_database(connection)
            with _savepoint(connection, self.store.postgres) as tx:
                result = operation(tx, *args)
        steps = applied_in(result)
        if steps or tx.tallies:
            pending = self._pending_of(owner, connection)
            pending.steps.extend(steps)
            pending.tallies.extend(tx.tallies)
        return result

    def _send_by_key_within(
        self,
        within: Any,
        definition: str,
        key: str,
        event: str,
        data: Any,
        idempotency_key: str | None,
    ) -> Instance:
        """`Engine.send_by_key` in the application's transaction, its arguments checked."""
        check_key(key, "a business key")
        if idempotency_key is not None:
            check_key(idempotency_key, "an idempotency key")
        data = None if data is None else checked(data, "event data")
        args = (definition, key, event, data, idempotency_key, self.clock())
        return self._send_within(within, send_by_key, *args).instance

    def _send_within(self, within: Any, operation: Callable[..., Applied], *args: Any) -> Applied:
        try:
            return self._within(within, operation, self.catalog, *args)
        except EventRejected as exc:
            self.counts.tally((REJECTED, exc.definition or ""))
            raise

    # -- the same database -------------------------------------------------------------------
    def _check_same_database(self, connection: sa.Connection) -> None:
        """InvalidInput unless `connection` is on the engine's database (and, on PostgreSQL,
        sees the engine's tables in its current schema); the verdict is kept per engine."""
        verdicts = self._app_verdicts
        verdict = verdicts.get(connection.engine)
        if verdict is None:
            verdict = verdicts[connection.engine] = self._same_database(connection)
        if verdict:
            raise InvalidInput(verdict)

    def _same_database(self, connection: sa.Connection) -> str:
        """Why `connection` is not on the engine's database; empty when it is."""
        theirs = connection.engine.url
        ours = self.store.url
        given = theirs.render_as_string(hide_password=True)
        refused = f"the connection given as `within` ({given}) is not on the engine's database"
        if theirs.get_backend_name() != ours.get_backend_name():
            return f"{refused} ({self.store.safe_url})"
        if self.store.sqlite:
            mine, other = _sqlite_file(ours.database), _sqlite_file(theirs.database)
            if mine is None or other is None:
                return f"{refused}: an in-memory SQLite database cannot be shared"
            return "" if mine == other else f"{refused} ({self.store.safe_url})"
        cursor = _Cursor(_driver(connection)[0]).execute(_POSTGRES_IDENTITY)
        other_identity = tuple(cursor.fetchone())
        with self.store.core() as conn:
            mine_identity = tuple(conn.execute(sa.text(_POSTGRES_IDENTITY)).one())
        if other_identity != mine_identity:
            return f"{refused} ({self.store.safe_url}, schema {mine_identity[1]})"
        return ""

    # -- publishing at commit ----------------------------------------------------------------
    def _pending_of(self, owner: Session | sa.Connection, connection: sa.Connection) -> _Pending:
        """The pending publications of `owner`'s transaction, its events listened to first."""
        pending = self._app_pending.get(owner)
        mine = weakref.ref(self)
        if pending is None:
            pending = self._app_pending[owner] = _Pending()
            if isinstance(owner, Session):
                sa_event.listen(owner, "after_commit", _on_session_commit(mine))
                sa_event.listen(owner, "after_transaction_end", _on_session_end(mine))
            else:
                sa_event.listen(owner, "commit", _on_connection_commit(mine))
                sa_event.listen(owner, "rollback", _on_rollback(mine, weakref.ref(owner)))
        if connection not in self._app_connections:
            self._app_connections.add(connection)
            _listen_savepoints(connection, mine, weakref.ref(owner))
            # Savepoints the application opened before its first call here: nothing was
            # written under them yet when they began.
            mark = (len(pending.steps), len(pending.tallies))
            pending.marks.extend([mark] * _open_savepoints(connection))
        return pending

    def _published(self, owner: Any) -> None:
        """The application's transaction committed: publish what its calls wrote."""
        pending = self._app_pending.get(owner)
        if pending is None:
            return
        steps, tallies = pending.steps, pending.tallies
        pending.steps, pending.tallies, pending.marks = [], [], []
        if tallies:
            self.counts.committed(tallies)
        kept = getattr(self, "_kept", None)  # one_trip.py's rows: those instances moved on
        if kept is not None:
            for applied in steps:
                kept.forget(applied.instance.id)
        for applied in steps:
            try:
                self._publish(applied)
            except Exception:  # the change has committed: the caller's commit stands
                log.exception("publishing instance %s after commit failed", applied.instance.id)

    def _forgotten(self, owner: Any) -> None:
        """The application's transaction rolled back: nothing of it is to be published."""
        pending = self._app_pending.get(owner)
        if pending is not None:
            pending.steps, pending.tallies, pending.marks = [], [], []

    def _savepoint_event(self, owner: Any, kind: str) -> None:
        pending = self._app_pending.get(owner)
        if pending is None:
            return
        if kind == "begin":
            pending.marks.append((len(pending.steps), len(pending.tallies)))
        elif pending.marks:
            steps, tallies = pending.marks.pop()
            if kind == "rollback":
                del pending.steps[steps:]
                del pending.tallies[tallies:]


def _listen_savepoints(connection: sa.Connection, mine: Any, owned: Any) -> None:
    """Follow the savepoints of `connection`: what was written under one that is rolled back
    is not published."""

    def heard(kind: str) -> Callable[..., None]:
        def on_savepoint(conn: Any, *names: Any) -> None:
            engine, owner = mine(), owned()
            if engine is not None and owner is not None:
                engine._savepoint_event(owner, kind)

        return on_savepoint

    sa_event.listen(connection, "savepoint", heard("begin"))
    sa_event.listen(connection, "rollback_savepoint", heard("rollback"))
    sa_event.listen(connection, "release_savepoint", heard("release"))


def _on_session_commit(mine: Any) -> Callable[[Session], None]:
    def after_commit(session: Session) -> None:
        engine = mine()
        if engine is not None:
            engine._published(session)

    return after_commit


def _on_session_end(mine: Any) -> Callable[[Session, Any], None]:
    def after_transaction_end(session: Session, transaction: Any) -> None:
        engine = mine()
        if engine is not None and transaction.parent is None:  # committed: published already
            engine._forgotten(session)

    return after_transaction_end


def _on_connection_commit(mine: Any) -> Callable[[sa.Connection], None]:
    def commit(connection: sa.Connection) -> None:
        """SQLAlchemy tells of a Connection's commit before it is made: the driver commits
        here, so that only a committed transaction is published (the commit SQLAlchemy makes
        next finds nothing left to commit)."""
        engine = mine()
        if engine is None:
            return
        pending = engine._app_pending.get(connection)
        if pending is None or not (pending.steps or pending.tallies):
            return
        dbapi = _driver(connection)[0]
        try:
            dbapi.commit()
        except Exception as exc:  # a deferred constraint, say: nothing committed
            engine._forgotten(connection)
            error = connection.dialect.loaded_dbapi.Error
            if isinstance(exc, error):  # as SQLAlchemy's own commit would raise it
                raise sa.exc.DBAPIError.instance(None, None, exc, error) from exc
            raise
        engine._published(connection)

    return commit


def _on_rollback(mine: Any, owned: Any) -> Callable[[sa.Connection], None]:
    def rollback(connection: sa.Connection) -> None:
        engine, owner = mine(), owned()
        if engine is not None and owner is not None:
            engine._forgotten(owner)

    return rollback


@contextmanager
def _savepoint(connection: sa.Connection, postgres: bool) -> Iterator[Transaction]:
    """A Transaction on the application's connection, its statements inside a savepoint:
    released when the block ends, rolled back to if it raises."""
    dbapi, driver = _driver(connection)
    if postgres and getattr(driver, "autocommit", False):
        raise InvalidInput(
            "the connection given as `within` is in autocommit mode: it has no transaction "
            "to write in"
        )
    tx = Transaction(_Cursor(dbapi), postgres)
    cursor = tx.cursor
    if not postgres and not driver.in_transaction:
        # SQLite's driver begins a transaction at the first write: take the write lock now,
        # so that what is read is what is written over.
        cursor.execute("BEGIN IMMEDIATE")
    cursor.execute(f"SAVEPOINT {_SAVEPOINT}")
    try:
        yield tx
        if tx.changed and postgres:  # the feed's wake-up, delivered when the work commits
            cursor.execute(NOTIFY_CHANGES)
    except BaseException:
        with suppress(Exception):  # a lost connection: the error that lost it is the news
            cursor.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
            cursor.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
        raise
    cursor.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")


def _open_savepoints(connection: sa.Connection) -> int:
    """How many savepoints are open on `connection` (SQLAlchemy keeps them as a chain)."""
    depth, nested = 0, connection.get_nested_transaction()
    while nested is not None:
        depth += 1
        nested = getattr(nested, "_previous_nested", None)
    return depth


def _driver(connection: sa.Connection) -> tuple[Any, Any]:
    """The DB-API connection under `connection` (an asyncio driver's adapted to DB-API) and
    the driver's own."""
    raw = connection.connection
    return raw.dbapi_connection, raw.driver_connection


def _sqlite_file(database: str | None) -> str | None:
    """The real path of an SQLite database file; None for an in-memory database."""
    if not database or database == ":memory:" or "mode=memory" in database:
        return None
    path = database.removeprefix("file:").split("?")[0]
    return os.path.realpath(path)


async def awaited_within(
    method: Callable[..., Result], engine: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Result:
    """`method(engine, *args, **kwargs)` whose `within` is an AsyncConnection or an
    AsyncSession: run on its synchronous side, in its transaction, on the caller's loop."""
    within = kwargs["within"]

    def call(sync_within: Any) -> Result:
        return method(engine, *args, **{**kwargs, "within": sync_within})

    done: Coroutine[Any, Any, Result] = within.run_sync(call)
    return await done

"""The database: connections, the transactions opened on them, and the reads and writes off
the hot path (listing, deployment). The hot path's SQL is `transaction.py`'s.

Writes run in explicit transactions: `BEGIN IMMEDIATE` on SQLite (one writer at a time,
waiting on a busy timeout instead of failing), pipelined on PostgreSQL, where instance rows
are locked with `FOR UPDATE` and claims take `FOR UPDATE SKIP LOCKED`.
"""

from __future__ import annotations

import json
import os
import select
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

from statemachines.errors import DatabaseUnavailable, InvalidInput, TurnoutError

from .changes import NOTIFY_CHANGES
from .codec import loads, strict_dumps
from .records import HistoryEntry
from .rows import InstanceRow
from .schema import prepare as prepare_schema
from .sqlite_transaction import Outcome as _Outcome
from .sqlite_transaction import SQLiteTransaction
from .tables import definitions_t, history_t, instances_t
from .transaction import Transaction

BUSY_TIMEOUT_SECONDS = 60  # how long an SQLite write waits for another process's lock
READ_BUSY_TIMEOUT_SECONDS = 5  # and a read (rare in WAL mode: reads do not wait for writes)
LAST_ERROR_WINDOW = 1000  # history entries looked through for an instance's last error
_PG_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE
PARKED_CONNECTIONS = 4  # of the pool's 5: deploys and listings take theirs from the pool


class Store:
    """The database of one Engine: its SQLAlchemy engine, its tables, its transactions."""

    def __init__(
        self,
        url: str,
        locking: str = "row",
        busy_timeout: float = BUSY_TIMEOUT_SECONDS,
        schema: str = "check",
    ) -> None:
        if locking not in ("row", "optimistic"):
            raise ValueError(f"locking must be 'row' or 'optimistic', not {locking!r}")
        self.optimistic = locking == "optimistic"
        # How long an SQLite transaction waits for a lock another process holds: a write
        # `busy_timeout` seconds, a read no longer than READ_BUSY_TIMEOUT_SECONDS.
        self.write_wait = busy_timeout
        self.read_wait = min(busy_timeout, READ_BUSY_TIMEOUT_SECONDS)
        try:
            self.url = make_url(url)
        except (sa_exc.ArgumentError, TypeError, ValueError):
            example = "sqlite:///turnout.db or postgresql+psycopg://user@host/db"
            raise InvalidInput(f"{str(url)[:200]!r} is not a database URL ({example})") from None
        self.safe_url = self.url.render_as_string(hide_password=True)
        self.postgres = self.url.get_backend_name() == "postgresql"
        self.sqlite = self.url.get_backend_name() == "sqlite"
        self.unavailable = 0  # DatabaseUnavailable raised so far, for the metrics
        self.engine = self._create_engine()
        # SQLite connections between transactions, kept out of the pool: taking one from the
        # pool and giving it back costs more than a short transaction's own statements. A
        # list's pop and append are atomic, so threads share it safely. (PostgreSQL
        # connections always go back to the pool, whose checkout notices a dropped one.)
        self._parked: list[tuple[Any, Any]] = []  # a connection and its cursor
        prepare_schema(self, schema)  # checked, created or upgraded: see engine/schema

    def _create_engine(self) -> Engine:
        # Every transaction ends in an explicit commit or rollback: no reset needed on return.
        kwargs: dict[str, Any] = {
            "json_serializer": strict_dumps,
            "json_deserializer": loads,
            "pool_reset_on_return": None,
        }
        if self.sqlite:
            kwargs["connect_args"] = {"timeout": self.read_wait, "check_same_thread": False}
            if self.url.database in (None, "", ":memory:"):
                kwargs["poolclass"] = StaticPool
        try:
            engine = sa.create_engine(self.url, **kwargs)
        except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as exc:
            raise DatabaseUnavailable(f"cannot use the database {self.safe_url}: {exc}") from None
        if self.sqlite:
            sa_event.listen(engine, "connect", self._sqlite_connect)
            sa_event.listen(engine, "begin", self._sqlite_begin)
        else:
            sa_event.listen(engine.pool, "checkout", _check_alive)
        return engine

    @contextmanager
    def _translated(self) -> Iterator[_Outcome]:
        """Driver errors of the block translated (`_translate`); the block sets
        `_Outcome.unknown` before it commits."""
        outcome = _Outcome(wait=self.read_wait)  # a new connection waits as a read does
        try:
            yield outcome
        except Exception as exc:
            self._translate(exc, outcome)
            raise

    def _translate(self, exc: Exception, outcome: _Outcome) -> None:
        """The one place driver errors are translated: the database failing or unusable is
        DatabaseUnavailable, said plainly and telling whether the commit was in flight
        (`outcome.unknown`); a value the database refuses (too long for its column, out of
        range, a NUL character) is InvalidInput. Returns when `exc` is to go on as it is."""
        if isinstance(exc, DatabaseUnavailable):
            return
        cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig else exc
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        if _is_data_error(cause):
            raise InvalidInput(f"the database refused a value: {reason}") from None
        if not (
            isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError))
            or _is_operational_error(cause)
            or _is_unusable_file(cause)
        ):
            return
        self.unavailable += 1
        raise DatabaseUnavailable(
            self._why(reason, outcome.wait), outcome_unknown=outcome.unknown
        ) from None

    def _why(self, reason: str, wait: float) -> str:
        """What the database's failure means, said plainly: for an SQLite file, which file and
        what is wrong with it (locked, not a database, not readable or writable)."""
        database = (self.url.database or "").removeprefix("file:").split("?")[0]
        if not self.sqlite or database in ("", ":memory:"):
            return f"the database {self.safe_url} is unavailable: {reason}"
        path = Path(database).absolute()
        folder = path.parent
        beside = f"and SQLite must write {path.name}-wal and {path.name}-shm there"
        if "database is locked" in reason:
            return (
                f"the database file {path} is locked by another process; gave up after "
                f"waiting {wait:g} s"
            )
        if "file is not a database" in reason:
            return f"the file {path} is not an SQLite database"
        if "disk image is malformed" in reason:
            return f"the database file {path} is damaged ({reason})"
        if "unable to open database file" in reason:
            if not folder.is_dir():
                why = f"its directory {folder} does not exist"
            elif path.exists() and not os.access(path, os.R_OK):
                why = "the file is not readable by this process"
            elif not path.exists() and not os.access(folder, os.W_OK | os.X_OK):
                why = f"it does not exist and its directory {folder} is not writable"
            elif not os.access(folder, os.W_OK | os.X_OK):
                why = f"its directory {folder} is not writable, {beside}"
            else:
                why = reason
            return f"cannot open the database file {path}: {why}"
        if "readonly" in reason:
            if not os.access(path, os.W_OK):
                why = "the file is read-only for this process"
            elif not os.access(folder, os.W_OK | os.X_OK):
                why = f"its directory {folder} is not writable, {beside}"
            else:
                why = "it was opened read-only"
            return f"cannot write the database file {path}: {why}"
        return f"the database {self.safe_url} is unavailable: {reason}"

    def transaction(self, read_only: bool = False) -> AbstractContextManager[Transaction]:
        """A transaction on a pooled driver connection: committed when the block ends,
        rolled back if it raises. SQLite takes the write lock up front unless `read_only`.
        """
        if self.postgres:
            return self._postgres_transaction()
        return SQLiteTransaction(self, read_only)

    @contextmanager
    def _postgres_transaction(self) -> Iterator[Transaction]:
        with self._translated() as outcome:
            raw = self.engine.raw_connection()
            try:
                yield from self._pipelined(raw.driver_connection, outcome)
            except Exception as exc:
                # A broken connection must not go back to the pool, nor one whose pipeline
                # an error aborted: the driver may count statements prepared that the
                # server skipped ("prepared statement ... does not exist" on the next use).
                # The engine's own refusals (a rejected event) leave it as good as new.
                if _is_operational_error(exc) or not isinstance(exc, TurnoutError):
                    raw.invalidate()
                raise
            finally:
                raw.close()

    def _sqlite_connect(self, dbapi_connection: Any, record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself, so writers can take the lock up
        # front. Turning a file to WAL takes its lock: that wait is a read's, not a write's.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {round(self.read_wait * 1000)}")
        record.info["busy_wait"] = self.read_wait
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    def _sqlite_begin(self, conn: Connection) -> None:
        read = conn.get_execution_options().get("turnout_read", False)
        self._wait(conn.connection, read)
        conn.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")

    def _wait(self, raw: Any, read: bool) -> float:
        """Set how long the SQLite connection `raw` waits for another process's lock (a
        write longer than a read), when it is not already set so; give that wait."""
        wait = self.read_wait if read else self.write_wait
        if raw.info.get("busy_wait") != wait:
            raw.driver_connection.execute(f"PRAGMA busy_timeout = {round(wait * 1000)}")
            raw.info["busy_wait"] = wait
        return wait

    def _park(self, raw: Any, cursor: Any) -> None:
        if len(self._parked) < PARKED_CONNECTIONS:
            self._parked.append((raw, cursor))
        else:
            raw.close()

    def _pipelined(self, conn: Any, outcome: _Outcome) -> Iterator[Transaction]:
        """A PostgreSQL transaction in pipeline mode: statements whose results are not needed
        at once travel together, so an event costs two round trips (BEGIN with the first
        read; the writes with COMMIT) rather than one per statement.

        BEGIN and COMMIT are sent as statements, in autocommit mode, because the driver
        waits for the server after a BEGIN of its own. The writes travel with the COMMIT: a
        connection lost in that last round trip leaves the outcome unknown (`outcome`).
        """
        conn.autocommit = True
        try:
            with conn.pipeline() as pipeline:
                cursor = conn.cursor()
                cursor.execute("BEGIN")
                yield (tx := Transaction(cursor, True, self.optimistic, pipeline.sync))
                outcome.unknown = True
                cursor.execute("COMMIT")
                if tx.changed:  # the feed's wake-up, outside the step: see changes.py
                    cursor.execute(NOTIFY_CHANGES)
        except BaseException as exc:
            import psycopg

            lost = _lost(conn)
            # An error the server answered with means the transaction was rolled back.
            outcome.unknown = outcome.unknown and lost
            if lost and isinstance(exc, psycopg.Error) and not _is_operational_error(exc):
                # A connection cut mid-pipeline can surface as a driver error about results
                # rather than about the connection: it is the connection's loss all the same.
                raise psycopg.OperationalError(f"the connection was lost ({exc})") from exc
            raise
        finally:
            if not conn.closed:
                if conn.info.transaction_status == _PG_IDLE:
                    conn.autocommit = False
                else:  # not rolled back: the pool's checkout check discards a closed one
                    conn.close()

    def reading(self) -> AbstractContextManager[Transaction]:
        """A read-only transaction (no write lock on SQLite)."""
        return self.transaction(read_only=True)

    @contextmanager
    def _core(self, write: bool = False) -> Iterator[Connection]:
        """A SQLAlchemy connection in a transaction, for statements built with Core."""
        with self._translated() as outcome, self.engine.connect() as conn:
            outcome.wait = self.write_wait if write else self.read_wait  # set at BEGIN
            if not write:
                conn = conn.execution_options(turnout_read=True)
            with conn.begin():
                yield conn
                outcome.unknown = write  # what is left is the COMMIT

    core = _core  # for the Core statements of other modules (versions.py), errors translated
    translated = _translated  # for one_trip.py's statement on a connection of its own

    # definitions
    def save_definition(
        self, name: str, version: int | None, digest: str, source: str, now: datetime
    ) -> tuple[str, int | None, bool]:
        """Store a definition; give (name, version, created), version None when refused.

        The same content as an existing version is that version; new content is the next
        version, unless `version` names an existing version with other content.
        """
        with self._core(write=True) as conn:
            if self.postgres:  # one deployer of a name at a time
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": name})
            rows = conn.execute(
                sa.select(definitions_t.c.version, definitions_t.c.digest)
                .where(definitions_t.c.name == name)
                .order_by(definitions_t.c.version)
            ).all()
            by_version = {int(v): d for v, d in rows}
            if version is not None and version in by_version:
                if by_version[version] == digest:
                    return name, version, False
                return name, None, False
            if version is None:
                for existing, existing_digest in reversed(list(by_version.items())):
                    if existing_digest == digest:
                        return name, existing, False
                version = max(by_version, default=0) + 1
            conn.execute(
                definitions_t.insert().values(
                    name=name, version=version, digest=digest, source=source, created_at=now
                )
            )
            return name, version, True

    def load_definition(self, name: str, version: int | None) -> tuple[int, str] | None:
        query = sa.select(definitions_t.c.version, definitions_t.c.source).where(
            definitions_t.c.name == name
        )
        if version is not None:
            query = query.where(definitions_t.c.version == version)
        query = query.order_by(definitions_t.c.version.desc()).limit(1)
        with self._core() as conn:
            row = conn.execute(query).first()
        return None if row is None else (int(row[0]), str(row[1]))

    def list_definitions(self) -> list[tuple[str, int, str]]:
        latest = (
            sa.select(definitions_t.c.name, sa.func.max(definitions_t.c.version).label("v"))
            .group_by(definitions_t.c.name)
            .subquery()
        )
        query = (
            sa.select(definitions_t.c.name, definitions_t.c.version, definitions_t.c.digest)
            .join(
                latest,
                sa.and_(
                    definitions_t.c.name == latest.c.name, definitions_t.c.version == latest.c.v
                ),
            )
            .order_by(definitions_t.c.name)
        )
        with self._core() as conn:
            return [(str(n), int(v), str(d)) for n, v, d in conn.execute(query)]

    # instances
    def get_instance(self, instance_id: str) -> InstanceRow | None:
        with self._core() as conn:
            row = conn.execute(
                sa.select(*instances_t.c).where(instances_t.c.id == instance_id)
            ).first()
        return None if row is None else InstanceRow(*row)

    def list_instances(
        self,
        *,
        definition: str | None = None,
        state: str | None = None,
        status: str | None = None,
        key: str | None = None,
        limit: int = 100,
        offset: int = 0,
        parent: str | None = None,
        where: list[Any] | None = None,  # search.clauses
    ) -> list[InstanceRow]:
        query = sa.select(*instances_t.c).where(*(where or ()))
        if parent is not None:
            query = query.where(instances_t.c.parent_id == parent)
        if definition is not None:
            query = query.where(instances_t.c.definition == definition)
        if state is not None:
            query = query.where(*in_state(state))
        if status is not None:
            query = query.where(instances_t.c.status == status)
        if key is not None:
            query = query.where(instances_t.c.key == key)
        query = query.order_by(instances_t.c.created_at, instances_t.c.id).limit(limit)
        with self._core() as conn:
            return [InstanceRow(*r) for r in conn.execute(query.offset(offset))]

    def count_by_state(self, definition: str) -> dict[str, int]:
        """How many unfinished instances of `definition` are in each top-level state."""
        query = (
            sa.select(instances_t.c.state, sa.func.count())
            .where(
                instances_t.c.definition == definition,
                instances_t.c.status.in_(("running", "compensating")),
            )
            .group_by(instances_t.c.state)
        )
        with self._core() as conn:
            return {str(s): int(n) for s, n in conn.execute(query)}

    def count_by_active(self, definition: str) -> dict[str, int]:
        """How many unfinished instances of `definition` are in each active atomic state, a
        nested one by its full name (grouped by their active states; a drawing adds them up
        for the states around them)."""
        active = sa.cast(instances_t.c.active, sa.Text)
        query = (
            sa.select(active, sa.func.count())
            .where(
                instances_t.c.definition == definition,
                instances_t.c.status.in_(("running", "compensating")),
            )
            .group_by(active)
        )
        counts: dict[str, int] = {}
        with self._core() as conn:
            for text, number in conn.execute(query):
                for path in set(json.loads(text or "[]")):
                    counts[str(path)] = counts.get(str(path), 0) + int(number)
        return counts

    def count_by_status(self, definition: str) -> dict[str, int]:
        """How many instances of `definition` have each status."""
        query = (
            sa.select(instances_t.c.status, sa.func.count())
            .where(instances_t.c.definition == definition)
            .group_by(instances_t.c.status)
        )
        with self._core() as conn:
            return {str(s): int(n) for s, n in conn.execute(query)}

    def transition_counts(self, definition: str) -> dict[tuple[str, str | None, str], int]:
        """How often each (from_state, event, to_state) step was taken by `definition`'s
        instances, counted from their history."""
        h = history_t
        query = (
            sa.select(h.c.from_state, h.c.event, h.c.to_state, sa.func.count())
            .join(instances_t, instances_t.c.id == h.c.instance_id)
            .where(
                instances_t.c.definition == definition,
                h.c.kind.in_(("event", "task", "timer", "always", "call")),
                h.c.from_state.is_not(None),
                h.c.to_state.is_not(None),
            )
            .group_by(h.c.from_state, h.c.event, h.c.to_state)
        )
        with self._core() as conn:
            return {(str(f), e, str(t)): int(n) for f, e, t, n in conn.execute(query)}

    def history(self, instance_id: str, definition: str = "") -> list[HistoryEntry]:
        query = (
            sa.select(
                history_t.c.seq,
                history_t.c.at,
                history_t.c.kind,
                history_t.c.event,
                history_t.c.from_state,
                history_t.c.to_state,
                history_t.c.data,
            )
            .where(history_t.c.instance_id == instance_id)
            .order_by(history_t.c.seq)
        )
        with self._core() as conn:
            return [
                HistoryEntry(*row, instance_id=instance_id, definition=definition)
                for row in conn.execute(query)
            ]

    def last_error(self, instance_id: str, history_seq: int) -> HistoryEntry | None:
        """The newest history entry of the instance that reports an error (an `error`, a
        `retry`, a task's `failed`), looked for among its last LAST_ERROR_WINDOW entries: a
        range of the primary key, read backwards."""
        h = history_t
        query = (
            sa.select(h.c.seq, h.c.at, h.c.kind, h.c.event, h.c.from_state, h.c.to_state, h.c.data)
            .where(
                h.c.instance_id == instance_id,
                h.c.seq > history_seq - LAST_ERROR_WINDOW,
                sa.or_(
                    h.c.kind.in_(("error", "retry")),
                    sa.and_(h.c.kind.in_(("task", "call")), h.c.event == "failed"),
                ),
            )
            .order_by(h.c.seq.desc())
            .limit(1)
        )
        with self._core() as conn:
            row = conn.execute(query).first()
        return None if row is None else HistoryEntry(*row, instance_id=instance_id)

    def ping(self) -> None:
        """Raise DatabaseUnavailable unless the database answers."""
        with self._core() as conn:
            conn.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        while self._parked:
            self._parked.pop()[0].close()
        self.engine.dispose()


def in_state(path: str) -> list[Any]:
    """Conditions for an instance in the state at `path` (a full name): its top-level state
    is the path's first name and, for a nested path, one of its active states is the path
    or lies inside it (`active` keeps the full names of the active atomic states)."""
    top = path.partition(".")[0]
    conditions: list[Any] = [instances_t.c.state == top]
    if "." in path:
        text = sa.cast(instances_t.c.active, sa.Text)
        quoted = json.dumps(path)  # names are letters, digits, '_', '-' and '.'
        pattern = quoted.replace("_", "\\_")
        conditions.append(
            sa.or_(
                text.like(f"%{pattern}%", escape="\\"),
                text.like(f"%{pattern[:-1]}.%", escape="\\"),
            )
        )
    return conditions


def _is_data_error(exc: BaseException) -> bool:
    """A value the database refused: too long for its column, out of range, a NUL character."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(exc, psycopg.DataError)


def _is_unusable_file(exc: BaseException) -> bool:
    """SQLite's answer when the file is something else (a text file, say) or damaged."""
    import sqlite3

    return isinstance(exc, sqlite3.DatabaseError) and (
        "file is not a database" in str(exc) or "disk image is malformed" in str(exc)
    )


def _is_operational_error(exc: Exception) -> bool:
    """A driver error raised on the direct path: the connection or the server failed."""
    import sqlite3

    if isinstance(exc, sqlite3.OperationalError):
        return True
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))


def _lost(conn: Any) -> bool:
    """Roll back what a failed pipelined transaction began; True when the connection is gone.

    The ROLLBACK is sent even when the driver believes no transaction is open: after a
    connection is cut mid-pipeline that belief cannot be trusted, and a failing ROLLBACK
    is what tells a lost connection from a refused statement.
    """
    import psycopg

    if conn.closed:
        return True
    try:
        conn.execute("ROLLBACK")
    except psycopg.Error:
        return True
    return bool(conn.closed)


def _check_alive(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Refuse a pooled PostgreSQL connection the server has dropped, without a round trip.

    An idle connection has nothing to read; if its socket is readable, the server has sent
    its goodbye (a restart, say) or closed it, and the pool opens a fresh one instead.
    """
    try:
        closed = dbapi_connection.closed or dbapi_connection.broken
        readable = closed or bool(select.select([dbapi_connection.fileno()], [], [], 0)[0])
    except (OSError, ValueError):
        readable = True
    if readable:
        raise sa_exc.DisconnectionError("the server closed this connection")

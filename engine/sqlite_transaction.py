"""An SQLite transaction as `Store.transaction()` opens it: a parked connection (or a new one),
BEGIN IMMEDIATE (BEGIN when only reading), COMMIT when the block ends, ROLLBACK if it raises.

A class rather than a generator: every event opens one, and a context manager made of two
methods costs a fraction of two nested generator-based ones.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from .transaction import Transaction


@dataclass
class Outcome:
    """How far a transaction got: `unknown` once its COMMIT may have reached the server;
    `wait`, how long SQLite was told to wait for a lock at that point."""

    unknown: bool = False
    wait: float = 0.0


class SQLiteTransaction:
    """`with SQLiteTransaction(store, read_only) as tx:` — the block's statements in one
    transaction. Driver errors are translated by `store._translate` as everywhere else; a
    connection left broken is dropped, any other goes back to the store's parked ones."""

    __slots__ = ("store", "read_only", "outcome", "parked")

    def __init__(self, store: Any, read_only: bool) -> None:
        self.store = store
        self.read_only = read_only
        self.outcome = Outcome(wait=store.read_wait)  # a new connection waits as a read does
        self.parked: tuple[Any, Any] | None = None  # the connection and its cursor

    def __enter__(self) -> Transaction:
        store = self.store
        try:
            try:
                raw, cursor = store._parked.pop()
            except IndexError:
                raw, cursor = store.engine.raw_connection(), None
            try:
                if cursor is None:
                    cursor = raw.driver_connection.cursor()
                self.outcome.wait = store._wait(raw, self.read_only)
                cursor.execute("BEGIN" if self.read_only else "BEGIN IMMEDIATE")
            except BaseException as exc:
                _release(store, raw, cursor, exc)
                raise
        except Exception as exc:
            store._translate(exc, self.outcome)
            raise
        self.parked = (raw, cursor)
        return Transaction(cursor, False)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self.parked is not None
        raw, cursor = self.parked
        store = self.store
        try:
            try:
                if error is None:
                    self.outcome.unknown = not self.read_only  # a failing COMMIT may not undo it
                    raw.driver_connection.commit()
                else:
                    raw.driver_connection.rollback()
            except BaseException as exc:
                _release(store, raw, cursor, exc)
                raise
        except Exception as exc:
            store._translate(exc, self.outcome)
            raise
        _release(store, raw, cursor, error)
        if isinstance(error, Exception):
            store._translate(error, self.outcome)  # raises what it means, if it means more


def _release(store: Any, raw: Any, cursor: Any, error: BaseException | None) -> None:
    """Park the connection for the next transaction, unless `error` leaves it broken (a
    broken connection must not be used again) or is not an error of the program's own
    (an interruption): then it is closed."""
    if cursor is not None and (
        error is None
        or (isinstance(error, Exception) and not isinstance(error, sqlite3.OperationalError))
    ):
        store._park(raw, cursor)  # committed or rolled back: as good as new
        return
    if isinstance(error, sqlite3.OperationalError):
        raw.invalidate()
    raw.close()

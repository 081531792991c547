"""The change feed as the engine offers it (a part of `Engine`): read it from any process,
keep a named reader's place in it, prune what every reader has passed, and wait for it to
move without polling (PostgreSQL's LISTEN/NOTIFY; on SQLite, this process's own commits).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from statemachines.errors import InvalidInput

from . import changes
from .changes import Change
from .checks import check_key
from .store import Store

MAX_FEED_LIMIT = 10_000
log = logging.getLogger("turnout.engine")


class Listener:
    """Wakes a reader waiting for the feed to move.

    On PostgreSQL a connection of its own LISTENs on the channel every committing step
    NOTIFYs; on either database, a commit made through this engine wakes it at once. Waiting
    is a hint, not a promise: a reader reads the feed after every wait, woken or not.
    With `listen` False nothing LISTENs: only this engine's own commits wake a reader.
    """

    def __init__(self, store: Store, listen: bool = True) -> None:
        self.store = store
        self.listen = listen
        self._poked = threading.Event()
        self._using = threading.Lock()
        self._connection: Any = None
        self._schema = ""

    def poke(self) -> None:
        if not self._poked.is_set():  # set once until a waiter takes it: cheap on every step
            self._poked.set()

    def wait(self, timeout: float) -> bool:
        """Until a change commits (True) or `timeout` seconds pass (False)."""
        if self._poked.is_set():
            self._poked.clear()
            return True
        if not (self.store.postgres and self.listen) or not self._using.acquire(blocking=False):
            woke = self._poked.wait(timeout)
            self._poked.clear()
            return woke
        try:
            return self._listen(timeout)
        finally:
            self._using.release()

    def _listen(self, timeout: float) -> bool:
        import psycopg

        try:
            if self._connection is None or self._connection.closed:
                url = self.store.engine.url.set(drivername="postgresql")
                self._connection = psycopg.connect(
                    url.render_as_string(hide_password=False), autocommit=True
                )
                self._schema = self._connection.execute("SELECT current_schema()").fetchone()[0]
                self._connection.execute(f"LISTEN {changes.CHANNEL}")
            deadline = time.monotonic() + timeout
            woke = False
            while not woke and (left := deadline - time.monotonic()) > 0:
                for notice in self._connection.notifies(timeout=left, stop_after=1):
                    woke = notice.payload == self._schema
            # Notices that came together are one wake-up.
            for _ in self._connection.notifies(timeout=0):
                pass
            return woke or self._poked.is_set()
        except psycopg.Error as exc:
            log.warning("listening for changes failed (%s); waiting instead", exc)
            self.close()
            return self._poked.wait(timeout)

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None


class ChangeFeed:
    """The engine's change feed calls (a part of `Engine`)."""

    store: Store
    clock: Callable[[], datetime]
    listener: Listener
    change_retention: timedelta | None

    def changes(
        self, after: int = 0, limit: int = 100, *, definitions: list[str] | None = None
    ) -> list[Change]:
        """The committed changes after position `after` (0: from the first kept), oldest
        first, at most `limit`; only those of `definitions` when given.

        The feed is in commit order: a change read here never has a change before it that
        a later read returns, and an instance's changes come in revision order. Pass the
        last change's `position` as `after` to read on.
        """
        if not 0 < limit <= MAX_FEED_LIMIT or after < 0:
            raise InvalidInput(f"limit must be between 1 and {MAX_FEED_LIMIT} and after at least 0")
        if self.store.postgres:
            with self.store.core(write=True) as conn:
                # Filtered, a page may need any number of rows placed: place them all.
                changes.place(conn, None if definitions else after, limit)
        with self.store.core() as conn:
            return changes.read(conn, after, limit, definitions)

    def latest_change(self) -> int:
        """The position of the newest committed change (0 when there is none)."""
        if self.store.postgres:
            with self.store.core(write=True) as conn:
                changes.place(conn)
        with self.store.core() as conn:
            return changes.latest(conn)

    def change_cursor(self, name: str) -> int | None:
        """Where the named reader of the feed stopped (None: it never saved a place)."""
        check_key(name, "a reader's name")
        with self.store.core() as conn:
            return changes.cursor(conn, name)

    def save_change_cursor(self, name: str, position: int) -> None:
        """Record that the named reader has handled every change up to `position`. A
        cursor only moves forward; pruning keeps every change some reader has not passed."""
        check_key(name, "a reader's name")
        with self.store.core(write=True) as conn:
            changes.save_cursor(conn, name, position, self.clock())

    def drop_change_cursor(self, name: str) -> bool:
        """Forget a reader (its changes may then be pruned); whether it was known."""
        with self.store.core(write=True) as conn:
            return changes.drop_cursor(conn, name)

    def prune_changes(
        self, older_than: timedelta | float, *, batch: int = 1000, batches: int | None = None
    ) -> int:
        """Delete the changes written more than `older_than` ago that every named reader
        has passed, `batch` per transaction (short locks while workers run), at most
        `batches` transactions (None: until none is left); the count. Workers do it by
        themselves with the engine's `change_retention`."""
        age = older_than if isinstance(older_than, timedelta) else timedelta(seconds=older_than)
        before = self.clock() - age
        total = 0
        done = 0
        while batches is None or done < batches:
            with self.store.core(write=True) as conn:
                gone = changes.prune(conn, before, batch)
            total += gone
            done += 1
            if gone < batch:
                break
        return total

    def wait_for_changes(self, timeout: float) -> bool:
        """Block until a change commits (True) or `timeout` seconds pass (False): on
        PostgreSQL any process's change wakes it (LISTEN/NOTIFY); on SQLite only this
        engine's own."""
        return self.listener.wait(timeout)

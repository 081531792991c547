"""Schedules: instances started on a cron expression or a fixed interval (a part of `Engine`).

Exactly one start per tick, whatever the number of workers: a worker locks a due schedule's
row (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so other workers pass it by; SQLite: the write
lock every transaction takes), starts the tick's instance in that same transaction and moves
the row to its next tick. The instance's business key is derived from the tick
(`schedule:<name>:<tick in UTC>`): should the outcome of a commit be unknown and the round
be run again, the key is found and nothing is started twice.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from statemachines.errors import DatabaseUnavailable, InvalidInput, TurnoutError

from . import runtime
from .catalog import Catalog, Version
from .checks import check_start, check_version
from .persist import Applied
from .schedule_times import (
    CATCH_UPS,
    MAX_CATCH_UP,
    MISFIRE_SECONDS,
    OVERLAPS,
    Schedule,
    ScheduleExists,
    ScheduleNotFound,
    Ticking,
    check_choice,
    check_cron,
    check_name,
    parse_every,
    tick_key,
    zone_of,
)
from .store import Store
from .tables import schedules_t
from .transaction import Transaction, driver_sql

Result = TypeVar("Result")
log = logging.getLogger("turnout.schedules")
UNFINISHED = ("running", "compensating")
MAX_ERROR_LENGTH = 2000
MAX_START_AHEAD = timedelta(days=36525)
_FIELDS = ", ".join(column.name for column in schedules_t.c)
_DUE = "NOT paused AND (next_tick_at <= ? OR buffered_tick IS NOT NULL)"
SQL = {
    # A held tick is worth a lock only once the instance it waits for has finished.
    "due": "SELECT name FROM turnout_schedules s WHERE NOT paused AND (next_tick_at <= ? OR "
    "(buffered_tick IS NOT NULL AND NOT EXISTS (SELECT 1 FROM turnout_instances i "
    "WHERE i.id = s.last_instance_id AND i.status IN ('running', 'compensating')))) "
    "ORDER BY next_tick_at LIMIT ?",
    "lock": f"SELECT {_FIELDS} FROM turnout_schedules WHERE name = ? AND {_DUE}",
    "status": "SELECT status FROM turnout_instances WHERE id = ?",
    "advance": "UPDATE turnout_schedules SET next_tick_at = ?, last_tick_at = ?, "
    "last_instance_id = ?, buffered_tick = ?, last_error = ?, updated_at = ? WHERE name = ?",
    "failed": "UPDATE turnout_schedules SET next_tick_at = ?, buffered_tick = NULL, "
    "last_error = ?, updated_at = ? WHERE name = ?",
    "next": "SELECT MIN(next_tick_at) FROM turnout_schedules WHERE NOT paused",
}


def _sql(tx: Transaction, name: str) -> str:
    text = driver_sql(SQL[name], tx.postgres)
    if name == "lock" and tx.postgres:
        text += " FOR UPDATE SKIP LOCKED"  # another worker has it: this one passes it by
    return text


def _read(tx: Transaction, name: str, params: tuple[Any, ...]) -> Any:
    cursor = tx.cursor.connection.cursor()
    cursor.execute(_sql(tx, name), params)
    return cursor


def _time(tx: Transaction, value: datetime | None) -> Any:
    if value is None:
        return None
    naive = value.astimezone(UTC).replace(tzinfo=None)
    return naive if tx.postgres else naive.isoformat(" ", "microseconds")


def _schedule(tx: Transaction, row: Any) -> Schedule:
    values = dict(zip([column.name for column in schedules_t.c], row, strict=True))
    for column in ("next_tick_at", "last_tick_at", "buffered_tick", "created_at", "updated_at"):
        values[column] = tx.read_time(values[column])
    values["data"] = tx.read_json(values["data"])
    values["paused"] = bool(values["paused"])
    return Schedule(**values)


def next_tick(tx: Transaction) -> datetime | None:
    """The earliest next tick of the schedules not paused (None: there are none)."""
    found = _read(tx, "next", ()).fetchone()
    return None if found is None else tx.read_time(found[0])


def due_names(tx: Transaction, now: datetime, limit: int) -> list[str]:
    """The schedules with a tick due by `now`, or a tick held back by `buffer_one`."""
    return [str(row[0]) for row in _read(tx, "due", (_time(tx, now), limit)).fetchall()]


def run_schedule(tx: Transaction, catalog: Catalog, name: str, now: datetime) -> list[Applied]:
    """Lock schedule `name` if it is still due, start the instances its due ticks call for
    (catch-up and overlap decide), and move it on to its next tick; the instances started."""
    found = _read(tx, "lock", (name, _time(tx, now))).fetchone()
    if found is None:  # another worker had it, or has done it
        return []
    row = _schedule(tx, found)
    ticking = Ticking(row.cron, row.every_seconds, row.timezone)
    chosen: list[datetime] = []
    following = row.next_tick_at
    if row.next_tick_at <= now:
        most = MAX_CATCH_UP if row.catch_up == "all" else 1
        chosen, _ = ticking.due(row.next_tick_at, now, most)
        following = ticking.next_after(chosen[-1] if chosen else row.next_tick_at, now)
        if row.catch_up == "none":
            late = timedelta(seconds=MISFIRE_SECONDS)
            chosen = [tick for tick in chosen if now - tick <= late]
    held = [row.buffered_tick] if row.buffered_tick is not None else []
    running = row.overlap != "allow" and _unfinished(tx, row.last_instance_id)
    buffered: datetime | None = None
    last_tick, last_id = row.last_tick_at, row.last_instance_id
    started: list[Applied] = []
    for tick in held + chosen:
        if row.overlap == "allow" or not running:
            key = tick_key(row.name, tick)
            existing = tx.find_by_key(row.definition, key)
            if existing is not None:  # started by a round whose commit went unreported
                last_id, running = existing, _unfinished(tx, existing)
            else:
                applied = runtime.start(
                    tx, catalog, row.definition, row.version, dict(row.data), key, now
                )
                started.append(applied)
                last_id, running = applied.instance.id, applied.instance.status in UNFINISHED
            last_tick = tick
        elif row.overlap == "buffer_one" and buffered is None:
            buffered = tick
    if following == row.next_tick_at and buffered == row.buffered_tick and not started:
        return []  # still waiting for the instance before the buffered tick: nothing to write
    # A start made (or found made) clears the error of an earlier failed one.
    error = None if started or last_id != row.last_instance_id else row.last_error
    params = (following, last_tick, last_id, buffered, error, now, row.name)
    tx.cursor.execute(_sql(tx, "advance"), tuple(_encoded(tx, params)))
    return started


def record_failure(tx: Transaction, name: str, error: str, now: datetime) -> None:
    """A start the schedule cannot make (its definition gone, its data refused by a newer
    version's input schema): the due ticks are dropped and the error kept on the row, so
    the workers do not try again on every round."""
    found = _read(tx, "lock", (name, _time(tx, now))).fetchone()
    if found is None:
        return
    row = _schedule(tx, found)
    ticking = Ticking(row.cron, row.every_seconds, row.timezone)
    following = ticking.next_after(row.next_tick_at, now)
    params = (following, error[:MAX_ERROR_LENGTH], now, name)
    tx.cursor.execute(_sql(tx, "failed"), tuple(_encoded(tx, params)))


def _encoded(tx: Transaction, values: tuple[Any, ...]) -> list[Any]:
    return [_time(tx, value) if isinstance(value, datetime) else value for value in values]


def _unfinished(tx: Transaction, instance_id: str | None) -> bool:
    if instance_id is None:
        return False
    found = _read(tx, "status", (instance_id,)).fetchone()
    return found is not None and found[0] in UNFINISHED


class Schedules:
    """Schedules: add, list, pause, resume and delete them; `run_due_schedules` is what each
    worker round calls (a part of `Engine`)."""

    if TYPE_CHECKING:  # the other parts of `Engine`
        store: Store
        catalog: Catalog
        clock: Callable[[], datetime]

        def _version(self, name: str, version: int | None) -> Version: ...

        def _apply(self, operation: Callable[..., Result], *args: Any) -> Result: ...

        def _publish(self, applied: Applied | None) -> None: ...

    def add_schedule(
        self,
        name: str,
        definition: str,
        *,
        cron: str | None = None,
        every: str | float | timedelta | None = None,
        timezone: str = "UTC",
        data: dict[str, Any] | None = None,
        version: int | None = None,
        overlap: str = "skip",
        catch_up: str = "last",
        start_at: datetime | None = None,
    ) -> Schedule:
        """Start an instance of `definition` (`version`, else the latest at each start) with
        `data` on every tick of `cron` (evaluated in `timezone`, an IANA name) or `every`
        interval (seconds, a timedelta or text such as `10m`).

        `overlap` when the instance of the last tick is unfinished: `skip` the tick, `allow`
        it, or `buffer_one` (start it once that instance has finished; one tick held at
        most). `catch_up` after downtime: `none` (ticks more than a minute late are
        dropped), `last` (only the newest is started) or `all` (every one, at most the 100
        newest). The first tick is the first at or after `start_at`, else the first after
        now (an interval's: now plus the interval). InvalidInput for anything that cannot
        be; DefinitionNotFound; ScheduleExists.
        """
        check_name(name)
        if (cron is None) == (every is None):
            raise InvalidInput("give a schedule either a cron expression or an interval")
        zone_of(timezone)
        check_choice(overlap, OVERLAPS, "overlap")
        check_choice(catch_up, CATCH_UPS, "catch-up")
        if start_at is not None and (not isinstance(start_at, datetime) or start_at.tzinfo is None):
            raise InvalidInput("start_at must be a datetime with a time zone")
        check_version(definition, version)
        checked, _ = check_start(data, None)
        self._version(definition, version).check_input(checked)
        expression = None if cron is None else check_cron(cron)
        seconds = None if every is None else parse_every(every)
        ticking = Ticking(expression, seconds, timezone)
        now = self.clock()
        if start_at is not None and start_at - now > MAX_START_AHEAD:
            raise InvalidInput("start_at must be at most 100 years from now")
        try:
            if start_at is not None:
                first = ticking.first_at_or_after(start_at.astimezone(UTC))
            else:
                first = ticking.after(now)
        except (OverflowError, ValueError):  # no tick before the end of the calendar
            raise InvalidInput(f"the schedule {expression or ''} never ticks") from None
        schedule = Schedule(
            name=name,
            definition=definition,
            version=version,
            data=checked,
            cron=expression,
            every_seconds=seconds,
            timezone=timezone,
            overlap=overlap,
            catch_up=catch_up,
            paused=False,
            next_tick_at=first,
            last_tick_at=None,
            last_instance_id=None,
            buffered_tick=None,
            last_error=None,
            created_at=now,
            updated_at=now,
        )
        try:
            with self.store.core(write=True) as conn:
                if self._find(conn, name) is not None:
                    raise ScheduleExists(name)
                conn.execute(schedules_t.insert().values(**dataclasses.asdict(schedule)))
        except sa_exc.IntegrityError:  # added at the same moment by another caller
            raise ScheduleExists(name) from None
        return schedule

    def schedules(self) -> list[Schedule]:
        """Every schedule, by name."""
        with self.store.core() as conn:
            rows = conn.execute(schedules_t.select().order_by(schedules_t.c.name)).all()
        return [Schedule(**row._asdict()) for row in rows]

    def schedule(self, name: str) -> Schedule:
        """The schedule `name`; ScheduleNotFound if there is none."""
        with self.store.core() as conn:
            found = self._find(conn, name)
        if found is None:
            raise ScheduleNotFound(name)
        return found

    def pause_schedule(self, name: str) -> Schedule:
        """Stop starting instances on the schedule's ticks until it is resumed."""
        return self._change(name, paused=True)

    def resume_schedule(self, name: str) -> Schedule:
        """Start instances again from the schedule's next tick; the ticks that passed while
        it was paused are not caught up."""
        return self._change(name, paused=False)

    def delete_schedule(self, name: str) -> None:
        """Delete the schedule; the instances it started are left as they are."""
        with self.store.core(write=True) as conn:
            gone = conn.execute(schedules_t.delete().where(schedules_t.c.name == name))
        if gone.rowcount == 0:
            raise ScheduleNotFound(name)

    def run_due_schedules(self, limit: int = 100) -> int:
        """Start the instances due by the engine's clock, for at most `limit` schedules;
        return how many were started. Any number of workers may call it at once: each tick
        starts one instance."""
        now = self.clock()
        with self.store.reading() as tx:
            names = due_names(tx, now, limit)
        started = 0
        for name in names:
            try:
                applied = self._apply(run_schedule, self.catalog, name, now)
            except DatabaseUnavailable:
                raise
            except TurnoutError as exc:
                log.warning("schedule %r could not start its instance: %s", name, exc)
                self._apply(record_failure, name, f"{type(exc).__name__}: {exc}", now)
                continue
            for one in applied:
                self._publish(one)
            started += len(applied)
        return started

    def _find(self, conn: sa.Connection, name: str) -> Schedule | None:
        query = schedules_t.select().where(schedules_t.c.name == name)
        row = conn.execute(query).first()
        return None if row is None else Schedule(**row._asdict())

    def _change(self, name: str, *, paused: bool) -> Schedule:
        now = self.clock()
        with self.store.core(write=True) as conn:
            found = self._find(conn, name)
            if found is None:
                raise ScheduleNotFound(name)
            changes: dict[str, Any] = {"paused": paused, "updated_at": now}
            if not paused and found.next_tick_at <= now:
                ticking = Ticking(found.cron, found.every_seconds, found.timezone)
                changes["next_tick_at"] = ticking.next_after(found.next_tick_at, now)
            conn.execute(schedules_t.update().where(schedules_t.c.name == name).values(**changes))
        return dataclasses.replace(found, **changes)

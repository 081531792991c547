"""Retention (a part of `Engine`): delete finished instances with their history, tasks,
timers and idempotency keys, in bounded batches, optionally archiving each one first.

Finished means succeeded, failed or cancelled. A failed instance can still be redriven; once
purged it cannot, so a retention shorter than the time it takes someone to look at a failure
loses it. Running (and compensating) instances are never touched, and neither is a finished
instance whose parent, or one of whose children, is unfinished: the parent may still read
or redrive it. Each batch is one short transaction that reads the next instances of each
status last changed before the cutoff, oldest started first (an index range scan; on
PostgreSQL `FOR UPDATE SKIP LOCKED`, so a row another transaction holds is skipped, not
waited for), sets aside those with an unfinished parent or child, deletes the rest with
their status checked again, then their rows in the other tables. The change feed and the
webhook delivery log keep their own retention. No index covers `updated_at`: when few of a
status's instances are old enough, a batch reads past the younger ones to find them.

The archive is JSON lines, one line per instance: `{"instance": {...its row...},
"history": [...its entries...]}`; `read_archive` reads it back. A batch's lines are written
and flushed before its transaction commits, so a crash never loses an unarchived instance;
it may leave one archived twice (the batch then runs again).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TextIO

import sqlalchemy as sa

from statemachines.errors import InvalidInput
from statemachines.steps import FINISHED, Status

from .exports import _histories
from .persist import snapshot
from .records import HistoryEntry, Instance
from .rows import InstanceRow
from .tables import history_t, idempotency_t, instances_t, priorities_t, tasks_t, timers_t

if TYPE_CHECKING:
    from statemachines import Definition

    from .records import Deployment
    from .store import Store

MAX_PURGE_BATCH = 10_000
FINISHED_STATUSES = tuple(sorted(status.value for status in FINISHED))
# The tables whose rows go with their instance, as a PurgeResult counts them.
OWNED: tuple[tuple[str, sa.Table], ...] = (
    ("history", history_t),
    ("tasks", tasks_t),
    ("timers", timers_t),
    ("idempotency", idempotency_t),
)


@dataclass(frozen=True)
class PurgeResult:
    """What a purge deleted (a dry run: would delete): instances and their rows in each
    table, in `batches` transactions."""

    instances: int = 0
    history: int = 0
    tasks: int = 0
    timers: int = 0
    idempotency: int = 0
    batches: int = 0
    dry_run: bool = False

    def __add__(self, other: PurgeResult) -> PurgeResult:
        counts = {
            item.name: getattr(self, item.name) + getattr(other, item.name)
            for item in fields(self)
            if item.name != "dry_run"
        }
        return PurgeResult(**counts, dry_run=self.dry_run)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ArchivedInstance:
    """One instance as an archive keeps it: as `Engine.get` showed it (without `last_error`
    and `children`), its machine data, and its whole history, oldest entry first."""

    instance: Instance
    machine: dict[str, Any]
    history: list[HistoryEntry]


def read_archive(source: str | Path | TextIO) -> Iterator[ArchivedInstance]:
    """The instances a purge archived to `source` (a path or an open text file), in the
    order they were written."""
    with _opened(source, "r") as stream:
        for number, line in enumerate(stream or (), 1):
            if not line.strip():
                continue
            try:
                yield _archived(json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                message = f"line {number} of the archive is not an instance: {exc}"
                raise InvalidInput(message) from None


def _archived(data: dict[str, Any]) -> ArchivedInstance:
    row = dict(data["instance"])
    for name in ("created_at", "updated_at"):
        row[name] = datetime.fromisoformat(row[name])
    instance_row = InstanceRow(**row)
    history = [
        HistoryEntry(
            entry["seq"],
            datetime.fromisoformat(entry["at"]),
            entry["kind"],
            entry["event"],
            entry["from_state"],
            entry["to_state"],
            entry["data"],
            instance_id=instance_row.id,
            definition=instance_row.definition,
        )
        for entry in data["history"]
    ]
    return ArchivedInstance(snapshot(instance_row), dict(instance_row.machine), history)


def _archive(conn: sa.Connection, archive: IO[str], rows: list[InstanceRow]) -> None:
    """Write `rows` with their histories to `archive`, on disk before the deletes commit."""
    histories = _histories(conn, [row.id for row in rows])
    for row in rows:
        archive.write(_archive_line(row, histories.get(row.id, [])))
    archive.flush()
    with contextlib.suppress(OSError, ValueError):  # a stream with no file behind it
        os.fsync(archive.fileno())


def _archive_line(row: InstanceRow, history: list[HistoryEntry]) -> str:
    fields_ = asdict(row)
    for name in ("created_at", "updated_at"):
        fields_[name] = fields_[name].isoformat()
    line = {"instance": fields_, "history": [entry.to_json() for entry in history]}
    return json.dumps(line, ensure_ascii=False, default=str) + "\n"


@contextlib.contextmanager
def _opened(target: str | Path | TextIO | None, mode: str) -> Iterator[IO[str] | None]:
    if target is None:
        yield None
    elif isinstance(target, str | Path):
        with open(target, mode, encoding="utf-8") as stream:
            yield stream
    else:
        yield target


def _statuses(status: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    if status is None:
        return FINISHED_STATUSES
    wanted = [status] if isinstance(status, str) else list(status)
    for name in wanted:
        if name in (Status.RUNNING, Status.COMPENSATING):
            raise InvalidInput(f"status {name!r}: only finished instances are purged")
        if name not in FINISHED_STATUSES:
            raise InvalidInput(f"status {name!r}: choose from {', '.join(FINISHED_STATUSES)}")
    if not wanted:
        raise InvalidInput("status: name at least one of " + ", ".join(FINISHED_STATUSES))
    return tuple(sorted(set(wanted)))


class Pages:
    """Where a purge has got to in each status's instances, oldest started first: each
    batch reads on after the last instance the one before read, so those kept (a parent
    or a child unfinished) are passed over, not read again and again."""

    def __init__(self, statuses: tuple[str, ...], before: datetime, definition: str | None):
        self.left = list(statuses)  # the statuses not read to the end yet
        self.before = before
        self.definition = definition
        self.after: dict[str, tuple[datetime, str]] = {}

    def take(self, conn: sa.Connection, batch: int, lock: bool) -> list[InstanceRow]:
        """Up to `batch` more instances that finished before the cutoff, read (and with
        `lock`, locked, skipping those another transaction holds) in index order."""
        rows: list[InstanceRow] = []
        while self.left and len(rows) < batch:
            status = self.left[0]
            wanted = batch - len(rows)
            query = self._query(status).limit(wanted)
            if lock:
                query = query.with_for_update(skip_locked=True, of=instances_t)
            found = [InstanceRow(*row) for row in conn.execute(query)]
            if found:
                self.after[status] = (found[-1].created_at, found[-1].id)
            if len(found) < wanted:
                self.left.pop(0)
            rows += found
        return rows

    def _query(self, status: str) -> sa.Select[Any]:
        """With the status (and the definition), an index range scan in the index's order;
        the parents and children are looked at afterwards, for the few rows read (`kept`)."""
        table = instances_t
        query = sa.select(*table.c).where(
            table.c.status == status, table.c.updated_at < self.before
        )
        if self.definition is not None:
            query = query.where(table.c.definition == self.definition)
        if status in self.after:
            query = query.where(sa.tuple_(table.c.created_at, table.c.id) > self.after[status])
        return query.order_by(table.c.created_at, table.c.id)


def kept(conn: sa.Connection, rows: list[InstanceRow]) -> set[str]:
    """The ids among `rows` that must stay: those whose parent, or one of whose children,
    is unfinished (by primary key and by the parent index, whatever the table's size)."""
    table = instances_t
    parent = instances_t.alias("parent")
    with_parent = [row.id for row in rows if row.parent_id is not None]
    found: set[str] = set()
    if with_parent:
        found.update(
            conn.execute(
                sa.select(table.c.id)
                .join(parent, parent.c.id == table.c.parent_id)
                .where(table.c.id.in_(with_parent), parent.c.status.not_in(FINISHED_STATUSES))
            ).scalars()
        )
    found.update(
        conn.execute(
            sa.select(table.c.parent_id)
            .where(
                table.c.parent_id.in_([row.id for row in rows]),
                table.c.status.not_in(FINISHED_STATUSES),
            )
            .distinct()
        ).scalars()
    )
    return found


def _counted(instances: int, counts: dict[str, int], *, batches: int, dry_run: bool) -> PurgeResult:
    return PurgeResult(
        instances=instances,
        history=counts["history"],
        tasks=counts["tasks"],
        timers=counts["timers"],
        idempotency=counts["idempotency"],
        batches=batches,
        dry_run=dry_run,
    )


class Retention:
    """The engine's retention calls (a part of `Engine`)."""

    if TYPE_CHECKING:
        store: Store
        clock: Callable[[], datetime]
        retention: timedelta | None  # for definitions that set none

        def definitions(self) -> list[Deployment]: ...

        def definition(self, name: str, version: int | None = None) -> Definition: ...

    def purge(
        self,
        *,
        finished_before: datetime | timedelta,
        definition: str | None = None,
        status: str | list[str] | None = None,
        batch: int = 500,
        batches: int | None = None,
        archive: str | Path | TextIO | None = None,
        dry_run: bool = False,
    ) -> PurgeResult:
        """Delete the finished instances last changed before `finished_before` (a datetime,
        or an age such as `timedelta(days=30)`), of `definition` only and with `status`
        (one or a list of succeeded, failed, cancelled) only when given, with their
        history, tasks, timers and idempotency keys: `batch` instances per transaction, at
        most `batches` transactions (None: until none is left). With `archive` (a path,
        appended to, or an open text file) each is written there first (see
        `read_archive`). `dry_run` deletes nothing and counts what would go. Safe while
        workers run; running instances are never touched."""
        before = self._purge_before(finished_before)
        statuses = _statuses(status)
        if not 0 < batch <= MAX_PURGE_BATCH or (batches is not None and batches < 1):
            raise InvalidInput(f"batch must be from 1 to {MAX_PURGE_BATCH}, batches at least 1")
        if definition is not None and not isinstance(definition, str):
            raise InvalidInput("definition must be a definition's name")
        pages = Pages(statuses, before, definition)
        if dry_run:
            return self._purge_counts(pages, batch, batches)
        total = PurgeResult()
        with _opened(archive, "a") as stream:
            while pages.left and (batches is None or total.batches < batches):
                total += self._purge_batch(pages, batch, stream)
        return total

    def apply_retention(self, *, batches: int | None = 1, batch: int = 500) -> PurgeResult:
        """Purge, for every deployed definition, the instances finished longer ago than
        the `retention` of its latest version (else the engine's; neither: none): at most
        `batches` batches of `batch` per definition. Workers call it once a minute with
        one batch."""
        total = PurgeResult()
        for deployed in self.definitions():
            kept = self.definition(deployed.name).retention or self.retention
            if kept is not None:
                total += self.purge(
                    finished_before=kept, definition=deployed.name, batch=batch, batches=batches
                )
        return total

    def _purge_before(self, finished_before: datetime | timedelta) -> datetime:
        if isinstance(finished_before, timedelta):
            if finished_before < timedelta(0):
                raise InvalidInput("finished_before must not be a negative age")
            return self.clock() - finished_before
        if not isinstance(finished_before, datetime) or finished_before.tzinfo is None:
            raise InvalidInput("finished_before must be an aware datetime or a timedelta")
        return finished_before

    def _purge_batch(self, pages: Pages, batch: int, archive: IO[str] | None) -> PurgeResult:
        """One transaction: take up to `batch` instances, archive them, delete them."""
        table = instances_t
        with self.store.core(write=True) as conn:
            rows = pages.take(conn, batch, lock=self.store.postgres)
            staying = kept(conn, rows) if rows else set()
            rows = [row for row in rows if row.id not in staying]
            if not rows:
                return PurgeResult(batches=1)
            # Checked again as it is deleted: an instance redriven since is kept.
            deleted = conn.execute(
                sa.delete(table)
                .where(table.c.id.in_([row.id for row in rows]))
                .where(table.c.status.in_(FINISHED_STATUSES))
                .returning(table.c.id)
            )
            gone = {row_id for (row_id,) in deleted}
            ids = [row.id for row in rows if row.id in gone]
            if archive is not None:
                _archive(conn, archive, [row for row in rows if row.id in gone])
            counts = {
                name: int(
                    conn.execute(sa.delete(owned).where(owned.c.instance_id.in_(ids))).rowcount or 0
                )
                for name, owned in OWNED
            }
            # The priorities of instances gone go too (a PurgeResult does not count them: a
            # priority is no more than a column of its instance kept beside it). Read from
            # the (small) priorities table, not by the batch's ids: no cost when it is empty.
            gone_instance = ~sa.exists().where(instances_t.c.id == priorities_t.c.instance_id)
            conn.execute(sa.delete(priorities_t).where(gone_instance))
        return _counted(len(ids), counts, batches=1, dry_run=False)

    def _purge_counts(self, pages: Pages, batch: int, batches: int | None) -> PurgeResult:
        """What a purge would delete (as many batches), counted in one read."""
        counts = {name: 0 for name, _ in OWNED}
        instances = done = 0
        with self.store.core() as conn:
            while pages.left and (batches is None or done < batches):
                rows = pages.take(conn, batch, lock=False)
                staying = kept(conn, rows) if rows else set()
                ids = [row.id for row in rows if row.id not in staying]
                instances += len(ids)
                done += 1
                for name, owned in OWNED:
                    counts[name] += int(
                        conn.execute(
                            sa.select(sa.func.count()).where(owned.c.instance_id.in_(ids))
                        ).scalar_one()
                    )
        return _counted(instances, counts, batches=done, dry_run=True)

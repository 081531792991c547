"""The export of recorded histories (`Engine.export_histories`, `turnout export`): every
history entry of a definition's instances, as the JSON lines `statemachines.check_histories`
reads, one page of instances at a time so an export of any size holds one page in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

import sqlalchemy as sa

from statemachines import Status
from statemachines.errors import InvalidInput
from statemachines.histories import history_line

from .records import HistoryEntry
from .store import Store
from .tables import HISTORY_ENTRY_COLUMNS, history_t, instances_t

EXPORT_PAGE = 200  # instances read (with their histories) in one transaction
STATUSES = tuple(status.value for status in Status)


@dataclass(frozen=True)
class Exported:
    """How much an export wrote: `instances` histories of `entries` entries in all."""

    instances: int
    entries: int


@dataclass(frozen=True)
class Selection:
    """The instances of one definition an export takes: of `version` only, with `status`
    only, started at or after `since` (None: any)."""

    definition: str
    version: int | None = None
    status: str | None = None
    since: datetime | None = None

    def check(self) -> None:
        """InvalidInput for a status no instance can have, or a `since` with no time zone."""
        if self.status is not None and self.status not in STATUSES:
            raise InvalidInput(f"status {self.status!r}: choose one of {', '.join(STATUSES)}")
        if self.since is not None and self.since.tzinfo is None:
            raise InvalidInput("since must be an aware datetime (UTC if in doubt)")


def write_histories(store: Store, selection: Selection, output: TextIO) -> Exported:
    """Write the histories of the selected instances to `output`, one JSON line an entry,
    oldest instance first; how many were written."""
    instances = entries = 0
    last: str | None = None
    for line in exported(store, selection):
        output.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
        entries += 1
        if line["instance"] != last:
            instances, last = instances + 1, line["instance"]
    return Exported(instances, entries)


def exported(
    store: Store, selection: Selection, page: int = EXPORT_PAGE
) -> Iterator[dict[str, Any]]:
    """The export's lines: each selected instance's entries in order, oldest instance first.
    Instances are paged by (created_at, id), so none is skipped or repeated however the
    others move meanwhile; each page and its histories are read in one transaction."""
    after: tuple[datetime, str] | None = None
    while True:
        # Private to the store by name, shared here: the reads off the hot path use Core.
        with store._core() as conn:
            rows = conn.execute(_page(selection, after, page)).all()
            histories = _histories(conn, [row.id for row in rows])
        for row in rows:
            for entry in histories.get(row.id, []):
                yield history_line(row.id, selection.definition, row.version, entry.to_json())
        if len(rows) < page:
            return
        after = (rows[-1].created_at, rows[-1].id)


def _page(selection: Selection, after: tuple[datetime, str] | None, page: int) -> sa.Select[Any]:
    """The next `page` selected instances after `after` (their created_at, id)."""
    table = instances_t
    query = sa.select(table.c.id, table.c.version, table.c.created_at).where(
        table.c.definition == selection.definition
    )
    if selection.version is not None:
        query = query.where(table.c.version == selection.version)
    if selection.status is not None:
        query = query.where(table.c.status == selection.status)
    if selection.since is not None:
        query = query.where(table.c.created_at >= selection.since)
    if after is not None:
        created, instance = after
        query = query.where(
            sa.or_(
                table.c.created_at > created,
                sa.and_(table.c.created_at == created, table.c.id > instance),
            )
        )
    return query.order_by(table.c.created_at, table.c.id).limit(page)


def _histories(conn: sa.Connection, ids: list[str]) -> dict[str, list[HistoryEntry]]:
    """The histories of the instances `ids`, each oldest entry first."""
    if not ids:
        return {}
    found: dict[str, list[HistoryEntry]] = {}
    query = (
        sa.select(history_t.c.instance_id, *HISTORY_ENTRY_COLUMNS)
        .where(history_t.c.instance_id.in_(ids))
        .order_by(history_t.c.instance_id, history_t.c.seq)
    )
    for row in conn.execute(query):
        instance, seq, at, kind, event, source, target, data = row
        entry = HistoryEntry(seq, at, kind, event, source, target, data, instance_id=instance)
        found.setdefault(instance, []).append(entry)
    return found

"""The change feed: the outbox rows every step writes (`Transaction.insert_change`), read
in commit order by any process.

A row's `seq` is taken when it is written, so on PostgreSQL a row with a smaller `seq` may
commit after one with a larger `seq` has been read: a reader that went by `seq` would pass
over it. So the feed goes by `position`, which is given to rows only once they have
committed, in `seq` order, by one placer at a time (an advisory lock per schema): a row
that commits later gets a later position. Two steps of one instance cannot overlap (the
instance row is locked, or its revision checked, before the change row is written), so an
instance's changes are placed in revision order. On SQLite one writer commits at a time
and `seq` is the commit order itself: the feed goes by `seq` there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .tables import UTCDateTime

# Taken by the placer, with its schema's hash, for the time of its transaction.
PLACER_LOCK = 7302
PLACED_AT_ONCE = 5000
CHANNEL = "turnout_changes"
# Sent after a step's COMMIT, in the same round trip, as a transaction of its own: a NOTIFY
# inside the step's transaction would make committing writers queue behind each other. The
# payload names the schema whose feed moved: listeners on other schemas of the same
# database (which share channels) let it pass.
NOTIFY_CHANGES = f"SELECT pg_notify('{CHANNEL}', current_schema())"

_FIELDS = (
    "instance_id, key, definition, version, revision, kind, event, from_state, to_state, "
    "status, first_entry, last_entry, at"
)


@dataclass(frozen=True)
class Change:
    """One committed revision of an instance, as the change feed gives it.

    `position` orders the feed (a cursor is the position of the last change read);
    `id`, "<instance id>.<revision>", names the change wherever it travels: a relay sends it
    as the message id, so a consumer tells a message sent twice by the same id. `kind` and
    `event` are those of the first history entry the step wrote (`first_entry` to
    `last_entry` are their numbers), `from_state` the state before the step (None for a
    start), `to_state` and `status` the instance's after it.
    """

    position: int
    instance_id: str
    key: str | None
    definition: str
    version: int
    revision: int
    kind: str
    event: str | None
    from_state: str | None
    to_state: str
    status: str
    first_entry: int
    last_entry: int
    at: datetime

    @property
    def id(self) -> str:
        return f"{self.instance_id}.{self.revision}"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "position": self.position,
            "instance_id": self.instance_id,
            "key": self.key,
            "definition": self.definition,
            "version": self.version,
            "revision": self.revision,
            "kind": self.kind,
            "event": self.event,
            "from_state": self.from_state,
            "to_state": self.to_state,
            "status": self.status,
            "first_entry": self.first_entry,
            "last_entry": self.last_entry,
            "at": self.at.isoformat().replace("+00:00", "Z"),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Change:
        """The change `to_json` gave (as a consumer of a relayed message reads it)."""
        values = {name: data[name] for name in cls.__dataclass_fields__}
        values["at"] = datetime.fromisoformat(str(data["at"]).replace("Z", "+00:00"))
        return cls(**values)


def _time_param(name: str) -> sa.BindParameter[datetime]:
    return sa.bindparam(name, type_=UTCDateTime)


def order_column(conn: Connection) -> str:
    return "position" if conn.dialect.name == "postgresql" else "seq"


def place(conn: Connection, after: int | None = None, limit: int = 0) -> int:
    """On PostgreSQL, give positions to the committed changes that have none, in `seq`
    order, PLACED_AT_ONCE per statement: all of them, or (with `after`) until `limit` are
    placed after position `after`, enough for that read. How many were placed."""
    if conn.dialect.name != "postgresql":
        return 0
    # One placer per schema at a time; a reader that waits for it then finds its own rows
    # placed, so what committed before `changes()` was called is in what it reads.
    conn.execute(
        sa.text(f"SELECT pg_advisory_xact_lock({PLACER_LOCK}, hashtext(current_schema()))")
    )
    total = 0
    while True:
        placed = conn.execute(
            sa.text(
                "WITH base AS (SELECT COALESCE(MAX(position), 0) AS top FROM turnout_changes), "
                "next AS (SELECT seq, ROW_NUMBER() OVER (ORDER BY seq) AS n "
                "FROM turnout_changes "
                f"WHERE position IS NULL ORDER BY seq LIMIT {PLACED_AT_ONCE}) "
                "UPDATE turnout_changes SET position = base.top + next.n FROM base, next "
                "WHERE turnout_changes.seq = next.seq"
            )
        ).rowcount
        total += placed
        if placed < PLACED_AT_ONCE or (after is not None and latest(conn) - after >= limit):
            return total


def read(
    conn: Connection, after: int, limit: int, definitions: list[str] | None = None
) -> list[Change]:
    """The changes after position `after`, in feed order, at most `limit`."""
    order = order_column(conn)
    where = f"{order} > :after"
    params: dict[str, Any] = {"after": after, "limit": limit}
    if order == "position":
        where += " AND position IS NOT NULL"
    if definitions:
        where += " AND definition IN :definitions"
        params["definitions"] = list(definitions)
    statement = sa.text(
        f"SELECT {order}, {_FIELDS} FROM turnout_changes WHERE {where} "
        f"ORDER BY {order} LIMIT :limit"
    )
    if definitions:
        statement = statement.bindparams(sa.bindparam("definitions", expanding=True))
    rows = conn.execute(statement, params).all()
    return [_change(row) for row in rows]


def _change(row: Any) -> Change:
    values = list(row)
    at = values[-1]
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    values[-1] = at.replace(tzinfo=UTC)
    return Change(*values)


def latest(conn: Connection) -> int:
    """The position of the last change placed so far (0: none)."""
    order = order_column(conn)
    return int(conn.execute(sa.text(f"SELECT MAX({order}) FROM turnout_changes")).scalar() or 0)


def cursor(conn: Connection, name: str) -> int | None:
    value = conn.execute(
        sa.text("SELECT position FROM turnout_change_cursors WHERE name = :name"), {"name": name}
    ).scalar()
    return None if value is None else int(value)


def save_cursor(conn: Connection, name: str, position: int, now: datetime) -> None:
    """Record that reader `name` has handled every change up to `position` (a cursor
    only moves forward)."""
    conn.execute(
        sa.text(
            "INSERT INTO turnout_change_cursors (name, position, updated_at) "
            "VALUES (:name, :position, :now) ON CONFLICT (name) DO UPDATE "
            "SET position = excluded.position, updated_at = excluded.updated_at "
            "WHERE turnout_change_cursors.position <= excluded.position"
        ).bindparams(_time_param("now")),
        {"name": name, "position": position, "now": now},
    )


def drop_cursor(conn: Connection, name: str) -> bool:
    gone = conn.execute(
        sa.text("DELETE FROM turnout_change_cursors WHERE name = :name"), {"name": name}
    )
    return bool(gone.rowcount)


def prune(conn: Connection, before: datetime, limit: int) -> int:
    """Delete at most `limit` changes written before `before` that every named reader has
    passed (all of them, when there is no named reader); how many went."""
    order = order_column(conn)
    passed = conn.execute(sa.text("SELECT MIN(position) FROM turnout_change_cursors")).scalar()
    where = f"at < :before AND {order} IS NOT NULL"
    params: dict[str, Any] = {"before": before, "limit": limit}
    if passed is not None:
        where += f" AND {order} <= :passed"
        params["passed"] = int(passed)
    gone = conn.execute(
        sa.text(
            f"DELETE FROM turnout_changes WHERE seq IN (SELECT seq FROM turnout_changes "
            f"WHERE {where} ORDER BY seq LIMIT :limit)"
        ).bindparams(_time_param("before")),
        params,
    )
    return int(gone.rowcount or 0)

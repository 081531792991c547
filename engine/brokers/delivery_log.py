"""The webhooks' delivery log (`turnout_webhook_deliveries`): per receiver URL and change,
whether it was delivered, is still being tried, or failed for good, after how many attempts
and with what last answer. The relay reads it to skip what a receiver already has; an
operator lists it and sends the failed deliveries again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..tables import UTCDateTime, webhook_deliveries_t

ERROR_LENGTH = 1000
_TIMES = ("first_attempt_at", "last_attempt_at", "next_attempt_at", "delivered_at", "failed_at")


class DeliveryStatus(StrEnum):
    """Where a change stands with one receiver."""

    PENDING = "pending"  # tried, not yet taken: the relay tries it again
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # refused for good (or given up on): waits for `resend`


@dataclass(frozen=True)
class Delivery:
    """One row of the delivery log."""

    url: str
    change_id: str
    position: int
    instance_id: str
    revision: int
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    first_attempt_at: datetime
    last_attempt_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    failed_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            name: getattr(self, name) for name in self.__dataclass_fields__ if name not in _TIMES
        }
        values["status"] = str(self.status)
        for name in _TIMES:
            moment = getattr(self, name)
            values[name] = None if moment is None else moment.isoformat().replace("+00:00", "Z")
        return values


@dataclass(frozen=True)
class Item:
    """A change as the log knows it: what to send and where it sits in the feed."""

    change_id: str
    position: int
    instance_id: str
    revision: int
    body: bytes


@dataclass(frozen=True)
class Known:
    """What the log already says of a change for one URL."""

    status: DeliveryStatus
    attempts: int


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    moment: datetime = value
    return moment.replace(tzinfo=UTC)


def _delivery(row: Any) -> Delivery:
    values = dict(row._mapping)
    values["status"] = DeliveryStatus(values["status"])
    for name in _TIMES:
        values[name] = _utc(values[name])
    return Delivery(**values)


def known(conn: Connection, url: str, change_ids: list[str]) -> dict[str, Known]:
    """What the log says of these changes for `url` (the ones it has rows for)."""
    if not change_ids:
        return {}
    rows = conn.execute(
        sa.text(
            "SELECT change_id, status, attempts FROM turnout_webhook_deliveries "
            "WHERE url = :url AND change_id IN :ids"
        ).bindparams(sa.bindparam("ids", expanding=True)),
        {"url": url, "ids": change_ids},
    ).all()
    return {row[0]: Known(DeliveryStatus(row[1]), int(row[2])) for row in rows}


def record(
    conn: Connection,
    url: str,
    item: Item,
    status: DeliveryStatus,
    *,
    status_code: int | None,
    error: str | None,
    now: datetime,
    next_attempt_at: datetime | None = None,
) -> None:
    """Record one attempt to deliver `item` to `url` and where that leaves it. A failed
    delivery keeps its body (for `resend`, after the change may have been pruned)."""
    params = {
        "url": url,
        "change_id": item.change_id,
        "position": item.position,
        "instance_id": item.instance_id,
        "revision": item.revision,
        "status": str(status),
        "code": status_code,
        "error": None if error is None else error[:ERROR_LENGTH],
        "body": item.body.decode() if status is DeliveryStatus.FAILED else None,
        "now": now,
        "next": next_attempt_at,
        "delivered": now if status is DeliveryStatus.DELIVERED else None,
        "failed": now if status is DeliveryStatus.FAILED else None,
    }
    times = ("now", "next", "delivered", "failed")
    conn.execute(
        sa.text(
            "INSERT INTO turnout_webhook_deliveries (url, change_id, position, instance_id, "
            "revision, status, attempts, last_status_code, last_error, body, first_attempt_at, "
            "last_attempt_at, next_attempt_at, delivered_at, failed_at) VALUES (:url, "
            ":change_id, :position, :instance_id, :revision, :status, 1, :code, :error, :body, "
            ":now, :now, :next, :delivered, :failed) ON CONFLICT (url, change_id) DO UPDATE SET "
            "status = excluded.status, "
            "attempts = turnout_webhook_deliveries.attempts + 1, "
            "last_status_code = excluded.last_status_code, last_error = excluded.last_error, "
            "body = excluded.body, last_attempt_at = excluded.last_attempt_at, "
            "next_attempt_at = excluded.next_attempt_at, "
            "delivered_at = COALESCE(excluded.delivered_at, "
            "turnout_webhook_deliveries.delivered_at), "
            "failed_at = COALESCE(excluded.failed_at, turnout_webhook_deliveries.failed_at)"
        ).bindparams(*(sa.bindparam(name, type_=UTCDateTime) for name in times)),
        params,
    )


def listing(
    conn: Connection, status: DeliveryStatus | None, url: str | None, limit: int
) -> list[Delivery]:
    """At most `limit` rows of the log, in feed order per URL; only those with `status`
    and of `url` when given."""
    table = webhook_deliveries_t
    query = sa.select(*(table.c[name] for name in Delivery.__dataclass_fields__))
    if status is not None:
        query = query.where(table.c.status == str(status))
    if url is not None:
        query = query.where(table.c.url == url)
    query = query.order_by(table.c.url, table.c.position).limit(limit)
    return [_delivery(row) for row in conn.execute(query)]


def failed_urls(conn: Connection) -> list[str]:
    """The receiver URLs that have failed deliveries."""
    rows = conn.execute(
        sa.text(
            "SELECT DISTINCT url FROM turnout_webhook_deliveries WHERE status = :failed "
            "ORDER BY url"
        ),
        {"failed": str(DeliveryStatus.FAILED)},
    )
    return [row[0] for row in rows]


def failed_items(conn: Connection, url: str, limit: int) -> list[tuple[Item, int]]:
    """The failed deliveries to `url` in feed order, each with its attempts so far."""
    rows = conn.execute(
        sa.text(
            "SELECT change_id, position, instance_id, revision, body, attempts "
            "FROM turnout_webhook_deliveries WHERE status = :failed AND url = :url "
            "ORDER BY position LIMIT :limit"
        ),
        {"failed": str(DeliveryStatus.FAILED), "url": url, "limit": limit},
    ).all()
    return [
        (Item(row[0], int(row[1]), row[2], int(row[3]), (row[4] or "").encode()), int(row[5]))
        for row in rows
    ]


def prune(conn: Connection, before: datetime, limit: int) -> int:
    """Delete at most `limit` rows of deliveries made before `before`; how many went.
    Failed and pending deliveries are kept whatever their age."""
    gone = conn.execute(
        sa.text(
            "DELETE FROM turnout_webhook_deliveries WHERE seq IN (SELECT seq FROM "
            "turnout_webhook_deliveries WHERE status = :delivered AND delivered_at < :before "
            "ORDER BY seq LIMIT :limit)"
        ).bindparams(sa.bindparam("before", type_=UTCDateTime)),
        {"delivered": str(DeliveryStatus.DELIVERED), "before": before, "limit": limit},
    )
    return int(gone.rowcount or 0)

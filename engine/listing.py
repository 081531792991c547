"""Pages of instances in any order: `Engine.instance_page`, the listing the dashboard shows.

A page is found by its position, not by an offset: the cursor holds the sort value and the id
of the last (or first) row shown, and the next page is the rows past it in the same order
(keyset paging). So a page stays right while instances are started or move on between two
requests: none is skipped or shown twice for rows that appeared before it. Ties on the sort
value are broken by the id. Text is compared by code point on both databases (PostgreSQL's
"C" collation, SQLite's default), so the order is the same wherever the data lives; a missing
business key sorts as the empty text.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from statemachines.errors import InvalidInput

from . import search
from .checks import MAX_LIST_LIMIT, check_key
from .persist import snapshot
from .records import Instance
from .rows import InstanceRow
from .store import in_state
from .tables import instances_t

if TYPE_CHECKING:
    from .store import Store

# What a page can be sorted by: the name in `sort` (with a leading "-" for descending).
SORTS = ("created", "updated", "definition", "key", "state", "status", "revision")
TIMES = ("created", "updated")  # which time `since` and `until` bound
DEFAULT_SORT = "-created"  # newest first
MAX_COUNTED = 10_000  # a page counts the matching rows up to this many, then says "more"
_TEXT = ("definition", "key", "state", "status")


@dataclass(frozen=True)
class InstancePage:
    """One page of a listing: its instances in order, the cursors of the pages after and
    before it (None at either end), and how many instances match in all (`total`, counted
    up to MAX_COUNTED; `total_exact` is False when there are more)."""

    items: list[Instance]
    next: str | None
    previous: str | None
    sort: str
    total: int | None = None
    total_exact: bool = True


@dataclass(frozen=True)
class Order:
    """A parsed `sort`: the column's name and its direction."""

    name: str
    descending: bool

    @classmethod
    def parse(cls, sort: str) -> Order:
        name = sort.removeprefix("-")
        if name not in SORTS:
            choices = ", ".join(SORTS)
            raise InvalidInput(f"cannot sort by {sort!r}: one of {choices}, '-' first to reverse")
        return cls(name, sort.startswith("-"))

    @property
    def text(self) -> str:
        return ("-" if self.descending else "") + self.name

    def column(self, postgres: bool) -> ColumnElement[Any]:
        """The expression the rows are ordered by."""
        c = instances_t.c
        found: ColumnElement[Any] = {
            "created": c.created_at,
            "updated": c.updated_at,
            "definition": c.definition,
            "key": sa.func.coalesce(c.key, ""),
            "state": c.state,
            "status": c.status,
            "revision": c.revision,
        }[self.name]
        if postgres and self.name in _TEXT:
            found = found.collate("C")
        return found

    def value_of(self, row: InstanceRow) -> Any:
        """The sort value of `row`, as a cursor keeps it."""
        value = {
            "created": row.created_at,
            "updated": row.updated_at,
            "definition": row.definition,
            "key": row.key or "",
            "state": row.state,
            "status": row.status,
            "revision": row.revision,
        }[self.name]
        return value.isoformat() if isinstance(value, datetime) else value


def encode_cursor(order: Order, value: Any, instance_id: str, forward: bool) -> str:
    """The cursor of the position just past (forward) or before the row (`value`, id)."""
    text = json.dumps([order.text, value, instance_id, "after" if forward else "before"])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, order: Order) -> tuple[Any, str, bool]:
    """The sort value, id and direction a cursor holds; InvalidInput for one that this
    listing did not give or that belongs to another order."""
    refused = InvalidInput(f"cursor {cursor[:80]!r} is not one this listing gave")
    try:
        padded = cursor.encode("ascii") + b"=" * (-len(cursor) % 4)
        sort, value, instance_id, way = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        raise refused from None
    if way not in ("after", "before") or not isinstance(instance_id, str):
        raise refused
    if not _storable(instance_id):
        raise refused
    if sort != order.text:
        raise InvalidInput(
            f"cursor {cursor[:80]!r} belongs to the order {sort!r}, not {order.text!r}"
        )
    if order.name in TIMES:
        try:
            value = datetime.fromisoformat(value)
        except (TypeError, ValueError):
            raise refused from None
    elif order.name == "revision":
        if not isinstance(value, int) or isinstance(value, bool) or abs(value) >= 2**63:
            raise refused  # past what a database integer holds
    elif not isinstance(value, str) or not _storable(value):
        raise refused
    return value, instance_id, way == "after"


def _storable(text: str) -> bool:
    """Whether both databases can compare with `text` (no NUL, no lone surrogate, a length a
    column holds)."""
    try:
        check_key(text, "a cursor")
    except InvalidInput:
        return False
    return True


@dataclass(frozen=True)
class Filters:
    """What a listing selects; every filter given must hold."""

    definition: str | None = None
    state: str | None = None
    status: str | None = None
    key: str | None = None
    key_prefix: str | None = None
    id_prefix: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    time: str = "created"
    where: Mapping[str, Any] | None = None

    def check(self) -> None:
        """InvalidInput, before any read, for filters that select nothing sensible."""
        for name in ("definition", "state", "status", "key", "key_prefix", "id_prefix"):
            value = getattr(self, name)
            if value is not None:
                check_key(value, f"the {name.replace('_', ' ')} filter")
        if self.time not in TIMES:
            raise InvalidInput(f"time must be one of {', '.join(TIMES)}, not {self.time!r}")
        for name in ("since", "until"):
            moment = getattr(self, name)
            if moment is not None and (not isinstance(moment, datetime) or moment.tzinfo is None):
                raise InvalidInput(f"{name} must be an aware datetime (with its time zone)")

    def clauses(self, postgres: bool) -> list[ColumnElement[bool]]:
        c = instances_t.c
        found: list[ColumnElement[bool]] = list(search.clauses(self.where, postgres))
        if self.definition is not None:
            found.append(c.definition == self.definition)
        if self.state is not None:
            found += in_state(self.state)
        if self.status is not None:
            found.append(c.status == self.status)
        if self.key is not None:
            found.append(c.key == self.key)
        # substr rather than LIKE: LIKE ignores case on SQLite and would read % and _.
        if self.key_prefix:
            found.append(sa.func.substr(c.key, 1, len(self.key_prefix)) == self.key_prefix)
        if self.id_prefix:
            found.append(sa.func.substr(c.id, 1, len(self.id_prefix)) == self.id_prefix.lower())
        moment = c.created_at if self.time == "created" else c.updated_at
        if self.since is not None:
            found.append(moment >= self.since)
        if self.until is not None:
            found.append(moment < self.until)
        return found


def _past(
    column: ColumnElement[Any], value: Any, instance_id: str, later: bool
) -> ColumnElement[bool]:
    """Rows past (value, id) in the ascending order when `later`, before it otherwise."""
    ids = instances_t.c.id
    if later:
        return sa.or_(column > value, sa.and_(column == value, ids > instance_id))
    return sa.or_(column < value, sa.and_(column == value, ids < instance_id))


def read_page(
    store: Store,
    filters: Filters,
    sort: str = DEFAULT_SORT,
    limit: int = 50,
    cursor: str | None = None,
    count: bool = False,
) -> InstancePage:
    """The page of instances `filters` select, in the order `sort` names, starting past
    `cursor` (or at the first row)."""
    if not 0 < limit <= MAX_LIST_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIST_LIMIT}")
    order = Order.parse(sort)
    filters.check()
    position = decode_cursor(cursor, order) if cursor else None
    postgres = store.postgres
    column, ids = order.column(postgres), instances_t.c.id
    conditions = filters.clauses(postgres)
    forward = position is None or position[2]
    # Reading backwards (the page before a cursor) runs the order the other way, then turns
    # the rows back.
    ascending = order.descending != forward
    query = sa.select(*instances_t.c).where(*conditions)
    if position is not None:
        value, last_id, _ = position
        query = query.where(_past(column, value, last_id, ascending))
    if ascending:
        query = query.order_by(column.asc(), ids.asc())
    else:
        query = query.order_by(column.desc(), ids.desc())
    with store.core() as conn:
        rows = [InstanceRow(*r) for r in conn.execute(query.limit(limit + 1))]
        total = None
        if count:
            counted = sa.select(ids).where(*conditions).limit(MAX_COUNTED + 1).subquery()
            total = int(conn.execute(sa.select(sa.func.count()).select_from(counted)).scalar_one())
    more = len(rows) > limit
    rows = rows[:limit]
    if not forward:
        rows.reverse()
    ahead = more if forward else position is not None
    behind = position is not None if forward else more
    first, last = (rows[0], rows[-1]) if rows else (None, None)
    return InstancePage(
        items=[snapshot(row) for row in rows],
        next=encode_cursor(order, order.value_of(last), last.id, True) if ahead and last else None,
        previous=(
            encode_cursor(order, order.value_of(first), first.id, False)
            if behind and first
            else None
        ),
        sort=order.text,
        total=None if total is None else min(total, MAX_COUNTED),
        total_exact=total is None or total <= MAX_COUNTED,
    )


class InstancePages:
    """`Engine.instance_page` (a part of `Engine`)."""

    if TYPE_CHECKING:
        store: Store

    def instance_page(
        self,
        *,
        definition: str | None = None,
        state: str | None = None,
        status: str | None = None,
        key: str | None = None,
        key_prefix: str | None = None,
        id_prefix: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        time: str = "created",
        where: Mapping[str, Any] | None = None,
        sort: str = DEFAULT_SORT,
        limit: int = 50,
        cursor: str | None = None,
        count: bool = False,
    ) -> InstancePage:
        """A page of the instances matching every filter given, newest first unless `sort`
        names another order (`created`, `updated`, `definition`, `key`, `state`, `status`,
        `revision`; a leading `-` for descending). `since` (inclusive) and `until`
        (exclusive) bound the `time` (`created` or `updated`); `key_prefix` and `id_prefix`
        match the start of the key or id; `where` is `instances`' context search. Pass a
        page's `next` or `previous` as `cursor` for the page after or before it; `count`
        also counts the matching instances (up to MAX_COUNTED)."""
        filters = Filters(
            definition, state, status, key, key_prefix, id_prefix, since, until, time, where
        )
        return read_page(self.store, filters, sort, limit, cursor, count)

"""Flow control per task name: how many of a name's tasks may run at once anywhere, how
fast they may start, how many per partition of their input, and in which order.

The limits live in `turnout_task_limits`, so every worker sharing the database keeps the
same ones. A claim of a limited name runs inside the claim's transaction with that name's
limits row locked (`FOR UPDATE` on PostgreSQL; SQLite has one writer at a time): it counts
the name's running tasks, takes what the limits allow, oldest of the highest priority first,
and moves the rate limit's next start on. Names without limits are claimed as before.
The claims that SQL decides (no rate limit, partitions by a plain path) are in
flow_statements.py.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from statemachines.errors import ExpressionError, InvalidInput
from statemachines.expressions import Expression, ExpressionSyntaxError

from .flow_statements import (
    PARTITION_WINDOW,
    PRIORITIZED,
    claim_by_ids,
    claim_in_one,
    in_one_statement,
    run,
)
from .rows import TaskRow
from .tables import priorities_t, task_limits_t
from .transaction import _TASK_FIELDS, Transaction, driver_sql

# How long a process trusts the limits it read before reading them again: a limit set by
# another process applies here within this many seconds.
REFRESH_SECONDS = 2.0
# A claim that comes late may still make up for the rate limit's starts it missed within
# this window (or the period, when shorter): workers poll a few times a second.
CATCH_UP = timedelta(seconds=0.25)
PARTITION_NAMES = ("input",)


@dataclass(frozen=True)
class TaskLimit:
    """The flow control of the tasks named `name`.

    `concurrency`: at most this many running at once, across every worker. `rate`:
    (count, period in seconds), at most `count` starts per period, spaced period/count
    apart. `partition`: an expression over the task's `input` (`input.customer_id`); at
    most `partition_limit` tasks of one value of it run at once. Ready tasks of the name are
    claimed by their instance's priority (highest first), then oldest first.
    """

    name: str
    concurrency: int | None = None
    rate: tuple[int, float] | None = None
    partition: str | None = None
    partition_limit: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.concurrency is not None and self.concurrency < 1:
            problems.append(f"concurrency must be 1 or more, not {self.concurrency}")
        if self.rate is not None:
            count, period = self.rate
            if count < 1 or not period > 0 or not math.isfinite(period):
                problems.append(f"rate must be (count >= 1, seconds > 0), not {self.rate}")
        if self.partition_limit < 1:
            problems.append(f"partition_limit must be 1 or more, not {self.partition_limit}")
        if self.partition is not None:
            try:
                Expression(self.partition, PARTITION_NAMES)
            except (ExpressionSyntaxError, ExpressionError) as exc:
                problems.append(f"partition {self.partition!r}: {exc}")
        if problems:
            raise InvalidInput(f"task limit of {self.name}: {'; '.join(problems)}", problems)

    @property
    def interval(self) -> timedelta | None:
        """The time between two starts under the rate limit."""
        if self.rate is None:
            return None
        count, period = self.rate
        return timedelta(seconds=period / count)

    def partition_of(self, task_input: Any) -> str:
        """The partition of a task's input, as text; inputs the expression cannot be
        evaluated on share one partition."""
        expression = _expression(self.partition or "None")
        try:
            value = expression.evaluate({"input": task_input})
        except ExpressionError:
            value = None
        return json.dumps(value, sort_keys=True, default=str)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "concurrency": self.concurrency,
            "rate": None if self.rate is None else {"count": self.rate[0], "per": self.rate[1]},
            "partition": self.partition,
            "partition_limit": self.partition_limit,
        }


_expressions: dict[str, Expression] = {}


def _expression(text: str) -> Expression:
    found = _expressions.get(text)
    if found is None:
        found = _expressions[text] = Expression(text, PARTITION_NAMES)
    return found


# -- the limits, as kept in the database -------------------------------------------------------
def save_limit(conn: sa.Connection, limit: TaskLimit, now: datetime) -> None:
    """Insert or replace the limits of `limit.name` (the rate's next start is kept)."""
    t = task_limits_t
    values = {
        "concurrency": limit.concurrency,
        "rate_count": None if limit.rate is None else limit.rate[0],
        "rate_period_ms": None if limit.rate is None else round(limit.rate[1] * 1000),
        "partition": limit.partition,
        "partition_limit": limit.partition_limit,
        "updated_at": now,
    }
    updated = conn.execute(sa.update(t).where(t.c.name == limit.name).values(**values))
    if not updated.rowcount:
        conn.execute(sa.insert(t).values(name=limit.name, **values))


def delete_limit(conn: sa.Connection, name: str) -> bool:
    return bool(conn.execute(sa.delete(task_limits_t).where(task_limits_t.c.name == name)).rowcount)


def read_limits(conn: sa.Connection) -> dict[str, TaskLimit]:
    t = task_limits_t
    rows = conn.execute(sa.select(t).order_by(t.c.name)).mappings()
    return {row["name"]: _limit_of(row) for row in rows}


def _limit_of(row: Any) -> TaskLimit:
    rate = None
    if row["rate_count"] is not None:
        rate = (row["rate_count"], row["rate_period_ms"] / 1000)
    return TaskLimit(
        row["name"], row["concurrency"], rate, row["partition"], row["partition_limit"]
    )


def save_priority(tx: Transaction, instance_ids: Iterable[str], priority: int) -> None:
    """Record the priority of instances just started (0, the default, is not recorded)."""
    if priority:
        sql = driver_sql(
            "INSERT INTO turnout_priorities (instance_id, priority) VALUES (?, ?)", tx.postgres
        )
        tx.cursor.executemany(sql, [(instance_id, priority) for instance_id in instance_ids])


def forget_priority(tx: Transaction, instance_ids: Sequence[str]) -> None:
    """Drop the priority recorded for instances (before a new one is saved)."""
    if instance_ids:
        marks = ", ".join("?" * len(instance_ids))
        sql = f"DELETE FROM turnout_priorities WHERE instance_id IN ({marks})"
        tx.cursor.execute(driver_sql(sql, tx.postgres), list(instance_ids))


def inherit_priority(tx: Transaction, parent_id: str, child_id: str) -> None:
    """Give the child a call starts its parent's priority (none when the parent has none):
    that of the start in this transaction, if it started the parent, else the one recorded."""
    if tx.priority:
        save_priority(tx, [child_id], tx.priority)
        return
    sql = (
        "INSERT INTO turnout_priorities (instance_id, priority) "
        "SELECT ?, priority FROM turnout_priorities WHERE instance_id = ?"
    )
    tx.cursor.execute(driver_sql(sql, tx.postgres), (child_id, parent_id))


def priority_of(conn: sa.Connection, instance_id: str) -> int:
    t = priorities_t
    found = conn.execute(sa.select(t.c.priority).where(t.c.instance_id == instance_id)).scalar()
    return int(found or 0)


class Limits:
    """The limits as this process knows them: read from the database, again after
    REFRESH_SECONDS, and at once when this process changes them."""

    def __init__(self, read: Callable[[], dict[str, TaskLimit]]) -> None:
        self._read = read
        self._known: dict[str, TaskLimit] = {}
        self._read_at: float | None = None

    def current(self) -> dict[str, TaskLimit]:
        if self._read_at is None or time.monotonic() - self._read_at > REFRESH_SECONDS:
            self._known = self._read()
            self._read_at = time.monotonic()
        return self._known

    def forget(self) -> None:
        self._read_at = None

    def unlimited(self, names: list[str]) -> list[str]:
        """`names` without the limited ones: what may be claimed without flow control."""
        known = self.current()
        return [name for name in names if name not in known] if known else names


# -- claims ------------------------------------------------------------------------------------
def claim_tasks(
    tx: Transaction,
    limits: dict[str, TaskLimit],
    names: list[str] | None,
    worker: str,
    lease: timedelta,
    limit: int,
    now: datetime,
    far: bool = False,
) -> Callable[[], list[TaskRow]]:
    """`runtime.claim_tasks` under `limits`: the limited names first, each under its limits
    row's lock, then the others as usual with what is left of `limit`. `far`: the claims
    under partitions on PostgreSQL look through PARTITION_WINDOW ready tasks rather than the
    first few per slot (see `widened`)."""
    wanted = sorted(limits) if names is None else [n for n in names if n in limits]
    rest = None if names is None else [n for n in names if n not in limits]
    taken: list[TaskRow] = []
    for number, name in enumerate(wanted):
        left = limit - len(taken)
        if left <= 0:
            break
        if in_one_statement(limits[name], tx.postgres):
            claimed = claim_in_one(tx, limits[name], worker, lease, left, now, far)
            if number == len(wanted) - 1 and rest == []:  # the last claim: read after COMMIT
                return lambda: taken + claimed()
            taken.extend(claimed())
        else:
            taken.extend(_claim_limited(tx, limits[name], worker, lease, left, now))
    left = limit - len(taken)
    if rest is None:
        others = _claim_others(tx, sorted(limits), worker, lease, left, now) if left else list
    else:
        others = tx.claim_tasks(rest, worker, now, lease, left) if left and rest else list
    return lambda: taken + others()


def _claim_limited(
    tx: Transaction, limit: TaskLimit, worker: str, lease: timedelta, wanted: int, now: datetime
) -> list[TaskRow]:
    lock = " FOR UPDATE" if tx.postgres else ""
    found = run(
        tx, f"SELECT next_start_at FROM turnout_task_limits WHERE name = ?{lock}", (limit.name,)
    ).fetchone()
    if found is None:  # removed since this process read the limits
        return []
    allowed, next_start = wanted, None
    running: list[Any] = []
    if limit.partition is not None:
        running = running_inputs(tx, limit.name)
    if limit.concurrency is not None:
        count = len(running) if limit.partition is not None else running_count(tx, limit.name)
        allowed = min(allowed, limit.concurrency - count)
    if limit.rate is not None:
        starts, next_start = rate_allowance(limit, tx.read_time(found[0]), now)
        allowed = min(allowed, starts)
    if allowed <= 0:
        return []
    if limit.partition is None:
        chosen = [task_id for task_id, _ in ready_in_order(tx, limit.name, now, allowed)]
    else:
        # A few tasks per free slot first; the whole window only when those were all of
        # busy partitions.
        chosen = []
        for window in (allowed * 4, max(PARTITION_WINDOW, allowed * 4)):
            candidates = ready_in_order(tx, limit.name, now, window)
            chosen = _free_partitions(limit, candidates, running, allowed)
            if chosen or len(candidates) < window:
                break
    if not chosen:
        return []
    rows = {row.id: row for row in claim_by_ids(tx, chosen, worker, now, lease)}
    if next_start is not None and limit.interval is not None:
        next_start += limit.interval * len(rows)
        run(
            tx,
            "UPDATE turnout_task_limits SET next_start_at = ? WHERE name = ?",
            (tx._time(next_start), limit.name),
        )
    return [rows[task_id] for task_id in chosen if task_id in rows]


def rate_allowance(
    limit: TaskLimit, next_start: datetime | None, now: datetime
) -> tuple[int, datetime]:
    """How many tasks may start now under `limit.rate`, and the time the first of them
    stands for: each start takes the next slot, one interval after the one before; slots
    missed by more than the catch-up window are lost."""
    interval = limit.interval
    assert interval is not None and limit.rate is not None
    catch_up = min(CATCH_UP, timedelta(seconds=limit.rate[1]))
    first = now - catch_up if next_start is None else max(next_start, now - catch_up)
    if first > now:
        return 0, first
    return int((now - first) / interval) + 1, first


def running_count(tx: Transaction, name: str) -> int:
    """How many tasks named `name` are running (claimed) now."""
    sql = "SELECT count(*) FROM turnout_tasks WHERE status = 'claimed' AND name = ?"
    return int(run(tx, sql, (name,)).fetchone()[0])


def running_inputs(tx: Transaction, name: str) -> list[Any]:
    """The inputs of the tasks named `name` that are running (claimed) now."""
    rows = run(
        tx, "SELECT input FROM turnout_tasks WHERE status = 'claimed' AND name = ?", (name,)
    ).fetchall()
    return [tx.read_json(row[0]) for row in rows]


def ready_in_order(tx: Transaction, name: str, now: datetime, limit: int) -> list[tuple[str, Any]]:
    """(id, input) of the ready tasks named `name`: those of instances with a priority
    above 0, highest first, then the others (below 0 last), each the longest ready first.

    Two reads rather than one join, so that the tasks of priority 0 (most, as a rule) are
    read in the order of the index on (status, ready_at), never sorted."""
    at = tx._time(now)
    ranked = run(
        tx,
        f"SELECT t.id, t.input, p.priority FROM {PRIORITIZED[tx.postgres]} "
        "ORDER BY p.priority DESC, t.ready_at, t.id LIMIT ?",
        (name, at, limit),
    ).fetchall()
    first = [(row[0], row[1]) for row in ranked if row[2] > 0]
    last = [(row[0], row[1]) for row in ranked if row[2] < 0]
    rows = first
    if len(first) < limit:
        rows += run(
            tx,
            "SELECT t.id, t.input FROM turnout_tasks t WHERE t.status = 'ready' "
            "AND t.name = ? AND t.ready_at <= ? AND NOT EXISTS (SELECT 1 FROM "
            "turnout_priorities p WHERE p.instance_id = t.instance_id) "
            "ORDER BY t.ready_at LIMIT ?",
            (name, at, limit - len(first)),
        ).fetchall()
    rows = (rows + last)[:limit]
    return [(row[0], tx.read_json(row[1])) for row in rows]


def _free_partitions(
    limit: TaskLimit, candidates: list[tuple[str, Any]], running: list[Any], allowed: int
) -> list[str]:
    busy = Counter(limit.partition_of(task_input) for task_input in running)
    chosen = []
    for task_id, task_input in candidates:
        partition = limit.partition_of(task_input)
        if busy[partition] < limit.partition_limit:
            busy[partition] += 1
            chosen.append(task_id)
            if len(chosen) >= allowed:
                break
    return chosen


def _claim_others(
    tx: Transaction,
    limited: list[str],
    worker: str,
    lease: timedelta,
    limit: int,
    now: datetime,
) -> Callable[[], list[TaskRow]]:
    """A claim of any name but the `limited` ones, as `Transaction.claim_tasks` makes it."""
    lock = " FOR UPDATE SKIP LOCKED" if tx.postgres else ""
    marks = ", ".join("?" * len(limited))
    rows = run(
        tx,
        "UPDATE turnout_tasks SET status = 'claimed', worker = ?, claimed_at = ?, "
        "lease_until = ?, attempt = attempt + 1 WHERE id IN (SELECT id FROM turnout_tasks "
        f"WHERE status = 'ready' AND ready_at <= ? AND name NOT IN ({marks}) "
        f"ORDER BY ready_at LIMIT ?{lock}) RETURNING {_TASK_FIELDS}",
        (worker, tx._time(now), tx._time(now + lease), tx._time(now), *limited, limit),
    ).fetchall()
    claimed = sorted((tx._task(r) for r in rows), key=lambda t: (t.ready_at, t.id))
    return lambda: claimed

"""Flow control per task name: how many of a name's tasks may run at once anywhere, how
fast they may start, how many per partition of their input, and in which order.

The limits live in `turnout_task_limits`, so every worker sharing the database keeps the
same ones. A claim of a limited name runs inside the claim's transaction with that name's
limits row locked (`FOR UPDATE` on PostgreSQL; SQLite has one writer at a time): it counts
the name's running tasks, takes what the limits allow, oldest of the highest priority first,
and moves the rate limit's next start on. Names without limits are claimed as before.
"""

from __future__ import annotations

import ast
import functools
import json
import math
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from statemachines.errors import ExpressionError, InvalidInput
from statemachines.expressions import Expression, ExpressionSyntaxError

from .rows import TaskRow
from .tables import priorities_t, task_limits_t
from .transaction import _TASK_FIELDS, Transaction, driver_sql

# How long a process trusts the limits it read before reading them again: a limit set by
# another process applies here within this many seconds.
REFRESH_SECONDS = 2.0
# A claim that comes late may still make up for the rate limit's starts it missed within
# this window (or the period, when shorter): workers poll a few times a second.
CATCH_UP = timedelta(seconds=0.25)
# How many of a partitioned name's ready tasks a claim looks through for free partitions
# when the oldest few per free slot are not enough (SQLite: in the same transaction;
# PostgreSQL: in a second one, see `widened`).
PARTITION_WINDOW = 500
PARTITION_NAMES = ("input",)
# The running (claimed) tasks of a name, read through the index on (status, ready_at) in its
# order: a plain index scan, which also marks the entries that tasks left behind on moving on
# as dead, where a bitmap scan would visit each again on every claim until a vacuum.
RUNNING = (
    "SELECT t.input FROM turnout_tasks t WHERE t.status = 'claimed' AND t.name = ? "
    "ORDER BY t.ready_at"
)
# A claim reads a few rows through indexes in their order and updates a few by their key; a
# queue's statistics lag behind its churn, and with a few rows guessed where hundreds are
# the planner would sort bitmap scans and hash the chosen against every ready task instead.
# So the lock of the limits row also turns both off, for the rest of the claim's transaction.
LOCK_FOR_FEW = (
    "SELECT set_config('enable_bitmapscan', 'off', true), "
    "set_config('enable_hashjoin', 'off', true), set_config('enable_seqscan', 'off', true), "
    "set_config('jit', 'off', true) FROM turnout_task_limits WHERE name = ? "
    "FOR UPDATE"
)
# The ready tasks of prioritized instances, read from the (few) prioritized instances out:
# LATERAL on PostgreSQL, CROSS JOIN (which fixes the order of the loops) on SQLite.
# Both take the task name and `now`.
_READY = "t.status = 'ready' AND t.name = ? AND t.ready_at <= ?"
PRIORITIZED = {
    True: "turnout_priorities p CROSS JOIN LATERAL (SELECT t.id, t.input, t.ready_at FROM "
    f"turnout_tasks t WHERE t.instance_id = p.instance_id AND {_READY} OFFSET 0) t",
    False: "turnout_priorities p CROSS JOIN turnout_tasks t WHERE "
    f"t.instance_id = p.instance_id AND {_READY}",
}


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
            claimed = _claim_in_one(tx, limits[name], worker, lease, left, now, far)
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


@functools.lru_cache(maxsize=256)
def partition_path(partition: str) -> tuple[str | int, ...] | None:
    """The keys `partition` reads from the task's input when it is a plain path
    (`input.customer`, `input["order"]["shop"]`, `input.lines[0]`), so that a claim can read
    it in SQL; None for any other expression, which the claim evaluates in Python."""
    try:
        node = ast.parse(partition, mode="eval").body
    except SyntaxError:
        return None
    keys: list[str | int] = []
    while not isinstance(node, ast.Name):
        if isinstance(node, ast.Attribute):
            keys.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            key = node.slice.value
            if isinstance(key, bool) or not isinstance(key, str | int):
                return None
            keys.append(key)
            node = node.value
        else:
            return None
    if node.id != "input" or not keys or any(isinstance(k, str) and '"' in k for k in keys):
        return None
    return tuple(reversed(keys))


def _partition_sql(limit: TaskLimit, postgres: bool) -> tuple[str, Any] | None:
    """(SQL of the partition of a task row `t`, its parameter) when the claim can read it in
    SQL: JSON text on SQLite, jsonb on PostgreSQL, 'null' where the path leads nowhere."""
    return None if limit.partition is None else _path_sql(limit.partition, postgres)


@functools.lru_cache(maxsize=256)
def _path_sql(partition: str, postgres: bool) -> tuple[str, Any] | None:
    path = partition_path(partition)
    if path is None:
        return None
    if postgres:
        # The path as the text of an array, one parameter the driver sends as it is.
        elements = ",".join(_array_element(str(key)) for key in path)
        return "COALESCE(t.input #> ?::text[], 'null'::jsonb)", f"{{{elements}}}"
    if sqlite3.sqlite_version_info < (3, 38):  # no -> operator
        return None
    steps = "".join(f"[{key}]" if isinstance(key, int) else f'."{key}"' for key in path)
    return "COALESCE(t.input -> ?, 'null')", f"${steps}"


def _array_element(text: str) -> str:
    """`text` as an element of a PostgreSQL array's text form: quoted, its \\ and " escaped."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def widened(limits: dict[str, TaskLimit], names: list[str] | None, postgres: bool) -> list[str]:
    """The names of a claim (None: any) whose claims looked only at their first few ready
    tasks per slot: on PostgreSQL, those under partitions read in SQL. When such a claim
    comes back with fewer tasks than asked, the caller claims these names again with `far`
    for the rest: tasks of free partitions may wait behind many of busy ones.

    The near claim stays a small statement (a window of PARTITION_WINDOW in every claim cost
    it a third); the second transaction is paid only by claims that came back short."""
    if not postgres:
        return []  # SQLite's claim widens its window itself, in the same transaction
    candidates = sorted(limits) if names is None else [n for n in names if n in limits]
    return [
        name
        for name in candidates
        if limits[name].partition is not None and in_one_statement(limits[name], postgres)
    ]


def in_one_statement(limit: TaskLimit, postgres: bool) -> bool:
    """Whether a claim under `limit` is one statement: no rate limit, and a partition (if
    any) that SQL can read."""
    return limit.rate is None and (
        limit.partition is None or _partition_sql(limit, postgres) is not None
    )


def _candidates(postgres: bool, key: str | None, size: str) -> str:
    """SQL of the first `size` ready tasks of :name of each kind, prioritized and not, as
    (id, rank, at[, k: the partition])."""
    column = "" if key is None else f", {key} AS k"
    prioritized = PRIORITIZED[postgres].replace("?", ":name", 1).replace("?", ":at", 1)
    return (
        f"SELECT * FROM (SELECT t.id, p.priority AS rank, t.ready_at AS at{column} FROM "
        f"{prioritized} ORDER BY p.priority DESC, t.ready_at LIMIT {size}) ranked "
        f"UNION ALL SELECT * FROM (SELECT t.id, 0 AS rank, t.ready_at AS at{column} "
        "FROM turnout_tasks t WHERE t.status = 'ready' AND t.name = :name AND t.ready_at <= :at "
        "AND NOT EXISTS (SELECT 1 FROM turnout_priorities p WHERE p.instance_id = "
        f"t.instance_id) ORDER BY t.ready_at LIMIT {size}) plain"
    )


def _placed(key: str, per_one: bool, size: str) -> str:
    """SQL (PostgreSQL) of the first :wanted of the candidates in a window of `size` whose
    place in their partition, after the tasks of it running (`busy`, see _claim_sql), is
    within :per, in claim order. With one per partition: the first of each partition not
    running."""
    candidates = _candidates(True, key, size)
    if per_one:
        return (
            "SELECT id, rank, at FROM (SELECT DISTINCT ON (c.k) c.id, c.rank, c.at FROM "
            f"({candidates}) c, busy b WHERE c.k <> ALL (b.ks) ORDER BY c.k, c.rank DESC, c.at) "
            "placed ORDER BY rank DESC, at LIMIT :wanted"
        )
    return (
        "SELECT id, rank, at FROM (SELECT c.id, c.rank, c.at, row_number() OVER "
        "(PARTITION BY c.k ORDER BY c.rank DESC, c.at) + COALESCE(b.running, 0) AS place "
        f"FROM ({candidates}) c LEFT JOIN busy b ON b.k = c.k) placed "
        "WHERE place <= :per ORDER BY rank DESC, at LIMIT :wanted"
    )


@functools.lru_cache(maxsize=64)
def _claim_sql(postgres: bool, limited: bool, key: str | None, per_one: bool) -> str:
    """The claim of _claim_in_one as the driver takes it, with named parameters: :worker,
    :at, :until, :name, :wanted, :concurrency (when `limited`), and under partitions (read
    by `key`, PostgreSQL only) :key, :per and :window (how many ready tasks of each kind it
    looks through)."""
    # How many it may take: :wanted, or fewer under a concurrency limit (the running tasks
    # counted up to the limit).
    allowed = ":wanted"
    if limited:
        least = "LEAST" if postgres else "min"
        running = RUNNING.replace("?", ":name")
        allowed = (
            f"{least}(:wanted, :concurrency - (SELECT count(*) FROM ({running} "
            "LIMIT :concurrency) running))"
        )
    if key is None:
        chosen = _candidates(postgres, None, ":wanted")
    else:
        key = key.replace("?", ":key")
        running = RUNNING.replace("?", ":name")
        if per_one:
            busy = f"SELECT ARRAY(SELECT {key} FROM ({running} OFFSET 0) t) AS ks"
        else:
            busy = f"SELECT {key} AS k, count(*) AS running FROM ({running} OFFSET 0) t GROUP BY 1"
        chosen = f"WITH busy AS ({busy}) {_placed(key, per_one, ':window')}"
    # The first `allowed` of them in claim order.
    chosen = f"SELECT id FROM ({chosen}) c ORDER BY rank DESC, at LIMIT {allowed}"
    # On PostgreSQL the chosen ids are an array, and the check that each is still ready is
    # written so that no index serves it: the update looks each one up by its key rather
    # than walking every ready task for them.
    among = f"= ANY(ARRAY({chosen}))" if postgres else f"IN ({chosen})"
    sql = (
        "UPDATE turnout_tasks SET status = 'claimed', worker = :worker, claimed_at = :at, "
        f"lease_until = :until, attempt = attempt + 1 WHERE id {among} AND "
        f"(status = 'ready') IS TRUE RETURNING {_TASK_FIELDS}"
    )
    return re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql) if postgres else sql


def _claim_in_one(
    tx: Transaction,
    limit: TaskLimit,
    worker: str,
    lease: timedelta,
    wanted: int,
    now: datetime,
    far: bool = False,
) -> Callable[[], list[TaskRow]]:
    """The claim of a name without a rate limit, in one statement after the lock of its
    limits row (on PostgreSQL both travel with the COMMIT, as the unlimited claim does): the
    count of running tasks, the partitions and the choice in priority order are SQL.

    Under partitions each candidate is placed within its partition, after the tasks of it
    already running, and those placed within `partition_limit` are taken in order. The
    candidates are the first few ready tasks per free slot (of each kind, prioritized or
    not), or with `far` the first PARTITION_WINDOW: a claim that came back short is made
    again so, in a transaction of its own (`widened`). On SQLite a partitioned claim is
    _claim_placed_here."""
    key = _partition_sql(limit, tx.postgres) if limit.partition is not None else None
    if key is not None and not tx.postgres:
        rows = _claim_placed_here(tx, limit, key, worker, lease, wanted, now)
        return lambda: rows
    if tx.postgres:
        _run(tx, LOCK_FOR_FEW, (limit.name,))
    sql = _claim_sql(
        tx.postgres,
        limit.concurrency is not None,
        None if key is None else key[0],
        limit.partition_limit == 1,
    )
    params = {
        "worker": worker,
        "at": tx._time(now),
        "until": tx._time(now + lease),
        "name": limit.name,
        "wanted": wanted,
        "concurrency": limit.concurrency,
    }
    if key is not None:
        window = PARTITION_WINDOW if far else _near(wanted)
        params.update(key=key[1], per=limit.partition_limit, window=window)
    cursor = _cursor(tx)
    cursor.execute(sql, params)

    def claimed() -> list[TaskRow]:
        return sorted((tx._task(r) for r in cursor.fetchall()), key=lambda t: (t.ready_at, t.id))

    if tx.postgres:
        return claimed
    rows = claimed()  # SQLite steps a statement as it is read: read it in the transaction
    return lambda: rows


def _claim_placed_here(
    tx: Transaction,
    limit: TaskLimit,
    key: tuple[str, Any],
    worker: str,
    lease: timedelta,
    wanted: int,
    now: datetime,
) -> list[TaskRow]:
    """The partitioned claim on SQLite, where a statement is a call in this process and the
    claim holds the only write lock: one read of the partitions running and of the first
    candidates of each kind, the choice made here, and an update of the chosen by their key.
    It reads as many ready tasks (of each kind) as it may take; only when those give too few,
    four per slot, and then PARTITION_WINDOW: reads in the process cost little, so the
    window widens in steps."""
    cursor = _cursor(tx)
    read = _placing_sql(key[0], cursor.execute(ANY_PRIORITY).fetchone() is not None)
    at = tx._time(now)
    for window in (wanted, wanted * 4, max(wanted * 4, PARTITION_WINDOW)):
        params = {"name": limit.name, "key": key[1], "at": at, "window": window}
        rows = cursor.execute(read, params).fetchall()
        # The rows come as the statement reads them: the partitions running, then the
        # candidates in claim order but for the prioritized below 0, which go last.
        busy: dict[Any, int] = {}
        first: list[tuple[str, Any]] = []
        last: list[tuple[str, Any]] = []
        ranked = 0
        for kind, k, number, task_id in rows:
            if kind == 0:
                busy[k] = number
                continue
            if kind == 1:
                ranked += 1
            (last if number < 0 else first).append((task_id, k))
        allowed = wanted
        if limit.concurrency is not None:
            allowed = min(wanted, limit.concurrency - sum(busy.values()))
        if allowed <= 0:
            return []
        chosen = []
        for task_id, k in first + last if last else first:
            placed = busy.get(k, 0)
            if placed < limit.partition_limit:
                busy[k] = placed + 1
                chosen.append(task_id)
                if len(chosen) == allowed:
                    break
        full = max(ranked, len(first) + len(last) - ranked) == window  # more may be ready
        if len(chosen) == allowed or not full:
            break
    if not chosen:
        return []
    marks = ", ".join("?" * len(chosen))
    claimed = cursor.execute(
        "UPDATE turnout_tasks SET status = 'claimed', worker = ?, claimed_at = ?, "
        f"lease_until = ?, attempt = attempt + 1 WHERE id IN ({marks}) AND "
        f"(status = 'ready') IS TRUE RETURNING {_TASK_FIELDS}",
        (worker, at, tx._time(now + lease), *chosen),
    ).fetchall()
    return sorted((tx._task(r) for r in claimed), key=lambda t: (t.ready_at, t.id))


@functools.lru_cache(maxsize=64)
def _placing_sql(key: str, prioritized: bool) -> str:
    """What _claim_placed_here reads, in one statement: (0, partition, tasks running) per
    busy partition, then (1, partition, priority, id) for the first `:window` ready tasks
    of prioritized instances and (2, ...) for as many of the others. Without `prioritized`
    (no instance has a priority) only the running and the others."""
    key = key.replace("?", ":key")
    running = (
        f"SELECT 0, k, count(*), NULL FROM (SELECT {key} AS k FROM turnout_tasks t "
        "WHERE t.status = 'claimed' AND t.name = :name) GROUP BY k"
    )
    ranked = (
        f"SELECT * FROM (SELECT 1, {key}, p.priority, t.id FROM "
        f"{PRIORITIZED[False].replace('?', ':name', 1).replace('?', ':at', 1)} "
        "ORDER BY p.priority DESC, t.ready_at LIMIT :window)"
    )
    others = "NOT EXISTS (SELECT 1 FROM turnout_priorities p WHERE p.instance_id = t.instance_id)"
    plain = (
        f"SELECT * FROM (SELECT 2, {key}, 0, t.id FROM turnout_tasks t WHERE t.status = "
        f"'ready' AND t.name = :name AND t.ready_at <= :at{f' AND {others}' * prioritized} "
        "ORDER BY t.ready_at LIMIT :window)"
    )
    return " UNION ALL ".join([running, ranked, plain] if prioritized else [running, plain])


# Whether any instance has a priority: read first by a claim on SQLite (which holds the
# write lock), so that without priorities it reads the others alone.
ANY_PRIORITY = "SELECT 1 FROM turnout_priorities LIMIT 1"


def _near(wanted: int) -> int:
    """How many ready tasks of each kind a partitioned claim looks at first: half as many
    again as it may take, so that a few of busy partitions among them still leave enough."""
    return wanted + (wanted + 1) // 2


def _cursor(tx: Transaction) -> Any:
    return tx.cursor.connection.cursor()


def _run(tx: Transaction, sql: str, params: Sequence[Any] | dict[str, Any]) -> Any:
    cursor = _cursor(tx)
    cursor.execute(driver_sql(sql, tx.postgres), params)
    return cursor


def _claim_limited(
    tx: Transaction, limit: TaskLimit, worker: str, lease: timedelta, wanted: int, now: datetime
) -> list[TaskRow]:
    lock = " FOR UPDATE" if tx.postgres else ""
    found = _run(
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
    marks = ", ".join("?" * len(chosen))
    claimed = _run(
        tx,
        "UPDATE turnout_tasks SET status = 'claimed', worker = ?, claimed_at = ?, "
        f"lease_until = ?, attempt = attempt + 1 WHERE id IN ({marks}) AND status = 'ready' "
        f"RETURNING {_TASK_FIELDS}",
        (worker, tx._time(now), tx._time(now + lease), *chosen),
    ).fetchall()
    rows = {row.id: row for row in (tx._task(r) for r in claimed)}
    if next_start is not None and limit.interval is not None:
        next_start += limit.interval * len(rows)
        _run(
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
    return int(_run(tx, sql, (name,)).fetchone()[0])


def running_inputs(tx: Transaction, name: str) -> list[Any]:
    """The inputs of the tasks named `name` that are running (claimed) now."""
    rows = _run(
        tx, "SELECT input FROM turnout_tasks WHERE status = 'claimed' AND name = ?", (name,)
    ).fetchall()
    return [tx.read_json(row[0]) for row in rows]


def ready_in_order(tx: Transaction, name: str, now: datetime, limit: int) -> list[tuple[str, Any]]:
    """(id, input) of the ready tasks named `name`: those of instances with a priority
    above 0, highest first, then the others (below 0 last), each the longest ready first.

    Two reads rather than one join, so that the tasks of priority 0 (most, as a rule) are
    read in the order of the index on (status, ready_at), never sorted."""
    at = tx._time(now)
    ranked = _run(
        tx,
        f"SELECT t.id, t.input, p.priority FROM {PRIORITIZED[tx.postgres]} "
        "ORDER BY p.priority DESC, t.ready_at, t.id LIMIT ?",
        (name, at, limit),
    ).fetchall()
    first = [(row[0], row[1]) for row in ranked if row[2] > 0]
    last = [(row[0], row[1]) for row in ranked if row[2] < 0]
    rows = first
    if len(first) < limit:
        rows += _run(
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
    rows = _run(
        tx,
        "UPDATE turnout_tasks SET status = 'claimed', worker = ?, claimed_at = ?, "
        "lease_until = ?, attempt = attempt + 1 WHERE id IN (SELECT id FROM turnout_tasks "
        f"WHERE status = 'ready' AND ready_at <= ? AND name NOT IN ({marks}) "
        f"ORDER BY ready_at LIMIT ?{lock}) RETURNING {_TASK_FIELDS}",
        (worker, tx._time(now), tx._time(now + lease), tx._time(now), *limited, limit),
    ).fetchall()
    claimed = sorted((tx._task(r) for r in rows), key=lambda t: (t.ready_at, t.id))
    return lambda: claimed

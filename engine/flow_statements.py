"""Claims under flow control that SQL decides: under a concurrency limit, under partitions
by a plain path of the task's input, or both (no rate limit). See flow_control.py for the
limits and the other claims.

On PostgreSQL such a claim is one statement after the lock of the name's limits row, sent
with the COMMIT as the unlimited claim is; its candidates are the first few ready tasks per
slot, and a claim under partitions that came back short is made again over PARTITION_WINDOW
(`widened`). On SQLite, where a statement is a call in this process and the claim holds the
only write lock, a partitioned claim reads its candidates, chooses them here and updates the
chosen by key, widening its look in steps.
"""

from __future__ import annotations

import ast
import functools
import re
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from .rows import TaskRow
from .transaction import _TASK_FIELDS, Transaction, driver_sql


class TaskLimit(Protocol):
    """What a claim here reads of `flow_control.TaskLimit`."""

    @property
    def name(self) -> str: ...
    @property
    def concurrency(self) -> int | None: ...
    @property
    def rate(self) -> tuple[int, float] | None: ...
    @property
    def partition(self) -> str | None: ...
    @property
    def partition_limit(self) -> int: ...


# How many of a partitioned name's ready tasks a claim looks through for free partitions
# when the oldest few per free slot are not enough (SQLite: in the same transaction;
# PostgreSQL: in a second one, see `widened`).
PARTITION_WINDOW = 500
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
# A plan the server keeps for a connection's prepared statement may have been made while the
# table was empty (a sequential scan of every task, each claim), and a cost inflated by a
# plan turned off sets JIT compiling (0.6 s). So the lock of the limits row also turns all
# of these off, for the rest of the claim's transaction.
LOCK_FOR_FEW = (
    "SELECT set_config('enable_bitmapscan', 'off', true), "
    "set_config('enable_hashjoin', 'off', true), set_config('enable_seqscan', 'off', true), "
    "set_config('jit', 'off', true) FROM turnout_task_limits WHERE name = ? "
    "FOR UPDATE"
)
# Whether any instance has a priority: read first by a partitioned claim on SQLite (which
# holds the write lock), so that without priorities it reads the others alone.
ANY_PRIORITY = "SELECT 1 FROM turnout_priorities LIMIT 1"
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


def partition_sql(limit: TaskLimit, postgres: bool) -> tuple[str, Any] | None:
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


def widened(limits: Mapping[str, TaskLimit], names: list[str] | None, postgres: bool) -> list[str]:
    """The names of a claim (None: any) whose claims looked only at their first few ready
    tasks per slot: on PostgreSQL, those under partitions read in SQL. When such a claim
    comes back with fewer tasks than asked, the caller claims these names again with `far`
    for the rest: tasks of free partitions may wait behind many of busy ones.

    The near claim stays a small statement (a second, deeper window in every claim's
    statement cost it a sixth of its speed); the second transaction is paid only by claims
    that came back short."""
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
        limit.partition is None or partition_sql(limit, postgres) is not None
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
    place in their partition, after the tasks of it running (`busy`, see claim_sql), is
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
def claim_sql(postgres: bool, limited: bool, key: str | None, per_one: bool) -> str:
    """The claim of claim_in_one as the driver takes it, with named parameters: :worker,
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


def claim_in_one(
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
    key = partition_sql(limit, tx.postgres) if limit.partition is not None else None
    if key is not None and not tx.postgres:
        rows = _claim_placed_here(tx, limit, key, worker, lease, wanted, now)
        return lambda: rows
    if tx.postgres:
        run(tx, LOCK_FOR_FEW, (limit.name,))
    sql = claim_sql(
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
    cursor = cursor_of(tx)
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
    cursor = cursor_of(tx)
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
    claimed = claim_by_ids(tx, chosen, worker, now, lease)
    return sorted(claimed, key=lambda t: (t.ready_at, t.id))


def claim_by_ids(
    tx: Transaction, ids: list[str], worker: str, now: datetime, lease: timedelta
) -> list[TaskRow]:
    """Claim the tasks `ids` chosen in the process, those still ready. The ready check is
    written so that no index serves it: each task is looked up by its key."""
    if not ids:
        return []
    marks = ", ".join("?" * len(ids))
    rows = run(
        tx,
        "UPDATE turnout_tasks SET status = 'claimed', worker = ?, claimed_at = ?, "
        f"lease_until = ?, attempt = attempt + 1 WHERE id IN ({marks}) AND "
        f"(status = 'ready') IS TRUE RETURNING {_TASK_FIELDS}",
        (worker, tx._time(now), tx._time(now + lease), *ids),
    ).fetchall()
    return [tx._task(row) for row in rows]


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
    others = (
        " AND NOT EXISTS (SELECT 1 FROM turnout_priorities p WHERE p.instance_id = t.instance_id)"
        if prioritized
        else ""
    )
    plain = (
        f"SELECT * FROM (SELECT 2, {key}, 0, t.id FROM turnout_tasks t WHERE t.status = "
        f"'ready' AND t.name = :name AND t.ready_at <= :at{others} "
        "ORDER BY t.ready_at LIMIT :window)"
    )
    return " UNION ALL ".join([running, ranked, plain] if prioritized else [running, plain])


def _near(wanted: int) -> int:
    """How many ready tasks of each kind a partitioned claim on PostgreSQL looks at first:
    half as many again as it may take, so that a few of busy partitions among them still
    leave enough."""
    return wanted + (wanted + 1) // 2


def cursor_of(tx: Transaction) -> Any:
    return tx.cursor.connection.cursor()


def run(tx: Transaction, sql: str, params: Sequence[Any] | dict[str, Any]) -> Any:
    cursor = cursor_of(tx)
    cursor.execute(driver_sql(sql, tx.postgres), params)
    return cursor

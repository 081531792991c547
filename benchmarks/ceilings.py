"""Ceilings of the batched figures: the engine's own statements on the bare driver.

For each batched figure of `make bench` that missed its target, the same SQL text
(`engine.statements`, and the lock-ahead and read-many statements of `engine.batching` and
`engine.batch_events`) runs on the engine's own tables and rows, on sqlite3 or psycopg with
no engine Python between statements, in the transaction boundaries the engine uses:

- group commit: per transaction, B claimed tasks and their instances read ahead (one
  statement each), then per result the instance updated, its history entry, its change row,
  the next task inserted already claimed, the task marked done; COMMIT. B=32 against B=1
  (the one-commit-per-step form, whose read is the locking read of one task), beside
  `Engine.complete_batch` and `Engine.complete_and_claim` on the same kind of rows;
- send_many: 100 events per transaction (one read of the 100 rows, per event the update,
  history entry and change row, COMMIT) against one event per transaction (`RawBaseline`),
  beside `Engine.send_many` and `Engine.send`.

Each engine figure alternates with its ceiling (engine, bare, engine, bare, ...), the median
of five each, in one process on one connection. Run: `python -m benchmarks.ceilings
[--postgres URL]` (or TURNOUT_TEST_POSTGRES_URL); not part of `make bench`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engine import Engine
from engine.batch_events import _READ_MANY
from engine.batching import Answer
from engine.changes import NOTIFY_CHANGES
from engine.records import ClaimedTask
from engine.rows import new_id
from engine.transaction import _INSTANCE_FIELDS, _TASK_FIELDS

from .baseline import RawBaseline, _machine, bare_connection
from .figures import REPEATS, shown

HERE = Path(__file__).parent
WORKER = "ceilings"
NAMES = ["bench.step"]
NEXT_STATE = {"first": "second", "second": "third", "third": "finished"}
RETRY = '{"attempts":1,"delay_ms":1000,"backoff":2.0,"max_delay_ms":null,"jitter":false}'
LEASE = timedelta(seconds=30)
EVENTS_BATCH = 100


@dataclass
class Row:
    """One line of the table: an engine figure beside its bare-driver ceiling."""

    figure: str
    engine: float
    ceiling: float
    unit: str


# -- the bare driver ---------------------------------------------------------------------------
class Bare:
    """A driver connection (autocommit: BEGIN and COMMIT are sent as the engine sends them)."""

    def __init__(self, url: str) -> None:
        self.postgres, self.conn, self.sql = bare_connection(url)

    def transaction(self, body: Callable[[Any], None]) -> None:
        """`body(cursor)` between BEGIN (IMMEDIATE on SQLite) and COMMIT, pipelined on
        PostgreSQL as the engine's are, with the feed's NOTIFY after the COMMIT."""
        if self.postgres:
            with self.conn.pipeline():
                cursor = self.conn.cursor()
                cursor.execute("BEGIN")
                body(cursor)
                cursor.execute("COMMIT")
                cursor.execute(NOTIFY_CHANGES)
        else:
            cursor = self.conn.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            body(cursor)
            cursor.execute("COMMIT")

    def now(self) -> Any:
        """The time as the engine writes it: naive UTC, as text on SQLite."""
        now = datetime.now(UTC).replace(tzinfo=None)
        return now if self.postgres else now.isoformat(" ", "microseconds")

    def reader(self, cursor: Any) -> Any:
        """A cursor of its own for a read on PostgreSQL, as the engine's `_read`."""
        return self.conn.cursor() if self.postgres else cursor

    def close(self) -> None:
        self.conn.close()


def _lock_ahead_sql(count: int, postgres: bool) -> tuple[str, str]:
    """The two statements of `batching.lock_ahead` for `count` tasks (row locking)."""
    marks = ", ".join(["%s" if postgres else "?"] * count)
    lock = " FOR UPDATE" if postgres else ""
    instances = (
        f"SELECT {_INSTANCE_FIELDS} FROM turnout_instances WHERE id IN (SELECT instance_id "
        f"FROM turnout_tasks WHERE id IN ({marks})) ORDER BY id{lock}"
    )
    tasks = f"SELECT {_TASK_FIELDS} FROM turnout_tasks WHERE id IN ({marks}) ORDER BY id{lock}"
    return instances, tasks


def bare_steps(bare: Bare, held: list[str], batch: int) -> int:
    """Complete every task of `held` (claimed task ids) and each one's successors, `batch`
    results per transaction, with the engine's statements; the steps completed."""
    steps = 0
    while held:
        chunk, held = held[:batch], held[batch:]
        held.extend(_bare_batch(bare, chunk))
        steps += len(chunk)
    return steps


def _bare_batch(bare: Bare, task_ids: list[str]) -> list[str]:
    """One transaction of group commit; the ids of the next tasks it wrote claimed."""
    following: list[str] = []

    def body(cursor: Any) -> None:
        reading, tasks_read = bare.reader(cursor), bare.conn.cursor()
        if len(task_ids) > 1:
            instances_sql, tasks_sql = _lock_ahead_sql(len(task_ids), bare.postgres)
            reading.execute(instances_sql, task_ids)
            tasks_read.execute(tasks_sql, task_ids)
        else:  # alone, the engine's `Transaction.lock_task`
            reading.execute(bare.sql["lock_instance_of_task"], task_ids)
            tasks_read.execute(bare.sql["lock_task"], task_ids)
        instances = {row[0]: row for row in reading.fetchall()}
        tasks = {row[0]: row for row in tasks_read.fetchall()}
        now = bare.now()
        for task_id in task_ids:
            instance = instances[tasks[task_id][1]]
            following.extend(_bare_step(bare, cursor, instance, task_id, now))

    bare.transaction(body)
    return following


def _bare_step(bare: Bare, cursor: Any, row: Any, task_id: str, now: Any) -> list[str]:
    """A task's result applied to its instance `row`: the statements of `complete_task`."""
    instance_id, state, revision, seq = row[0], row[4], row[9], row[10]
    target = NEXT_STATE[state]
    context = row[7] if bare.postgres else json.loads(row[7])
    context[state] = None
    context_text = json.dumps(context, separators=(",", ":"))
    finishing = target == "finished"
    changed = (target, "succeeded") if finishing else (target,)
    cursor.execute(
        bare.sql["update_instance_state_status" if finishing else "update_instance_state"],
        (*changed, f'["{target}"]', context_text, _machine(target, revision + 1))
        + (revision + 1, seq + 1, now, instance_id, revision),
    )
    if not bare.postgres and cursor.rowcount != 1:
        raise RuntimeError("the revision moved")
    cursor.execute(
        bare.sql["append_history"],
        (instance_id, seq + 1, now, "task", "done", state, target, "null"),
    )
    cursor.execute(
        bare.sql["insert_change"],
        (instance_id, None, "bench_three_tasks", 1, revision + 1, "task", "done", state)
        + (target, "succeeded" if finishing else "running", seq + 1, seq + 1, now),
    )
    following = []
    if not finishing:
        next_id = new_id()
        lease_until = now + LEASE if bare.postgres else _later(now)
        cursor.execute(
            bare.sql["insert_task"],
            (next_id, instance_id, target, revision + 1, None, "bench.step", "task")
            + (context_text, 1, 1, RETRY, None, "claimed", WORKER, now, now, lease_until, now),
        )
        following.append(next_id)
    mark = "%s" if bare.postgres else "?"  # `Transaction.update_task`'s statement
    cursor.execute(f"UPDATE turnout_tasks SET status = {mark} WHERE id = {mark}", ("done", task_id))
    return following


def _later(now: str) -> str:
    return (datetime.fromisoformat(now) + LEASE).isoformat(" ", "microseconds")


def bare_events(bare: Bare, ids: list[str], batches: int) -> int:
    """`batches` transactions of one event to each of `ids` (toggles), with the statements
    of `send_many`: the rows read in one statement, then per event the update, the history
    entry and the change row; the events applied."""
    for _ in range(batches):
        bare.transaction(lambda cursor: _bare_events(bare, cursor, ids))
    return batches * len(ids)


def _bare_events(bare: Bare, cursor: Any, ids: list[str]) -> None:
    reading = bare.reader(cursor)
    if bare.postgres:
        reading.execute(_READ_MANY["row"], (ids,))
    else:
        reading.execute(_READ_MANY["sqlite"], (json.dumps(ids),))
    rows = {row[0]: row for row in reading.fetchall()}
    now = bare.now()
    for instance_id in ids:
        row = rows[instance_id]
        state, revision, seq = row[4], row[9], row[10]
        target = "b" if state == "a" else "a"
        cursor.execute(
            bare.sql["update_instance_state_context_kept"],
            (target, f'["{target}"]', _machine(target, revision + 1), revision + 1)
            + (seq + 1, now, instance_id, revision),
        )
        if not bare.postgres and cursor.rowcount != 1:
            raise RuntimeError("the revision moved")
        cursor.execute(
            bare.sql["append_history"],
            (instance_id, seq + 1, now, "event", "flip", state, target, "null"),
        )
        cursor.execute(
            bare.sql["insert_change"],
            (instance_id, None, "bench_toggle", 1, revision + 1, "event", "flip", state)
            + (target, "running", seq + 1, seq + 1, now),
        )


# -- the engine --------------------------------------------------------------------------------
def claimed_instances(engine: Engine, count: int) -> list[ClaimedTask]:
    """`count` new three-task instances, each one's first task claimed (not timed)."""
    engine.start_many("bench_three_tasks", ({"n": n} for n in range(count)))
    return engine.claim_tasks(NAMES, WORKER, limit=count, expire=False)


def engine_steps(engine: Engine, held: list[ClaimedTask], batch: int) -> int:
    """Complete `held` and each one's successors, `batch` results per `complete_batch`
    (one `complete_and_claim` each when 1); the steps completed."""
    steps = 0
    while held:
        chunk, held = held[:batch], held[batch:]
        if batch == 1:
            task = chunk[0]
            ok, following = engine.complete_and_claim(
                task.id, WORKER, None, NAMES, attempt=task.attempt
            )
            assert ok
            held.extend(following)
        else:
            answers = [Answer(task.id, WORKER, None, NAMES, task.attempt) for task in chunk]
            for outcome in engine.complete_batch(answers):
                assert not isinstance(outcome, Exception) and outcome[0]
                held.extend(outcome[1])
        steps += len(chunk)
    return steps


def timed(run: Callable[[], int]) -> float:
    began = time.perf_counter()
    done = run()
    return done / (time.perf_counter() - began)


def alternated(
    engine_run: Callable[[], float], bare_run: Callable[[], float]
) -> tuple[float, float]:
    """(engine, bare) rates, each the median of REPEATS runs taken in turn."""
    rates = [(engine_run(), bare_run()) for _ in range(REPEATS)]
    return statistics.median(r[0] for r in rates), statistics.median(r[1] for r in rates)


def group_commit(url: str, label: str, instances: dict[int, int]) -> list[Row]:
    """Steps/s of three-task instances, `batch` results per transaction, for each
    {batch: instances per run}: the engine against the bare driver."""
    engine = Engine(url)
    bare = Bare(url)
    rows = []
    try:
        engine.deploy(HERE / "definitions" / "three_tasks.yaml")
        for batch, count in instances.items():

            def by_engine(batch: int = batch, count: int = count) -> float:
                held = claimed_instances(engine, count)
                return timed(lambda: engine_steps(engine, held, batch))

            def by_bare(batch: int = batch, count: int = count) -> float:
                held = [task.id for task in claimed_instances(engine, count)]
                return timed(lambda: bare_steps(bare, held, batch))

            name = f"3-task steps, {batch} per commit, one process ({label})"
            rows.append(Row(name, *alternated(by_engine, by_bare), "steps/s"))
    finally:
        bare.close()
        engine.close()
    return rows


def event_batches(url: str, label: str, batches: int, singles: int) -> list[Row]:
    """send_many in batches of 100 and send one by one: the engine against the bare driver
    (the batch's statements; `RawBaseline` for one event)."""
    engine = Engine(url)
    bare = Bare(url)
    raw = RawBaseline(url, EVENTS_BATCH)
    try:
        engine.deploy(HERE / "definitions" / "toggle.yaml")
        ids = engine.start_many("bench_toggle", ({} for _ in range(EVENTS_BATCH)))
        events = [(instance_id, "flip") for instance_id in ids]

        def many_by_engine() -> int:
            for _ in range(batches):
                assert all(outcome.ok for outcome in engine.send_many(events))
            return batches * len(events)

        def one_by_engine() -> int:
            for number in range(singles):
                engine.send(ids[number % len(ids)], "flip")
            return singles

        def one_by_bare() -> int:
            for number in range(singles):
                raw.send(number % EVENTS_BATCH)
            return singles

        many = alternated(
            lambda: timed(many_by_engine), lambda: timed(lambda: bare_events(bare, ids, batches))
        )
        one = alternated(lambda: timed(one_by_engine), lambda: timed(one_by_bare))
    finally:
        raw.close()
        bare.close()
        engine.close()
    return [
        Row(f"send_many, batches of {EVENTS_BATCH} ({label})", *many, "events/s"),
        Row(f"send, one event per call ({label})", *one, "events/s"),
    ]


# -- the table ---------------------------------------------------------------------------------
def table(rows: list[Row]) -> str:
    """The figures, engine beside ceiling, and each batched figure's ratio to its unbatched
    one, for the engine and for the ceiling (the target's comparison)."""
    lines = ["| figure | engine | bare-driver ceiling | engine/ceiling |", "|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row.figure} | {shown(row.engine)} {row.unit} | {shown(row.ceiling)} "
            f"{row.unit} | {row.engine / row.ceiling:.2f}x |"
        )
    lines += ["", "| comparison of the target | engine | ceiling |", "|---|---|---|"]
    by_name = {row.figure: row for row in rows}
    for label in ("SQLite", "PostgreSQL"):
        pairs = [
            (
                f"3-task steps, 32 per commit, one process ({label})",
                f"3-task steps, 1 per commit, one process ({label})",
                "group commit / one per step",
            ),
            (
                f"send_many, batches of {EVENTS_BATCH} ({label})",
                f"send, one event per call ({label})",
                "send_many / send",
            ),
        ]
        for batched, single, what in pairs:
            if batched in by_name and single in by_name:
                high, low = by_name[batched], by_name[single]
                lines.append(
                    f"| {what} ({label}) | {high.engine / low.engine:.2f}x | "
                    f"{high.ceiling / low.ceiling:.2f}x |"
                )
        batched_row = by_name.get(f"3-task steps, 32 per commit, one process ({label})")
        if batched_row is not None:
            lines.append(
                f"| instances/s at 32 per commit ({label}) | {shown(batched_row.engine / 3)} | "
                f"{shown(batched_row.ceiling / 3)} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=os.environ.get("TURNOUT_TEST_POSTGRES_URL", ""))
    options = parser.parse_args()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as workdir:
        url = f"sqlite:///{workdir}/ceilings.db"
        rows += group_commit(url, "SQLite", {32: 320, 1: 96})
        rows += event_batches(url, "SQLite", batches=10, singles=500)
    if options.postgres:
        from .contention import drop_schema, fresh_schema

        engine_url, schema = fresh_schema(options.postgres)
        try:
            rows += group_commit(engine_url, "PostgreSQL", {32: 192, 1: 64})
            rows += event_batches(engine_url, "PostgreSQL", batches=5, singles=200)
        finally:
            drop_schema(options.postgres, schema)
    print(table(rows))


if __name__ == "__main__":
    main()

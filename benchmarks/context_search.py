"""Search by context among a million instances: `Engine.instances(where=...)`, first page, with
the index `Engine.create_context_index` makes (the documented one), beside the same search
before the index and the listing without `where`, on SQLite and on PostgreSQL.

The million rows are copies of one real instance made by SQL, each with its own context:
`customer.tier` is "platinum" for one in 10,000, "gold" for one in 100, "silver" for one in
ten, else "bronze"; `total` is a whole number from 0 to 9,999 spread evenly.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from engine import Engine

from .scale import timed

HERE = Path(__file__).parent
TOTAL = 1_000_000
PAGE = 50
RARE = {"customer.tier": "platinum"}  # 100 of the million
NARROW = {"total": {">=": 100, "<": 110}}  # 1,000 of the million
WIDE = {"total": {">=": 5000}}  # half of them
COLUMNS = (
    "id, key, definition, version, state, active, status, context, machine, revision, "
    "history_seq, created_at, updated_at"
)
TIER = (
    "CASE WHEN i % 10000 = 0 THEN 'platinum' WHEN i % 100 = 0 THEN 'gold' "
    "WHEN i % 10 = 0 THEN 'silver' ELSE 'bronze' END"
)
TOTAL_OF = "(i * 7919) % 10000"


@dataclass
class Searched:
    """Median milliseconds of each first page, and how long the filling and indexing took."""

    database: str
    rare: float
    rare_unindexed: float
    narrow: float
    narrow_unindexed: float
    wide: float
    bare: float
    fill: float
    index: float

    def figures(self) -> list[tuple[str, float, str, float, str]]:
        """(name, ms, baseline name, baseline ms, target) of each figure of `make bench`."""
        among = f"first {PAGE} among 1,000,000, documented index ({self.database})"
        before = "the same before the index"
        bare = "the listing without where"
        return [
            (
                f"where= tier equality, 100 match, {among}",
                self.rare,
                before,
                self.rare_unindexed,
                "< 50 ms",
            ),
            (
                f"where= total range, 1,000 match, {among}",
                self.narrow,
                before,
                self.narrow_unindexed,
                "< 50 ms",
            ),
            (f"where= total range, half match, {among}", self.wide, bare, self.bare, "< 50 ms"),
        ]


def _fill_sqlite(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    # One pass over the disk: a rollback journal (the new pages need none) instead of the
    # write-ahead log, which would write every page twice; WAL again after.
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    template = conn.execute("SELECT id FROM turnout_instances").fetchone()[0]
    conn.execute(
        f"INSERT INTO turnout_instances ({COLUMNS}) "
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "SELECT printf('%032x', i), NULL, definition, version, state, active, status, "
        f"json_object('customer', json_object('tier', {TIER}), 'total', {TOTAL_OF}, "
        "'note', 'a line of text such as an instance keeps'), machine, revision, history_seq, "
        "created_at, updated_at FROM n, turnout_instances WHERE turnout_instances.id = ?",
        (TOTAL, template),
    )
    conn.execute("DELETE FROM turnout_instances WHERE id = ?", (template,))
    conn.execute("COMMIT")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()


def _fill_postgres(url: str) -> None:
    # psycopg's placeholders take %; 7919 million is past PostgreSQL's integer.
    tier, total = TIER.replace("%", "%%"), "(i::bigint * 7919) %% 10000"
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        row = conn.execute("SELECT id FROM turnout_instances").fetchone()
        assert row is not None
        conn.execute(
            f"INSERT INTO turnout_instances ({COLUMNS}) "
            "SELECT lpad(to_hex(i), 32, '0'), NULL, definition, version, state, active, status, "
            f"jsonb_build_object('customer', jsonb_build_object('tier', {tier}), "
            f"'total', {total}, 'note', 'a line of text such as an instance keeps'), "
            "machine, revision, history_seq, created_at, updated_at "
            "FROM generate_series(1, %s) AS i, turnout_instances WHERE turnout_instances.id = %s",
            (TOTAL, row[0]),
        )
        conn.execute("DELETE FROM turnout_instances WHERE id = %s", (row[0],))
        conn.execute("ANALYZE turnout_instances")


def search(url: str, database: str, fill: Callable[[], None], repeats: int = 21) -> Searched:
    """Fill the database at `url` (one template instance started, then `fill`), time the
    searches before and after `create_context_index` of both paths."""
    engine = Engine(url)
    engine.deploy(HERE / "definitions" / "toggle.yaml")
    engine.start("bench_toggle")
    engine.close()  # the fill has the database to itself
    began = time.perf_counter()
    fill()
    filled = time.perf_counter() - began
    engine = Engine(url)
    try:

        def page(where: Any) -> Callable[[], list[Any]]:
            return lambda: engine.instances(definition="bench_toggle", where=where, limit=PAGE)

        assert len(page(RARE)()) == PAGE
        rare_unindexed = timed(page(RARE), 3)
        narrow_unindexed = timed(page(NARROW), 3)
        began = time.perf_counter()
        engine.create_context_index("customer.tier")
        engine.create_context_index("total")
        indexed = time.perf_counter() - began
        return Searched(
            database=database,
            rare=timed(page(RARE), repeats) * 1000,
            rare_unindexed=rare_unindexed * 1000,
            narrow=timed(page(NARROW), repeats) * 1000,
            narrow_unindexed=narrow_unindexed * 1000,
            wide=timed(page(WIDE), repeats) * 1000,
            bare=timed(page(None), repeats) * 1000,
            fill=filled,
            index=indexed,
        )
    finally:
        engine.close()


def on_sqlite(workdir: Path) -> Searched:
    """The searches on an SQLite file of a million instances."""
    path = workdir / "search.db"
    return search(f"sqlite:///{path}", "SQLite", lambda: _fill_sqlite(path))


def on_postgres(url: str) -> Searched:
    """The searches on a fresh PostgreSQL schema of a million instances, dropped after."""
    from .contention import drop_schema, fresh_schema

    engine_url, schema = fresh_schema(url)
    try:
        return search(engine_url, "PostgreSQL", lambda: _fill_postgres(engine_url))
    finally:
        drop_schema(url, schema)

"""A database "written by a release": the rows of every table after instances were left in
every status, kept in `release_rows.json` so that upgrade tests load what an older release
wrote. Regenerate it (with the release whose schema revision it is, see REVISION) by running
`python tests/schema/release_rows.py` from the repository.

The instances, by their `key`:
- `done`, `failed`, `cancelled`: finished (a task answered, a task that raised, a cancel);
- `on-task`: waiting for its task `jobs.work`;
- `on-events`: a parallel state, one region approved, the other waiting for `finance_ok`;
- `on-timer`: waiting for `answer`, its 10-minute reminder timer not yet due;
- `calling-task`: in a call state whose child waits for its task `child.work`;
- `calling-held`: in a call state whose child waits for the event `finish`.
"""

from __future__ import annotations

import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).parent.parent.parent
DEFINITIONS = ROOT / "tests" / "engine" / "definitions"
ROWS = Path(__file__).with_suffix(".json")
REVISION = "0001"  # the schema revision the rows were written at
START = datetime(2026, 1, 1, tzinfo=UTC)  # the clock the rows were written at
NAMES = ("one_task", "fragile", "approvals", "reminder", "call_parent", "call_child")


def write(url: str) -> dict[str, list[dict[str, Any]]]:
    """Leave instances in every status in the database at `url`; give its rows by table."""
    from engine import Engine
    from engine.tables import TABLES

    with Engine(url, clock=lambda: START) as engine:
        for name in NAMES:
            engine.deploy(DEFINITIONS / f"{name}.yaml")
        engine.task("jobs.work")(lambda data: {"worked": True})
        engine.task("child.work")(lambda data: {"child": "worked"})

        def fragile(data: Any) -> Any:
            raise ValueError("broken on purpose")

        engine.task("jobs.fragile")(fragile)
        engine.start("one_task", {"n": 1}, key="done")
        engine.start("fragile", {}, key="failed")
        engine.cancel(engine.start("approvals", {}, key="cancelled").id, "no longer wanted")
        engine.start("call_parent", {"n": 2, "hold": True}, key="calling-held")
        engine.run_until_idle()
        engine.start("one_task", {"n": 3}, key="on-task")
        engine.send(engine.start("approvals", {}, key="on-events").id, "legal_ok")
        engine.start("reminder", {}, key="on-timer")
        engine.start("call_parent", {"n": 4, "hold": True}, key="calling-task")
    database = sa.create_engine(url)
    try:
        with database.connect() as conn:
            return {table.name: _rows(conn, table) for table in TABLES}
    finally:
        database.dispose()


def _rows(conn: sa.Connection, table: sa.Table) -> list[dict[str, Any]]:
    order = list(table.primary_key.columns)
    rows = conn.execute(sa.select(table).order_by(*order)).mappings().all()
    return [{name: _plain(value) for name, value in row.items()} for row in rows]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat()
    return value


def load(conn: sa.Connection) -> None:
    """Insert the kept rows into the tables of the database of `conn` (at REVISION), as they
    are there (reflected), so the rows fit the revision whatever `tables.py` now says."""
    kept = json.loads(ROWS.read_text())
    metadata = sa.MetaData()
    for name, rows in kept.items():
        table = sa.Table(name, metadata, autoload_with=conn)
        dates = {column.name for column in table.c if isinstance(column.type, sa.DateTime)}
        for row in rows:
            for column in dates & row.keys():
                if row[column] is not None:
                    row[column] = datetime.fromisoformat(row[column])
        if rows:
            conn.execute(table.insert(), rows)
        if conn.dialect.name == "postgresql" and rows and "seq" in table.c:
            if table.c.seq.autoincrement is True or table.c.seq.server_default is not None:
                # rows came with their numbers: the next one the sequence gives follows them
                conn.execute(
                    sa.text(
                        f"SELECT setval(pg_get_serial_sequence('{name}', 'seq'), "
                        f"(SELECT max(seq) FROM {name}))"
                    )
                )


def main() -> None:
    """Write the rows afresh into `release_rows.json`, from a scratch SQLite database."""
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as scratch:
        rows = write(f"sqlite:///{scratch}/release.db")
    ROWS.write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
    print(f"wrote {sum(map(len, rows.values()))} rows to {ROWS}")


if __name__ == "__main__":
    main()

"""`turnout` on an SQLite file that is not a database, or that another process holds locked:
one line on stderr naming the file, or the answer at once, never a traceback or a silent
minute of waiting."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from turnout_processes import DEFINITIONS, run_turnout


def test_a_file_that_is_not_a_database_is_one_line_naming_it(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# turnout\n" * 200)
    result = run_turnout("list", "--db", f"sqlite:///{readme}")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: the file {readme} is not an SQLite database (nothing was changed)"
    ]


def test_list_answers_at_once_while_another_process_holds_the_write_lock(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/turnout.db"
    assert run_turnout("deploy", str(DEFINITIONS / "door.yaml"), "--db", url).returncode == 0
    assert run_turnout("start", "surface_door", "--key", "front", "--db", url).returncode == 0
    holder = sqlite3.connect(tmp_path / "turnout.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        listed = run_turnout("list", "--db", url, timeout=30)
    finally:
        holder.close()
    assert listed.returncode == 0, listed.stderr
    assert "front" in listed.stdout

"""`turnout schedule`: add, list (with the next run in each schedule's time zone), show,
pause, resume and delete, and one plain line with exit status 2 or 1 for what is wrong."""

from __future__ import annotations

import json
from typing import Any

import pytest
from turnout_processes import DEFINITIONS, run_together, run_turnout


def one_line_error(result: Any) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return str(lines[0])


@pytest.fixture
def counter_db(sqlite_db: str) -> str:
    result = run_turnout("deploy", str(DEFINITIONS / "counter.yaml"), database=sqlite_db)
    assert result.returncode == 0, result.stderr
    return sqlite_db


def test_add_list_pause_resume_and_delete(counter_db: str) -> None:
    added = run_turnout(
        *("schedule", "add", "morning", "--definition", "surface_counter"),
        *("--cron", "0 7 * * 1-5", "--tz", "Europe/Paris", "-d", '{"count": 1}', "--json"),
        database=counter_db,
    )
    assert added.returncode == 0, added.stderr
    morning = json.loads(added.stdout)
    assert morning["expression"] == "0 7 * * 1-5"
    assert morning["next_run_local"].endswith(("T07:00:00+01:00", "T07:00:00+02:00"))
    assert morning["data"] == {"count": 1}
    assert morning["overlap"] == "skip" and morning["catch_up"] == "last"
    often = run_turnout(
        *("schedule", "add", "often", "--definition", "surface_counter", "--every", "10m"),
        *("--overlap", "allow", "--catch-up", "all"),
        database=counter_db,
    )
    assert often.returncode == 0, often.stderr
    listed = run_turnout("schedule", "list", "--json", database=counter_db)
    assert [s["name"] for s in json.loads(listed.stdout)] == ["morning", "often"]
    table, paused = run_together(
        ["schedule", "list"], ["schedule", "pause", "often", "--json"], database=counter_db
    )
    assert table.returncode == 0, table.stderr
    assert "Europe/Paris" in table.stdout and "every 10m" in table.stdout
    assert json.loads(paused.stdout)["paused"] is True
    resumed = run_turnout("schedule", "resume", "often", "--json", database=counter_db)
    assert json.loads(resumed.stdout)["paused"] is False
    deleted = run_turnout("schedule", "delete", "often", database=counter_db)
    assert deleted.returncode == 0, deleted.stderr
    shown = run_turnout("schedule", "show", "morning", database=counter_db)
    assert "timezone: Europe/Paris" in shown.stdout
    listed = run_turnout("schedule", "list", "--json", database=counter_db)
    assert [s["name"] for s in json.loads(listed.stdout)] == ["morning"]


def test_mistakes_get_one_line_and_an_exit_status(counter_db: str) -> None:
    add = ["schedule", "add", "bad", "--definition", "surface_counter"]
    bad_cron, bad_zone, both, bad_overlap, unknown_definition, unknown_schedule = run_together(
        [*add, "--cron", "61 * * * *"],
        [*add, "--every", "1h", "--tz", "Mars/Olympus"],
        [*add, "--every", "1h", "--cron", "* * * * *"],
        [*add, "--every", "1h", "--overlap", "queue"],
        ["schedule", "add", "bad", "--definition", "nowhere", "--every", "1h"],
        ["schedule", "delete", "nothing"],
        database=counter_db,
    )
    assert bad_cron.returncode == 2 and "not a cron expression" in one_line_error(bad_cron)
    assert bad_zone.returncode == 2 and "not a known time zone" in one_line_error(bad_zone)
    assert both.returncode == 2 and "--cron or --every" in one_line_error(both)
    assert bad_overlap.returncode == 2 and "--overlap must be one of" in one_line_error(bad_overlap)
    assert unknown_definition.returncode == 1, unknown_definition.stderr
    assert "nowhere" in one_line_error(unknown_definition)
    assert unknown_schedule.returncode == 1
    assert "no schedule named 'nothing'" in one_line_error(unknown_schedule)

"""`turnout send --file events.jsonl`: every line's event sent in batches, an outcome per line,
a malformed line reported by its number and the others sent all the same."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from turnout_processes import DEFINITIONS, run_turnout


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest) -> str:
    url = str(request.getfixturevalue(f"{request.param}_url"))
    deployed = run_turnout("deploy", str(DEFINITIONS / "door.yaml"), database=url)
    assert deployed.returncode == 0, deployed.stderr
    return url


def _door(database: str, *extra: str) -> str:
    started = run_turnout("start", "surface_door", "--json", *extra, database=database)
    assert started.returncode == 0, started.stderr
    return str(json.loads(started.stdout)["id"])


def _write(path: Path, *lines: Any) -> Path:
    path.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    )
    return path


def test_a_file_with_a_bad_line_sends_the_others_and_reports_each_line(
    database: str, tmp_path: Path
) -> None:
    front, back = _door(database), _door(database, "--key", "back")
    events = _write(
        tmp_path / "events.jsonl",
        {"id": front, "event": "open", "idempotency_key": "m-1"},
        {"id": front, "event": "open", "idempotency_key": "m-1"},
        "{not json",
        "",
        {"definition": "surface_door", "key": "back", "event": "lock"},
        {"id": back, "event": "open"},  # locked by the line before
        {"id": "no-such-door", "event": "open"},
        {"id": front, "event": "close", "colour": "red"},
        {"id": front, "event": "close", "data": {"by": "ana"}},
    )
    result = run_turnout("send", "--file", str(events), "--json", database=database)
    assert result.returncode == 2, result.stderr  # a malformed line: bad input
    lines = json.loads(result.stdout)["lines"]
    assert [(line["line"], line["outcome"]) for line in lines] == [
        (1, "applied"),
        (2, "duplicate"),
        (3, "malformed"),
        (5, "applied"),
        (6, "rejected"),
        (7, "not_found"),
        (8, "malformed"),
        (9, "applied"),
    ]
    assert lines[0]["instance"]["state"] == "opened"
    assert "not JSON" in lines[2]["message"] and "colour" in lines[6]["message"]
    assert lines[4]["allowed"] == ["unlock", "retire"] and lines[4]["instance"]["id"] == back
    assert lines[7]["instance"]["state"] == "closed"
    assert "Traceback" not in result.stderr
    shown = run_turnout("show", back, "--json", database=database)
    assert json.loads(shown.stdout)["state"] == "locked"


def test_exit_status_is_0_when_every_event_is_taken_and_1_when_one_is_refused(
    database: str, tmp_path: Path
) -> None:
    door = _door(database)
    taken = _write(
        tmp_path / "taken.jsonl", {"id": door, "event": "open"}, {"id": door, "event": "close"}
    )
    result = run_turnout("send", "--file", str(taken), database=database)
    assert result.returncode == 0, result.stderr
    assert "2 applied" in result.stdout and door in result.stdout
    refused = _write(
        tmp_path / "refused.jsonl", {"id": door, "event": "retire"}, {"id": door, "event": "lock"}
    )
    result = run_turnout("send", "--file", str(refused), database=database)
    assert result.returncode == 1, result.stderr
    assert "1 rejected, 1 applied" in result.stdout
    assert "accepts: open, lock" in result.stdout


def test_file_mistakes_are_one_line_errors(sqlite_url: str, tmp_path: Path) -> None:
    missing = run_turnout("send", "--file", str(tmp_path / "gone.jsonl"), database=sqlite_url)
    assert missing.returncode == 2 and "gone.jsonl" in missing.stderr
    assert "Traceback" not in missing.stderr
    both = run_turnout(
        "send", "some-id", "open", "--file", str(tmp_path / "x"), database=sqlite_url
    )
    assert both.returncode == 2 and "--file" in both.stderr

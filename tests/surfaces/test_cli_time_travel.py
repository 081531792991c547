"""Time travel on the command line, as a user runs it: `turnout show ID --at SEQ`, `turnout
diagram --instance ID --at SEQ -o FILE` and `turnout timeline ID`, on SQLite and PostgreSQL;
a SEQ outside the history is a one-line error with exit status 2."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from databases import postgres_schema
from turnout_processes import DEFINITIONS, INSTANCE_KEYS, run_together, run_turnout, svg_classes

TRIP = str(DEFINITIONS / "trip.yaml")
STEPS = (("book", {"seats": 2}), ("change", {"seats": 3}), ("board", {"gate": "B4"}))


def ok(*args: str, database: str) -> str:
    result = run_turnout(*args, database=database)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def trip(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """A database with `trip.yaml` deployed and one instance moved by STEPS: (database, id)."""
    if request.param == "sqlite":
        database = f"sqlite:///{tmp_path_factory.mktemp('travel')}/turnout.db"
        yield database, _moved(database)
        return
    with postgres_schema() as database:
        yield database, _moved(database)


def _moved(database: str) -> str:
    ok("deploy", TRIP, database=database)
    started = json.loads(
        ok("start", "surface_trip", "--data", '{"traveller": "ana"}', "--json", database=database)
    )
    for event, data in STEPS:
        ok("send", started["id"], event, "--data", json.dumps(data), database=database)
    return str(started["id"])


def test_show_at_an_entry_prints_the_instance_as_it_stood_then(trip: tuple[str, str]) -> None:
    database, instance_id = trip
    as_json, as_text, now = run_together(
        ["show", instance_id, "--at", "2", "--json"],
        ["show", instance_id, "--at", "3"],
        ["show", instance_id],
        database=database,
    )
    assert [as_json.returncode, as_text.returncode, now.returncode] == [0, 0, 0], as_json.stderr
    then: dict[str, Any] = json.loads(as_json.stdout)
    assert set(then) == INSTANCE_KEYS
    assert (then["state"], then["revision"], then["status"]) == ("booked", 2, "running")
    assert then["context"] == {"traveller": "ana", "seats": 2}
    text = as_text.stdout
    assert "as it stood after history #3" in text
    assert "state: booked" in text and '"seats": 3' in text and "gate" not in text
    assert "accepts:" not in text  # what it accepts is said of now only
    assert "state: travelling" in now.stdout


def test_diagram_at_an_entry_marks_the_state_active_then(
    trip: tuple[str, str], tmp_path: Path
) -> None:
    database, instance_id = trip
    then, now = tmp_path / "then.svg", tmp_path / "now.svg"
    drawn = run_together(
        ["diagram", "--instance", instance_id, "--at", "1", "-o", str(then)],
        ["diagram", "--instance", instance_id, "-o", str(now)],
        database=database,
    )
    assert [result.returncode for result in drawn] == [0, 0], [r.stderr for r in drawn]
    assert "active" in svg_classes(then.read_bytes())["state-planning"]
    assert "active" not in svg_classes(then.read_bytes())["state-travelling"]
    assert "active" in svg_classes(now.read_bytes())["state-travelling"]


def test_timeline_lists_each_commit_and_its_context_changes(trip: tuple[str, str]) -> None:
    database, instance_id = trip
    as_json, table = run_together(
        ["timeline", instance_id, "--json"], ["timeline", instance_id], database=database
    )
    body = json.loads(as_json.stdout)
    assert (body["entries"], body["complete"]) == (4, True)
    states = [point["state"] for point in body["points"]]
    assert states == ["planning", "booked", "booked", "travelling"]
    assert body["points"][2]["context"]["changed"] == {"seats": {"old": 2, "new": 3}}
    assert table.returncode == 0, table.stderr
    assert '+traveller="ana"' in table.stdout and "~seats: 2 -> 3" in table.stdout
    assert '+gate="B4"' in table.stdout


def test_at_outside_the_history_or_without_an_instance_is_a_one_line_error_with_status_2(
    trip: tuple[str, str],
) -> None:
    database, instance_id = trip
    show, draw = ["show", instance_id], ["diagram", "--instance", instance_id]
    commands = [
        [*show, "--at", "0"],
        [*show, "--at", "5"],
        [*draw, "--at", "5"],
        [*draw, "--at", "x"],
    ]
    *outside, unneeded = run_together(
        *commands, ["diagram", "surface_trip", "--at", "1"], database=database
    )
    for result in outside:
        assert result.returncode == 2, (result.args, result.stdout)
        assert "Traceback" not in result.stderr
        assert "--at" in result.stderr or "between 1 and 4" in result.stderr, result.stderr
    assert unneeded.returncode == 2
    assert unneeded.stderr.strip() == "error: --at SEQ draws an instance: give --instance ID"

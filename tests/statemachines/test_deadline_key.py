"""A definition's `deadline`: how long an instance may run, in the language's duration
syntax; validated, in the JSON schema, and what the compiled machine does with it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jsonschema
import pytest

import statemachines
from statemachines.diff import DefinitionDiff, diff_definitions
from statemachines.errors import DefinitionError
from statemachines.loader import parse_yaml
from statemachines.steps import DEADLINE, DEADLINE_EXCEEDED, Snapshot, Status

NOW = datetime(2026, 1, 1, tzinfo=UTC)
BODY = """
initial: open
states:
  open:
    on: {close: closed}
  closed: {final: true}
"""


def source(deadline: str | None) -> str:
    line = "" if deadline is None else f"deadline: {deadline}\n"
    return f"name: tickets\n{line}{BODY}"


@pytest.mark.parametrize(
    ("written", "limit"),
    [("2d", timedelta(days=2)), ("90m", timedelta(minutes=90)), ("PT1H", timedelta(hours=1))],
)
def test_deadline_is_a_duration(written: str, limit: timedelta) -> None:
    assert statemachines.load(source(written)).deadline == limit


def test_without_deadline_an_instance_may_run_for_ever() -> None:
    definition = statemachines.load(source(None))
    assert definition.deadline is None
    assert statemachines.compile_definition(definition).start({}, NOW).timers == []


@pytest.mark.parametrize("written", ["soon", "30", "0s", "-1h", "{hours: 3}", "20y"])
def test_a_bad_deadline_is_a_definition_error_at_its_line(written: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        statemachines.load(source(written))
    assert caught.value.problems[0].line == 2


def test_the_json_schema_accepts_a_deadline_and_refuses_a_bad_one() -> None:
    validator = jsonschema.Draft202012Validator(statemachines.json_schema())
    assert not list(validator.iter_errors(parse_yaml(source("2d"), "x").data))
    assert list(validator.iter_errors(parse_yaml(source("soon"), "x").data))


def test_start_sets_the_deadline_timer_and_a_start_deadline_wins() -> None:
    machine = statemachines.compile_definition(statemachines.load(source("2d")))
    (timer,) = machine.start({}, NOW).timers
    assert (timer.state_path, timer.key, timer.due) == ("", DEADLINE, NOW + timedelta(days=2))
    (own,) = machine.start({}, NOW, timedelta(minutes=5)).timers
    assert own.due == NOW + timedelta(minutes=5)


def test_a_passed_deadline_fails_a_running_instance_and_spares_a_finished_one() -> None:
    machine = statemachines.compile_definition(statemachines.load(source("2d")))
    started = machine.start({}, NOW)
    later = NOW + timedelta(days=2)
    failed = machine.timer_fired(
        Snapshot(started.machine, {}, Status.RUNNING), ("", 0), DEADLINE, later
    )
    assert failed.status == Status.FAILED
    assert failed.machine["error"]["type"] == DEADLINE_EXCEEDED
    assert "2d" in failed.machine["error"]["message"]
    assert [(e.kind, e.event) for e in failed.history] == [("timer", DEADLINE)]
    closed = machine.send(Snapshot(started.machine, {}, Status.RUNNING), "close", None, NOW)
    assert ("", 0) in closed.cancelled  # the deadline timer is dropped as the instance ends
    after = machine.timer_fired(
        Snapshot(closed.machine, {}, closed.status), ("", 0), DEADLINE, later
    )
    assert not after.changed and after.history == []


def test_a_version_diff_reports_a_changed_deadline() -> None:
    changed = diff_definitions(statemachines.load(source("2d")), statemachines.load(source("1d")))
    assert changed.deadline == ("2d", "1d") and not changed.empty
    assert "~ deadline: 2d -> 1d" in changed.summary()
    assert DefinitionDiff.from_json(changed.to_json()) == changed
    removed = diff_definitions(statemachines.load(source("1d")), statemachines.load(source(None)))
    assert removed.deadline == ("1d", None)
    assert diff_definitions(
        statemachines.load(source("24h")), statemachines.load(source("1d"))
    ).empty

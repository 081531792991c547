"""A definition's `retention`: how long its finished instances are kept, in the language's
duration syntax; validated, in the JSON schema, and compared by a version diff."""

from __future__ import annotations

from datetime import timedelta

import jsonschema
import pytest

import statemachines
from statemachines.diff import DefinitionDiff, diff_definitions
from statemachines.errors import DefinitionError
from statemachines.loader import parse_yaml

BODY = """
initial: open
states:
  open:
    on: {close: closed}
  closed: {final: true}
"""


def source(retention: str | None) -> str:
    line = "" if retention is None else f"retention: {retention}\n"
    return f"name: tickets\n{line}{BODY}"


@pytest.mark.parametrize(
    ("written", "kept"),
    [("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("P2W", timedelta(weeks=2))],
)
def test_retention_is_a_duration(written: str, kept: timedelta):
    assert statemachines.load(source(written)).retention == kept


def test_without_retention_instances_are_kept():
    assert statemachines.load(source(None)).retention is None


@pytest.mark.parametrize("written", ["forever", "30", "0s", "-1d", "{days: 3}", "20y"])
def test_a_bad_retention_is_a_definition_error_at_its_line(written: str):
    with pytest.raises(DefinitionError) as caught:
        statemachines.load(source(written))
    problem = caught.value.problems[0]
    assert problem.line == 2


def test_the_json_schema_accepts_a_retention_and_refuses_a_bad_one():
    validator = jsonschema.Draft202012Validator(statemachines.json_schema())
    assert not list(validator.iter_errors(parse_yaml(source("30d"), "x").data))
    assert list(validator.iter_errors(parse_yaml(source("forever"), "x").data))


def test_a_version_diff_reports_a_changed_retention():
    kept_a_month = statemachines.load(source("30d"))
    kept_a_week = statemachines.load(source("7d"))
    kept_for_ever = statemachines.load(source(None))

    changed = diff_definitions(kept_a_month, kept_a_week)
    assert changed.retention == ("30d", "7d")
    assert not changed.empty
    assert "~ retention: 30d -> 7d" in changed.summary()
    assert DefinitionDiff.from_json(changed.to_json()) == changed
    assert diff_definitions(kept_a_week, kept_for_ever).retention == ("7d", None)
    assert diff_definitions(kept_a_week, statemachines.load(source("1w"))).empty
    assert kept_a_month.digest != kept_for_ever.digest

"""`turnout diff` as a user runs it: two definition files, a file against the deployed latest
version of its name, or two deployed versions; the summary or its JSON, and diff's exit
statuses (0 no changes, 1 changes, 2 trouble)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from databases import postgres_schema
from turnout_processes import DEFINITIONS, run_together, run_turnout

import statemachines

DIFFS = Path(__file__).parent.parent / "statemachines" / "diffs"
SHOP_V1 = str(DIFFS / "shop_v1.yaml")
SHOP_V2 = str(DIFFS / "shop_v2.yaml")
INVALID = str(DEFINITIONS / "invalid.yaml")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database: an SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/turnout.db"
        return
    with postgres_schema() as url:
        yield url


def deploy(database: str, *files: str) -> None:
    result = run_turnout("deploy", *files, database=database)
    assert result.returncode == 0, result.stderr


def error_lines(result: Any) -> list[str]:
    """What a refused diff says on stderr: its lines, no traceback, nothing on stdout."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""
    return list(result.stderr.strip().splitlines())


def test_two_files_print_the_summary_and_exit_1_for_changes() -> None:
    changed, same = run_together(["diff", SHOP_V1, SHOP_V2], ["diff", SHOP_V1, SHOP_V1])
    expected = statemachines.diff_definitions(
        statemachines.load(SHOP_V1), statemachines.load(SHOP_V2)
    )
    assert changed.returncode == 1, changed.stderr
    assert changed.stdout == expected.summary() + "\n"
    assert "~ transition pay --failed--> refund (was broken): target" in changed.stdout.splitlines()
    assert same.returncode == 0, same.stderr
    assert same.stdout.strip() == "no changes"


def test_json_lists_the_same_elements_as_diff_definitions() -> None:
    result, same = run_together(
        ["diff", "--json", SHOP_V1, SHOP_V2], ["diff", "--json", SHOP_V2, SHOP_V2]
    )
    expected = statemachines.diff_definitions(
        statemachines.load(SHOP_V1), statemachines.load(SHOP_V2)
    )
    assert result.returncode == 1, result.stderr
    printed = json.loads(result.stdout)
    assert printed == expected.to_json()
    assert statemachines.DefinitionDiff.from_json(printed) == expected
    assert "refund" in printed["states"]["added"]
    assert same.returncode == 0, same.stderr
    assert statemachines.DefinitionDiff.from_json(json.loads(same.stdout)).empty


def test_a_file_alone_is_compared_with_the_latest_deployed_version_of_its_name(
    database: str,
) -> None:
    deploy(database, SHOP_V1)
    newer, unchanged = run_together(["diff", SHOP_V2], ["diff", SHOP_V1], database=database)
    assert newer.returncode == 1, newer.stderr
    assert "+ state refund" in newer.stdout.splitlines()
    assert unchanged.returncode == 0, unchanged.stderr
    assert unchanged.stdout.strip() == "no changes"


def test_deployed_versions_are_named_name_at_version_or_name_for_the_latest(
    database: str,
) -> None:
    deploy(database, SHOP_V1)
    deploy(database, SHOP_V2)
    forward, backward, latest, against_file = run_together(
        ["diff", "--json", "shop@1", "shop@2"],
        ["diff", "shop@2", "shop@1"],
        ["diff", "shop@2", "shop"],
        ["diff", "shop@1", SHOP_V2],
        database=database,
    )
    assert forward.returncode == 1, forward.stderr
    expected = statemachines.diff_definitions(
        statemachines.load(SHOP_V1), statemachines.load(SHOP_V2)
    )
    assert json.loads(forward.stdout) == expected.to_json()
    assert backward.returncode == 1, backward.stderr
    assert "- state refund" in backward.stdout.splitlines()
    assert latest.returncode == 0 and latest.stdout.strip() == "no changes", latest.stderr
    assert against_file.returncode == 1, against_file.stderr
    assert against_file.stdout == expected.summary() + "\n"


def test_an_invalid_or_missing_file_is_refused_with_its_problems_and_exit_2(
    tmp_path: Path,
) -> None:
    missing = str(tmp_path / "missing.yaml")
    invalid, absent = run_together(["diff", SHOP_V1, INVALID], ["diff", missing, SHOP_V1])
    problems = error_lines(invalid)
    assert any(p.startswith(f"{INVALID}:7:15: ") and "finshed" in p for p in problems)
    assert any(p.startswith(f"{INVALID}:8:5: ") and "did you mean 'after'" in p for p in problems)
    [said] = error_lines(absent)
    assert missing in said


def test_a_name_or_version_not_deployed_is_a_clear_error_and_exit_2(database: str) -> None:
    deploy(database, SHOP_V1)
    unknown_version, unknown_name, file_unknown, not_a_version = run_together(
        ["diff", "shop@1", "shop@7"],
        ["diff", "nothing", "shop"],
        ["diff", str(DEFINITIONS / "door.yaml")],
        ["diff", "shop@one", "shop"],
        database=database,
    )
    assert error_lines(unknown_version) == ["error: no definition 'shop' version 7 is deployed"]
    assert error_lines(unknown_name) == ["error: no definition 'nothing' is deployed"]
    [said] = error_lines(file_unknown)
    assert said.startswith("error: no definition") and "is deployed" in said
    [said] = error_lines(not_a_version)
    assert "'shop@one'" in said and "NAME@VERSION" in said


def test_a_name_alone_needs_a_second_definition() -> None:
    result = run_turnout("diff", "shop")
    [said] = error_lines(result)
    assert "second definition" in said

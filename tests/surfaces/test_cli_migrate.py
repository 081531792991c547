"""`turnout migrate plan|apply` as a user runs it, on SQLite and PostgreSQL: the plan's
summary or JSON (and a plan file), applying the file once and again, planning and applying at
once, and the exit statuses (plan: 0 all can move, 1 some stay; apply: 0 moved; 2 trouble)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from databases import postgres_schema
from turnout_processes import run_together, run_turnout

from engine import Engine

CLAIMS = Path(__file__).parent.parent / "engine" / "definitions"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with `claims` version 1 instances (2 in intake, 1 held, 1 with a big
    approved amount), then version 2 deployed."""
    if request.param == "sqlite":
        yield populated(f"sqlite:///{tmp_path}/turnout.db")
        return
    with postgres_schema() as url:
        yield populated(url)


def populated(url: str) -> str:
    with Engine(url) as engine:
        engine.deploy(CLAIMS / "claims_v1.yaml")
        engine.start("claims", key="in-1")
        engine.start("claims", key="in-2")
        engine.send(engine.start("claims", key="held").id, "hold")
        big = engine.start("claims", key="big").id
        engine.send(big, "submit", {"amount": 700})
        engine.send(big, "approve")
        engine.deploy(CLAIMS / "claims_v2.yaml")
    return url


def refused(result: Any) -> str:
    """The one line a refused command says on stderr: exit 2, no traceback, no output."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    return str(line)


def test_plan_prints_the_counts_writes_the_file_and_exits_1_when_some_would_stay(
    database: str, tmp_path: Path
) -> None:
    plan_file = tmp_path / "plan.json"
    text = run_turnout(
        "migrate",
        "plan",
        "claims",
        "--from",
        "1",
        "--map",
        "legacy_hold=on_hold",
        "-o",
        str(plan_file),
        database=database,
    )
    assert text.returncode == 1, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith("claims: version 1 -> 2, 4 running instances (plan ")
    assert [line.split()[:2] for line in lines[1:5]] == [
        ["safe", "2"],
        ["mapped", "1"],
        ["divergent", "1"],
        ["impossible", "0"],
    ]
    assert "state map: legacy_hold -> on_hold" in lines
    assert "divergent instances:" in lines
    written = json.loads(plan_file.read_text())
    assert written["counts"] == {"safe": 2, "mapped": 1, "divergent": 1, "impossible": 0}
    assert f"apply it with: turnout migrate apply {plan_file}" in text.stderr
    every = run_turnout(
        "migrate", "plan", "claims", "--from", "1", "--state", "intake", "--json", database=database
    )
    assert every.returncode == 0, every.stderr
    assert json.loads(every.stdout)["counts"] == {
        "safe": 2,
        "mapped": 0,
        "divergent": 0,
        "impossible": 0,
    }


def test_a_plan_file_applied_twice_moves_each_instance_once(database: str, tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.json"
    made = run_turnout(
        "migrate",
        "plan",
        "claims",
        "--from",
        "1",
        "--map",
        "legacy_hold=on_hold",
        "-o",
        str(plan_file),
        "--json",
        database=database,
    )
    assert made.returncode == 1 and json.loads(made.stdout) == json.loads(plan_file.read_text())
    first = run_turnout("migrate", "apply", str(plan_file), database=database)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[1].split()[:2] == ["migrated", "3"]
    again = run_turnout("migrate", "apply", str(plan_file), "--json", database=database)
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["counts"] == {"migrated": 0, "skipped": 3, "stayed": 0, "untouched": 1}
    shown = json.loads(
        run_turnout("show", "--json", result["instances"][0]["id"], database=database).stdout
    )
    assert shown["version"] == 2


def test_apply_plans_and_applies_at_once_only_with_yes(database: str) -> None:
    asked = run_turnout("migrate", "apply", "claims", "--from", "1", database=database)
    assert "add --from VERSION and --yes" in refused(asked)
    done = run_turnout(
        "migrate", "apply", "claims", "--from", "1", "--yes", "--json", database=database
    )
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout)["counts"]
    assert counts == {"migrated": 2, "skipped": 0, "stayed": 0, "untouched": 2}


MISTAKES = [
    (["plan", "claims", "--from", "1", "--map", "legacy_hold=ice"], "'ice' is not a state"),
    (["plan", "claims", "--from", "1", "--map", "legacy_hold"], "must be OLD=NEW"),
    (["plan", "claims", "--from", "9"], "version 9 is deployed"),
    (["plan", "claims", "--from", "2"], "is both the version to migrate from and"),
    (["plan", "nothing", "--from", "1"], "no definition 'nothing'"),
    (["apply", "missing.json"], "cannot read the plan"),
    (["apply", "{plan}", "--from", "1"], "apply a plan file alone"),
    (["apply", "{other}"], "not a migration plan"),
    (["apply", "{broken}"], "is not JSON"),
]


def test_mistakes_exit_2_with_one_line_saying_what_is_wrong(database: str, tmp_path: Path) -> None:
    files = {"plan": tmp_path / "plan.json", "other": tmp_path / "other.json"}
    files["broken"] = tmp_path / "broken.json"
    files["other"].write_text('{"plan": "x"}')
    files["broken"].write_text("{")
    made = run_turnout(
        "migrate", "plan", "claims", "--from", "1", "-o", str(files["plan"]), database=database
    )
    assert made.returncode == 1, made.stderr
    commands = [["migrate", *(arg.format(**files) for arg in args)] for args, _ in MISTAKES]
    for result, (_, says) in zip(run_together(*commands, database=database), MISTAKES, strict=True):
        assert says in refused(result)

"""`turnout redrive` and `turnout reset` as an operator runs them: a real process, its output
and its exit status; the failed instances are made by an engine in the test's process."""

from __future__ import annotations

import json
from typing import Any

import pytest
from turnout_processes import DEFINITIONS, run_together, run_turnout

from engine import Engine

REVIEW = DEFINITIONS / "review.yaml"


def refuse_first(engine: Engine) -> list[str]:
    """Register a `review.check` that refuses until the returned list holds "ready"."""
    state: list[str] = []

    @engine.task("review.check")
    def check(request: dict[str, Any]) -> dict[str, Any]:
        if "ready" not in state:
            raise PermissionError("the reviewer is away")
        return {"ok": request.get("amount", 0) < 100}

    return state


@pytest.fixture
def failed(sqlite_db: str) -> tuple[str, list[str]]:
    """The database, with two failed reviews (their task refused), ids oldest first."""
    with Engine(sqlite_db) as engine:
        engine.deploy(REVIEW)
        refuse_first(engine)
        ids = [engine.start("surface_review", {"amount": amount}).id for amount in (5, 500)]
        engine.run_until_idle()
        assert {engine.get(instance_id).status for instance_id in ids} == {"failed"}
    return sqlite_db, ids


def one_line_error(result: Any) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return str(lines[0])


def test_redrive_restarts_a_failed_instance_which_then_runs_to_its_end(
    failed: tuple[str, list[str]],
) -> None:
    database, (first, _) = failed
    result = run_turnout("redrive", first, "--reason", "reviewer back", "--json", database=database)
    assert result.returncode == 0, result.stderr
    instance = json.loads(result.stdout)
    assert (instance["status"], instance["state"], instance["error"]) == (
        "running",
        "checking",
        None,
    )

    history = json.loads(run_turnout("history", first, "--json", database=database).stdout)
    assert history[-1]["kind"] == "redrive"
    assert history[-1]["data"]["reason"] == "reviewer back"
    with Engine(database) as engine:
        refuse_first(engine).append("ready")
        engine.run_until_idle()
        assert engine.get(first).state == "approved"


def test_redrive_of_an_instance_that_is_not_failed_exits_1_with_one_line(
    failed: tuple[str, list[str]],
) -> None:
    database, (first, _) = failed
    assert run_turnout("redrive", first, database=database).returncode == 0
    again = run_turnout("redrive", first, database=database)
    assert again.returncode == 1
    assert "cannot be redriven: it is running; only a failed instance" in one_line_error(again)


def test_a_dry_bulk_redrive_lists_the_failed_instances_and_changes_nothing(
    failed: tuple[str, list[str]],
) -> None:
    database, ids = failed
    dry, table = run_together(
        ["redrive", "--definition", "surface_review", "--dry-run", "--json"],
        [
            "redrive",
            "--definition",
            "surface_review",
            "--dry-run",
            "--error-type",
            "PermissionError",
        ],
        database=database,
    )
    assert dry.returncode == 0, dry.stderr
    assert [(row["id"], row["outcome"]) for row in json.loads(dry.stdout)] == [
        (instance_id, "would redrive") for instance_id in ids
    ]
    assert table.returncode == 0 and "2 would redrive" in table.stdout
    listed = json.loads(
        run_turnout("list", "--status", "failed", "--json", database=database).stdout
    )
    assert sorted(row["id"] for row in listed) == sorted(ids)

    done = run_turnout("redrive", "--definition", "surface_review", "--json", database=database)
    assert [row["outcome"] for row in json.loads(done.stdout)] == ["redriven", "redriven"]
    none_left = run_turnout("redrive", "--definition", "surface_review", database=database)
    assert none_left.returncode == 0 and "no failed instance selected" in none_left.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["redrive"],
        ["redrive", "0" * 32, "--definition", "surface_review"],
    ],
)
def test_redrive_needs_an_id_or_a_definition_and_not_both(sqlite_db: str, args: list[str]) -> None:
    result = run_turnout(*args, database=sqlite_db)
    assert result.returncode == 2
    assert "usage: turnout redrive ID" in one_line_error(result)


def test_reset_moves_an_instance_with_its_context_patched_and_records_why(
    failed: tuple[str, list[str]],
) -> None:
    database, (_, second) = failed
    result = run_turnout(
        "reset",
        second,
        "checking",
        "--reason",
        "amount was mistyped",
        "--patch",
        '{"note": "by phone"}',
        "--set",
        "amount=50",
        "--set",
        "who=ops",
        "--json",
        database=database,
    )
    assert result.returncode == 0, result.stderr
    instance = json.loads(result.stdout)
    assert instance["status"] == "running"
    assert instance["context"] == {"amount": 50, "note": "by phone", "who": "ops"}
    history = json.loads(run_turnout("history", second, "--json", database=database).stdout)
    assert history[-1]["kind"] == "reset"
    assert history[-1]["data"]["reason"] == "amount was mistyped"
    assert history[-1]["data"]["patch"] == {"note": "by phone", "amount": 50, "who": "ops"}

    with Engine(database) as engine:
        refuse_first(engine).append("ready")
        engine.run_until_idle()
        assert engine.get(second).state == "approved"


def test_reset_mistakes_exit_2_with_one_line(failed: tuple[str, list[str]]) -> None:
    database, (first, _) = failed
    unknown, no_reason, bad_patch, bad_set = run_together(
        ["reset", first, "archived", "--reason", "tidy"],
        ["reset", first, "checking"],
        ["reset", first, "checking", "--reason", "x", "--patch", "[1]"],
        ["reset", first, "checking", "--reason", "x", "--set", "novalue"],
        database=database,
    )
    assert unknown.returncode == 2
    assert "has no state 'archived'; its states are: checking, approved, declined" in (
        one_line_error(unknown)
    )
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    assert bad_patch.returncode == 2
    assert "--patch must be a JSON object" in one_line_error(bad_patch)
    assert bad_set.returncode == 2 and "--set takes KEY=VALUE" in one_line_error(bad_set)
    with Engine(database) as engine:
        assert engine.get(first).status == "failed"

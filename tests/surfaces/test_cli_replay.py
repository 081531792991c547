"""Recorded histories checked end to end, as a team does before deploying a change: instances
run on the engine (SQLite, then PostgreSQL), `turnout export` writes their histories,
`turnout replay` checks a changed definition file against them (exit 0 every history
replays, 1 one diverges, 2 trouble), and the pytest check the guide shows passes or fails."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from databases import postgres_schema
from turnout_processes import (
    DEFINITIONS,
    run_together,
    run_turnout,
    turnout_command,
    turnout_env,
)

from engine import Engine

REFUNDS = DEFINITIONS / "refund_desk.yaml"
# The example test of docs/guide/changing.md, word for word.
README_TEST = """\
# tests/test_order_histories.py: does the changed definition still accept the recorded histories?
from statemachines import check_histories


def test_the_order_definition_accepts_last_months_histories() -> None:
    check_histories("workflows/order.yaml", "tests/histories/orders.jsonl").assert_replays()
"""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database: an SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/turnout.db"
        return
    with postgres_schema() as url:
        yield url


def run_refunds(database: str, clock: Any) -> dict[int, str]:
    """Six refund_desk instances, by amount: 10 paid at once, 150 and 400 approved and paid,
    500 rejected, 250 rejected by its timer, 300 still waiting for a manager."""
    with Engine(database, clock=clock) as engine:
        engine.deploy(REFUNDS)
        engine.task("refunds.check")(lambda refund: {"amount": refund["amount"]})
        engine.task("refunds.pay")(lambda refund: {"paid": refund["amount"]})
        ids = {amount: engine.start("refund_desk", {"amount": amount}).id for amount in (10, 150)}
        ids |= {amount: engine.start("refund_desk", {"amount": amount}).id for amount in (400, 500)}
        ids[250] = engine.start("refund_desk", {"amount": 250}).id
        engine.run_until_idle()
        for amount in (150, 400):
            engine.send(ids[amount], "approve")
        engine.send(ids[500], "reject")
        engine.run_until_idle()
        clock.advance(timedelta(days=4))
        engine.fire_due_timers()
        ids[300] = engine.start("refund_desk", {"amount": 300}).id
        engine.run_until_idle()
        assert engine.get(ids[250]).state == "rejected"
        assert engine.get(ids[300]).state == "awaiting_manager"
    return ids


def changed(tmp_path: Path, name: str, *replacements: tuple[str, str]) -> Path:
    """A copy of refund_desk.yaml with each (old, new) replaced."""
    text = REFUNDS.read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# An event and a state no recorded instance knows: every history still replays.
COMPATIBLE = (
    (
        "    on: {approve: paying, reject: rejected}",
        "    on: {approve: paying, reject: rejected, escalate: escalated}",
    ),
    ("  paid: {final: true}", "  paid: {final: true}\n  escalated: {final: true}"),
)
# A higher bar for a manager (150 is now paid at once) and `approve` renamed: the instance of
# 150 diverges at its task's result (entry 2), the one of 400 at its approval (entry 3).
INCOMPATIBLE = (
    ("result.amount >= 100", "result.amount >= 200"),
    ("on: {approve: paying", "on: {accept: paying"),
)


def export(database: str, tmp_path: Path) -> Path:
    path = tmp_path / "histories.jsonl"
    result = run_turnout("export", "refund_desk", "-o", str(path), database=database)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    entries = len(path.read_text().splitlines())
    assert (
        result.stderr.strip()
        == f"exported 6 histories of refund_desk ({entries} entries) to {path}"
    )
    assert sorted(found.name for found in tmp_path.glob("histories.jsonl*")) == ["histories.jsonl"]
    return path


def test_a_changed_definition_is_checked_against_the_exported_histories(
    database: str, tmp_path: Path, clock: Any
) -> None:
    ids = run_refunds(database, clock)
    histories = export(database, tmp_path)
    lines = [json.loads(line) for line in histories.read_text().splitlines()]
    assert list(dict.fromkeys(line["instance"] for line in lines)) == list(ids.values())

    compatible = changed(tmp_path, "compatible.yaml", *COMPATIBLE)
    incompatible = changed(tmp_path, "incompatible.yaml", *INCOMPATIBLE)
    same, accepted, refused, printed = run_together(
        ["replay", str(REFUNDS), str(histories)],
        ["replay", str(compatible), str(histories)],
        ["replay", str(incompatible), str(histories)],
        ["replay", "--json", str(incompatible), str(histories)],
    )
    assert (same.returncode, same.stderr) == (0, "")
    assert same.stdout == "refund_desk: 6 histories: 6 replay, 0 diverge\n"
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr

    assert refused.returncode == 1, refused.stderr
    summary = refused.stdout.splitlines()
    assert summary[0] == "refund_desk: 6 histories: 4 replay, 2 diverge"
    diverging = [line for line in summary if line.startswith("instance ")]
    assert [line.split()[1] for line in diverging] == [ids[150], ids[400]]
    moved = "replay differs: to_state 'awaiting_manager' recorded, 'paying' replayed"
    assert f" diverges at entry 2: {moved}" in diverging[0]
    assert " diverges at entry 3: the definition rejects it" in diverging[1]

    assert printed.returncode == 1
    report = json.loads(printed.stdout)
    divergences = {
        result["instance"]: result["divergence"]["seq"]
        for result in report["results"]
        if result["outcome"] == "diverges"
    }
    assert divergences == {ids[150]: 2, ids[400]: 3}
    statuses = {result["instance"]: result["status"] for result in report["results"]}
    assert statuses[ids[300]] == "running"

    piped = subprocess.run(
        [turnout_command(), "replay", str(incompatible), "-"],
        input=histories.read_text(),
        env=turnout_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert piped.returncode == 1, piped.stderr
    assert piped.stdout.replace("<stdin>", str(histories)) == refused.stdout


def test_one_instances_history_as_turnout_history_prints_it_is_checked_too(
    database: str, tmp_path: Path, clock: Any
) -> None:
    ids = run_refunds(database, clock)
    shown = run_turnout("history", ids[150], "--json", database=database)
    assert shown.returncode == 0, shown.stderr
    path = tmp_path / f"{ids[150]}.json"
    path.write_text(shown.stdout)
    incompatible = changed(tmp_path, "incompatible.yaml", *INCOMPATIBLE)
    same, refused = run_together(
        ["replay", str(REFUNDS), str(path)],
        ["replay", str(incompatible), str(tmp_path)],  # the directory, the .json file in it
    )
    assert (same.returncode, same.stdout) == (0, "refund_desk: 1 history: 1 replays, 0 diverge\n")
    assert refused.returncode == 1
    assert refused.stdout.splitlines()[1].startswith(
        f"instance {ids[150]} ({path}) diverges at entry 2"
    )


def test_the_readme_example_test_passes_and_fails_as_a_team_runs_it(
    database: str, tmp_path: Path, clock: Any
) -> None:
    ids = run_refunds(database, clock)
    exported = export(database, tmp_path)
    projects = {}
    for name, change in (("compatible", COMPATIBLE), ("incompatible", INCOMPATIBLE)):
        project = tmp_path / name
        (project / "tests" / "histories").mkdir(parents=True)
        (project / "tests" / "histories" / "orders.jsonl").write_bytes(exported.read_bytes())
        (project / "tests" / "test_order_histories.py").write_text(README_TEST)
        (project / "workflows").mkdir()
        changed(project / "workflows", "order.yaml", *change)
        projects[name] = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    passing, _ = projects["compatible"].communicate(timeout=120)
    failing, _ = projects["incompatible"].communicate(timeout=120)
    assert projects["compatible"].returncode == 0, passing
    assert "1 passed" in passing
    assert projects["incompatible"].returncode == 1, failing
    assert "AssertionError: 2 of 6 histories do not replay through refund_desk:" in failing
    assert f"instance {ids[150]} (tests/histories/orders.jsonl:" in failing
    assert f"instance {ids[400]} (tests/histories/orders.jsonl:" in failing


TROUBLE = [
    ("invalid.yaml", "histories.jsonl", "invalid.yaml:"),
    ("refund_desk.yaml", "missing.jsonl", "error: No such file or directory"),
    ("refund_desk.yaml", "broken.jsonl", "broken.jsonl:2: not valid JSON"),
    ("refund_desk.yaml", "empty", "error: no history to replay in"),
    ("door.yaml", "histories.jsonl", "is a history of 'refund_desk', not of 'surface_door'"),
]


def test_replay_exits_2_with_one_message_on_trouble(tmp_path: Path) -> None:
    line = {"instance": "a", "definition": "refund_desk", "seq": 1, "at": "2026-01-01T00:00:00Z"}
    start = json.dumps({**line, "kind": "start", "to_state": "checking", "data": {"amount": 1}})
    (tmp_path / "histories.jsonl").write_text(start + "\n")
    (tmp_path / "broken.jsonl").write_text(start + "\n{oops\n")
    (tmp_path / "empty").mkdir()
    results = run_together(
        *(
            ["replay", str(DEFINITIONS / definition), str(tmp_path / histories)]
            for definition, histories, _ in TROUBLE
        )
    )
    for (definition, histories, says), result in zip(TROUBLE, results, strict=True):
        where = (definition, histories, result.stdout, result.stderr)
        assert result.returncode == 2, where
        assert result.stdout == "" and "Traceback" not in result.stderr, where
        assert says in result.stderr, where


def test_export_refuses_a_bad_selection_without_writing(
    database: str, tmp_path: Path, clock: Any
) -> None:
    run_refunds(database, clock)
    output = tmp_path / "out.jsonl"
    missing, status, since = run_together(
        ["export", "nothing", "-o", str(output)],
        ["export", "refund_desk", "--status", "done"],
        ["export", "refund_desk", "--since", "last week"],
        database=database,
    )
    assert (missing.returncode, missing.stderr) == (
        1,
        "error: no definition 'nothing' is deployed\n",
    )
    assert status.returncode == 2 and "choose one of scheduled, running" in status.stderr
    assert since.returncode == 2 and "--since 'last week' is not an ISO date" in since.stderr
    assert list(tmp_path.glob("out.jsonl*")) == []

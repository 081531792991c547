"""The `turnout` command as a user runs it: a real process, its output and its exit status.

Exit statuses are SPEC 5's: 0 success, 1 a rejected or failed operation, 2 bad usage or input.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from turnout_processes import (
    DEFINITIONS,
    INSTANCE_KEYS,
    TASK_MODULES,
    run_together,
    run_turnout,
    svg_classes,
    turnout_command,
    turnout_env,
    wait_until,
)

DOOR = str(DEFINITIONS / "door.yaml")
REVIEW = str(DEFINITIONS / "review.yaml")
INVALID = str(DEFINITIONS / "invalid.yaml")
COMMANDS = (
    "demo",
    "validate",
    "diagram",
    "simulate",
    "deploy",
    "diff",
    "migrate",
    "start",
    "send",
    "show",
    "history",
    "timeline",
    "export",
    "replay",
    "changes",
    "list",
    "context-index",
    "cancel",
    "redrive",
    "reset",
    "worker",
    "serve",
    "schema",
    "relay",
    "consume",
    "webhooks",
    "db",
    "schedule",
)
HISTORY_KEYS = {"seq", "at", "kind", "event", "from_state", "to_state", "data"}


def one_line_error(result: Any) -> str:
    """The single line a failed command prints on stderr (and no traceback)."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return str(lines[0])


def as_json(result: Any) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def door_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An SQLite database with `door.yaml` and `review.yaml` deployed, shared by the module."""
    database = f"sqlite:///{tmp_path_factory.mktemp('cli')}/turnout.db"
    result = run_turnout("deploy", DOOR, REVIEW, database=database)
    assert result.returncode == 0, result.stderr
    return database


def start_door(database: str, *extra: str) -> dict[str, Any]:
    instance: dict[str, Any] = as_json(
        run_turnout("start", "surface_door", "--json", *extra, database=database)
    )
    return instance


# -- help and the language commands --------------------------------------------------------------
def test_help_lists_every_command_and_every_command_has_help() -> None:
    main, *each = run_together(["--help"], *([name, "--help"] for name in COMMANDS))
    assert main.returncode == 0
    for name in COMMANDS:
        assert re.search(rf"\b{name}\b", main.stdout), f"{name} is missing from turnout --help"
    for name, result in zip(COMMANDS, each, strict=True):
        assert result.returncode == 0, f"turnout {name} --help: {result.stderr}"
        assert "Usage:" in result.stdout and name in result.stdout


def test_validate_and_deploy_report_every_problem_as_file_line_column_and_exit_2(
    sqlite_db: str,
) -> None:
    good, bad, report, refused = run_together(
        ["validate", DOOR, REVIEW],
        ["validate", INVALID],
        ["validate", "--json", INVALID, DOOR],
        ["deploy", INVALID],
        database=sqlite_db,
    )
    assert good.returncode == 0, good.stderr
    assert "surface_door" in good.stdout and "surface_review" in good.stdout
    assert bad.returncode == 2
    problems = bad.stderr.strip().splitlines()
    assert any(p.startswith(f"{INVALID}:7:15: ") and "finshed" in p for p in problems)
    assert any(p.startswith(f"{INVALID}:8:5: ") and "did you mean 'after'" in p for p in problems)
    assert report.returncode == 2
    invalid, door = json.loads(report.stdout)
    assert set(invalid) == {"file", "ok", "problems"} and invalid["ok"] is False
    assert {(p["line"], p["column"]) for p in invalid["problems"]} == {(7, 15), (8, 5)}
    assert set(invalid["problems"][0]) == {"file", "line", "column", "message"}
    assert door == {"file": DOOR, "ok": True, "name": "surface_door", "warnings": []}
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == problems


def test_validate_prints_a_likely_typo_as_a_warning_and_still_exits_0() -> None:
    typos = str(DEFINITIONS / "typos.yaml")
    plain, report = run_together(["validate", typos], ["validate", "--json", typos])
    assert plain.returncode == 0, plain.stderr
    assert plain.stderr.strip() == (
        f"warning: {typos}:9:14: event 'faild' of task state 'charge' looks like a misspelt "
        "'failed': the engine fires 'failed', and this state has no transition for it"
    )
    assert f"{typos}: ok (surface_typos, 3 states)" in plain.stdout
    [checked] = json.loads(report.stdout)
    assert checked["ok"] is True
    assert checked["warnings"] == [plain.stderr.strip().removeprefix("warning: ")]


def test_simulate_prints_the_path_and_a_rejected_event_exits_1() -> None:
    taken, rejected = run_together(
        ["simulate", DOOR, "-e", "lock", "-e", "retire"],
        ["simulate", DOOR, "-e", "open", "-e", "lock", "--json"],
    )
    assert taken.returncode == 0, taken.stderr
    assert re.search(r"lock\s+.\s+closed\s+.\s+locked", taken.stdout)
    assert "status: succeeded" in taken.stdout and "state: retired" in taken.stdout
    assert rejected.returncode == 1
    run = json.loads(rejected.stdout)
    assert set(run) == {"state", "status", "context", "active", "path", "rejected", "error"}
    assert run["state"] == "opened" and run["status"] == "running"
    assert run["path"][-1] == {"event": "open", "from": "closed", "to": "opened"}
    assert run["rejected"] == [{"event": "lock", "state": "opened", "allowed": ["close"]}]


def test_schema_prints_the_json_schema_of_the_language() -> None:
    schema = as_json(run_turnout("schema"))
    assert "2020-12" in schema["$schema"]
    assert {"name", "initial", "states"} <= set(schema["properties"])


def test_diagram_draws_a_file_as_svg_on_stdout_or_as_mermaid_into_a_file(tmp_path: Path) -> None:
    mermaid = tmp_path / "door.mmd"
    svg, written, wrong = run_together(
        ["diagram", DOOR],
        ["diagram", DOOR, "-o", str(mermaid)],
        ["diagram", DOOR, "--format", "gif"],
    )
    assert svg.returncode == 0, svg.stderr
    assert {"state-closed", "state-opened", "state-locked", "state-retired"} <= set(
        svg_classes(svg.stdout)
    )
    assert written.returncode == 0, written.stderr
    assert mermaid.read_text().startswith("stateDiagram-v2")
    assert wrong.returncode == 2
    assert "gif" in one_line_error(wrong)


def test_diagram_draws_a_deployed_definition_by_name_and_an_instance_over_it(
    door_db: str,
) -> None:
    instance = start_door(door_db)
    by_name, by_instance = run_together(
        ["diagram", "surface_door"],
        ["diagram", "--instance", instance["id"], "-f", "dot"],
        database=door_db,
    )
    assert by_name.returncode == 0, by_name.stderr
    assert "state-retired" in svg_classes(by_name.stdout)
    assert by_instance.returncode == 0, by_instance.stderr
    closed = next(line for line in by_instance.stdout.splitlines() if 'id="state-closed"' in line)
    assert re.search(r'class="[^"]*\bactive\b', closed)


def test_diagram_heat_colours_the_states_where_instances_are(door_db: str) -> None:
    start_door(door_db)
    heat, misused = run_together(
        ["diagram", "surface_door", "--heat"],
        ["diagram", DOOR, "--heat"],
        database=door_db,
    )
    assert heat.returncode == 0, heat.stderr
    classes = svg_classes(heat.stdout)
    assert "heat" in classes["state-closed"]
    assert "heat" not in classes["state-retired"]
    assert misused.returncode == 2
    assert "deployed definition" in one_line_error(misused)


# -- deploy, start, send, look, cancel ---------------------------------------------------------
def test_deploy_prints_name_and_version_and_the_same_file_again_is_unchanged(
    sqlite_db: str,
) -> None:
    first = run_turnout("deploy", DOOR, REVIEW, database=sqlite_db)
    assert first.returncode == 0, first.stderr
    assert "surface_door version 1 (deployed)" in first.stdout
    assert "surface_review version 1 (deployed)" in first.stdout
    again = as_json(run_turnout("deploy", DOOR, "--json", database=sqlite_db))
    assert again == [
        {"name": "surface_door", "version": 1, "digest": again[0]["digest"], "created": False}
    ]


def test_start_send_show_history_and_list_speak_json_with_stable_keys(door_db: str) -> None:
    started = start_door(door_db, "--data", '{"room": "hall"}', "--key", "hall-door")
    assert set(started) == INSTANCE_KEYS
    assert started["state"] == "closed" and started["context"] == {"room": "hall"}
    assert started["key"] == "hall-door" and started["revision"] == 1
    moved = as_json(run_turnout("send", started["id"], "open", "--json", database=door_db))
    assert set(moved) == INSTANCE_KEYS | {"allowed"}
    assert moved["state"] == "opened" and moved["allowed"] == ["close"]
    by_key = as_json(
        run_turnout(
            "send",
            "--key",
            "hall-door",
            "--definition",
            "surface_door",
            "close",
            "--data",
            '{"by": "ana"}',
            "--json",
            database=door_db,
        )
    )
    assert by_key["id"] == started["id"] and by_key["state"] == "closed"
    shown, history, listed = run_together(
        ["show", started["id"], "--json"],
        ["history", started["id"], "--json"],
        ["list", "--json", "--definition", "surface_door", "--state", "closed"],
        database=door_db,
    )
    assert as_json(shown)["revision"] == by_key["revision"] > moved["revision"]
    assert set(as_json(shown)) == INSTANCE_KEYS | {"allowed"}
    entries = as_json(history)
    assert all(set(e) == HISTORY_KEYS for e in entries)
    assert [(e["seq"], e["kind"], e["event"], e["to_state"]) for e in entries] == [
        (1, "start", None, "closed"),
        (2, "event", "open", "opened"),
        (3, "event", "close", "closed"),
    ]
    assert entries[2]["data"] == {"by": "ana"}
    found = as_json(listed)
    assert started["id"] in [i["id"] for i in found]
    assert all(set(i) == INSTANCE_KEYS and i["state"] == "closed" for i in found)


def test_start_many_starts_one_instance_per_json_line_and_refuses_a_bad_line(
    door_db: str, tmp_path: Path
) -> None:
    lines = tmp_path / "rooms.jsonl"
    lines.write_text('{"room": "attic"}\n{"room": "cellar"}\n')
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"room": "attic"}\nnot json\n')
    started, refused = run_together(
        ["start", "surface_door", "--many", str(lines), "--json"],
        ["start", "surface_door", "--many", str(broken)],
        database=door_db,
    )
    report = as_json(started)
    assert report["definition"] == "surface_door" and report["started"] == 2
    assert len(report["ids"]) == 2
    shown = run_together(*(["show", ident, "--json"] for ident in report["ids"]), database=door_db)
    rooms = [as_json(result)["context"]["room"] for result in shown]
    assert rooms == ["attic", "cellar"]
    assert refused.returncode == 2
    assert "broken.jsonl:2 is not valid JSON" in one_line_error(refused)


def test_show_and_history_print_tables_for_people(door_db: str) -> None:
    instance = start_door(door_db, "--data", '{"room": "porch"}')
    shown, history = run_together(
        ["show", instance["id"]], ["history", instance["id"]], database=door_db
    )
    assert shown.returncode == 0, shown.stderr
    assert instance["id"] in shown.stdout and "state: closed" in shown.stdout
    assert "accepts: open, lock" in shown.stdout and '"porch"' in shown.stdout
    assert history.returncode == 0, history.stderr
    assert re.search(r"1\s+.\s+\S+ \S+\s+.\s+start", history.stdout)


def test_cancel_ends_the_instance_cancelled_and_later_events_are_rejected(door_db: str) -> None:
    instance = start_door(door_db)
    cancelled = as_json(
        run_turnout("cancel", instance["id"], "--reason", "moved out", "--json", database=door_db)
    )
    assert set(cancelled) == INSTANCE_KEYS and cancelled["status"] == "cancelled"
    late = run_turnout("send", instance["id"], "open", database=door_db)
    assert late.returncode == 1
    assert "cancelled" in one_line_error(late) or "finished" in one_line_error(late)


# -- a user's mistakes: one line, the right exit status ----------------------------------------
def test_mistakes_print_one_line_and_exit_2_for_bad_input_or_1_for_refused_operations(
    door_db: str, tmp_path: Path
) -> None:
    taken = start_door(door_db, "--key", "taken")
    (tmp_path / "a-file").write_text("not a directory\n")
    cases = {
        "bad JSON": (["start", "surface_door", "--data", "{nope"], 2, "--data is not valid JSON"),
        "not an object": (["start", "surface_door", "--data", "[1, 2]"], 2, "JSON object"),
        "missing file": (["deploy", str(tmp_path / "missing.yaml")], 2, "missing.yaml"),
        "data against the input schema": (
            ["start", "surface_review", "--data", '{"amount": "lots"}'],
            2,
            "amount",
        ),
        "unwritable diagram": (
            ["diagram", DOOR, "-o", str(tmp_path / "a-file" / "door.svg")],
            1,
            "door.svg",
        ),
        "unwritable demo directory": (
            ["demo", "--dir", str(tmp_path / "a-file" / "demo")],
            1,
            "demo",
        ),
        "missing file to validate": (["validate", str(tmp_path / "gone.yaml")], 2, "gone.yaml"),
        "unknown id to show": (["show", "no-such-id"], 1, "no-such-id"),
        "unknown id to send": (["send", "no-such-id", "open"], 1, "no-such-id"),
        "unknown id to cancel": (["cancel", "no-such-id"], 1, "no-such-id"),
        "unknown id for history": (["history", "no-such-id"], 1, "no-such-id"),
        "unknown business key": (
            ["send", "--key", "no-such-key", "--definition", "surface_door", "open"],
            1,
            "no-such-key",
        ),
        "unknown definition": (["start", "no_such_definition"], 1, "no_such_definition"),
        "key in use": (["start", "surface_door", "--key", "taken"], 1, "taken"),
        "rejected event": (["send", taken["id"], "close"], 1, "closed"),
        "key without definition": (["send", "--key", "taken", "open"], 2, "--definition"),
        "missing handler module": (
            ["worker", "--tasks", "no_such_module_here"],
            2,
            "no_such_module_here",
        ),
    }
    results = run_together(*(args for args, _, _ in cases.values()), database=door_db)
    for (what, (args, status, mentioned)), result in zip(cases.items(), results, strict=True):
        assert result.returncode == status, f"{what}: {args} -> {result.returncode}"
        line = one_line_error(result)
        assert mentioned in line, f"{what}: {line}"
    rejected = one_line_error(results[list(cases).index("rejected event")])
    assert "lock" in rejected and "open" in rejected  # the events it would accept


def test_unreachable_or_unusable_database_is_one_line_without_the_password() -> None:
    secret_url = "postgresql+psycopg://postgres:secret@127.0.0.1:1/x"
    unreachable, from_environment, unusable = run_together(
        ["list", "--db", secret_url],
        ["show", "some-id"],
        ["list", "--db", "no database at all"],
        database=secret_url,
    )
    for result in (unreachable, from_environment):
        assert result.returncode == 1
        line = one_line_error(result)
        assert "unavailable" in line and "secret" not in line and "127.0.0.1:1" in line
    assert unusable.returncode == 2
    assert "database URL" in one_line_error(unusable)


# -- demo and worker -----------------------------------------------------------------------
def test_demo_prints_its_summary_and_writes_the_diagrams_it_lists(tmp_path: Path) -> None:
    result, as_data = run_together(
        ["demo", "--dir", str(tmp_path / "demo")],
        ["demo", "--dir", str(tmp_path / "again"), "--json"],
    )
    assert result.returncode == 0, result.stderr
    assert "turnout demo: instances by definition" in result.stdout
    for header in ("definition", "runs", "ok", "failed", "cancelled", "retries"):
        assert header in result.stdout
    assert re.search(r"order_fulfillment\s+\d+\s+\d+", result.stdout)
    listed = [
        Path(line.strip()) for line in result.stdout.splitlines() if line.strip().endswith(".svg")
    ]
    assert len(listed) >= 5
    for path in listed:
        assert path.is_file() and b"<svg" in path.read_bytes()[:2000], path
    assert (tmp_path / "demo" / "turnout.db").is_file()
    report = as_json(as_data)
    assert set(report) == {
        "database",
        "summary",
        "events_sent",
        "rejected",
        "task_calls",
        "diagrams",
    }
    assert {row["definition"] for row in report["summary"]} >= {"order_fulfillment", "door_lock"}
    assert all(Path(path).is_file() for path in report["diagrams"])
    assert Path(report["database"]).is_file()


def review_db(tmp_path: Path, module: str) -> str:
    """A database with `review.yaml` deployed, and the handler module copied beside it."""
    shutil.copy(TASK_MODULES / f"{module}.py", tmp_path / f"{module}.py")
    database = f"sqlite:///{tmp_path}/turnout.db"
    assert run_turnout("deploy", REVIEW, database=database).returncode == 0
    return database


def start_worker(
    tmp_path: Path, database: str, module: str, *options: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [turnout_command(), "worker", "--tasks", module, "--concurrency", "2", *options],
        env=turnout_env(database),
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def interrupt(worker: subprocess.Popen[str]) -> tuple[int, str]:
    worker.send_signal(signal.SIGINT)
    _, stderr = worker.communicate(timeout=60)
    return worker.returncode, stderr


def show(database: str, instance_id: str) -> dict[str, Any]:
    shown: dict[str, Any] = as_json(run_turnout("show", instance_id, "--json", database=database))
    return shown


@pytest.mark.parametrize("module", ["review_handlers", "review_register"])
def test_worker_runs_the_handlers_of_a_users_module_and_stops_on_interrupt(
    tmp_path: Path, module: str
) -> None:
    database = review_db(tmp_path, module)
    small = as_json(
        run_turnout(
            "start", "surface_review", "--data", '{"amount": 5}', "--json", database=database
        )
    )
    worker = start_worker(tmp_path, database, module)
    try:
        done = wait_until(
            lambda: (shown := show(database, small["id"]))["status"] != "running" and shown,
            60,
            "the worker to run review.check",
        )
    finally:
        status, stderr = interrupt(worker)
    assert done["state"] == "approved" and done["status"] == "succeeded"
    assert done["context"]["checked_by"] == module.removeprefix("review_")
    assert status == 0, stderr
    assert "review.check" in stderr and "worker stopped" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("options", [("--batch", "8", "--linger", "5"), ("--linger", "0")])
def test_worker_commits_results_in_batches_or_one_by_one(
    tmp_path: Path, options: tuple[str, ...]
) -> None:
    database = review_db(tmp_path, "review_handlers")
    start = ("start", "surface_review", "--data", '{"amount": 5}', "--json")
    started = [as_json(run_turnout(*start, database=database)) for _ in range(3)]
    worker = start_worker(tmp_path, database, "review_handlers", *options)
    try:
        wait_until(
            lambda: all(show(database, s["id"])["status"] != "running" for s in started),
            60,
            "the worker to run review.check",
        )
    finally:
        status, stderr = interrupt(worker)
    assert status == 0, stderr
    assert [show(database, s["id"])["status"] for s in started] == ["succeeded"] * 3, stderr


def test_worker_refuses_a_negative_linger(tmp_path: Path) -> None:
    database = review_db(tmp_path, "review_handlers")
    worker = start_worker(tmp_path, database, "review_handlers", "--linger", "-1")
    _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 2 and "--linger" in stderr


def test_worker_passes_the_task_context_to_a_handler_with_two_parameters(
    tmp_path: Path,
) -> None:
    database = review_db(tmp_path, "review_context")
    started = as_json(
        run_turnout(
            "start",
            "surface_review",
            "--data",
            '{"amount": 5}',
            "--key",
            "r-1",
            "--json",
            database=database,
        )
    )
    worker = start_worker(tmp_path, database, "review_context")
    try:
        done = wait_until(
            lambda: (shown := show(database, started["id"]))["status"] != "running" and shown,
            60,
            "the worker to run review.check",
        )
    finally:
        status, stderr = interrupt(worker)
    assert done["state"] == "approved", done
    checked = done["context"]["checked"]
    assert checked["task"] == "review.check" and checked["key"] == "r-1"
    assert checked["definition"] == "surface_review" and checked["attempt"] == 1
    assert len(checked["idempotency_key"]) == 32
    assert status == 0, stderr


def test_worker_logs_a_failing_handler_and_show_prints_the_last_error(tmp_path: Path) -> None:
    """The worker logs a handler's exception with its traceback on stderr; `show` prints the
    instance's last error (type, message, traceback), and `--json` has it as `last_error`."""
    database = review_db(tmp_path, "review_handlers")
    data = json.dumps({"amount": 5, "refuse": "no reviewer on duty"})
    instance = as_json(
        run_turnout("start", "surface_review", "--data", data, "--json", database=database)
    )
    worker = start_worker(tmp_path, database, "review_handlers")
    try:
        wait_until(lambda: show(database, instance["id"])["status"] != "running", 60, "the failure")
    finally:
        status, stderr = interrupt(worker)
    assert status == 0, stderr
    assert "Traceback" in stderr and "PermissionError: no reviewer on duty" in stderr
    last = show(database, instance["id"])["last_error"]
    assert (last["type"], last["message"]) == ("PermissionError", "no reviewer on duty")
    assert "in check" in last["traceback"]
    shown = run_turnout("show", instance["id"], database=database)
    assert shown.returncode == 0, shown.stderr
    assert "PermissionError: no reviewer on duty" in shown.stdout
    assert 'raise PermissionError(request["refuse"])' in shown.stdout


def test_interrupted_worker_finishes_the_task_in_hand_before_exiting_0(tmp_path: Path) -> None:
    database = review_db(tmp_path, "review_handlers")
    started = tmp_path / "started"
    data = json.dumps({"amount": 500, "started": str(started), "seconds": 2})
    instance = as_json(
        run_turnout("start", "surface_review", "--data", data, "--json", database=database)
    )
    worker = start_worker(tmp_path, database, "review_handlers")
    try:
        wait_until(started.exists, 60, "the handler to start")
    finally:
        status, stderr = interrupt(worker)
    assert status == 0, stderr
    assert "worker stopped" in stderr and "Traceback" not in stderr
    finished = show(database, instance["id"])
    assert finished["state"] == "declined" and finished["context"]["checked_by"] == "handlers"

"""`turnout serve` as a command: what it refuses, and the worker it can run beside the API."""

from __future__ import annotations

import shutil
from pathlib import Path

from turnout_processes import (
    DEFINITIONS,
    TASK_MODULES,
    run_turnout,
    running_server,
    wait_until,
)


def test_serve_refuses_a_non_loopback_address_without_a_token(tmp_path: Path) -> None:
    result = run_turnout(
        "serve", "--host", "0.0.0.0", "--port", "1", cwd=tmp_path, db=f"sqlite:///{tmp_path}/t.db"
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "TURNOUT_API_TOKEN" in lines[0] and "0.0.0.0" in lines[0]


def test_serve_on_an_unreachable_database_exits_1_with_one_line(tmp_path: Path) -> None:
    result = run_turnout(
        "serve",
        "--port",
        "1",
        cwd=tmp_path,
        db="postgresql+psycopg://postgres:secret@127.0.0.1:1/x",
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unavailable" in lines[0] and "secret" not in lines[0]


def test_serve_with_tasks_runs_the_handlers_of_a_users_module(tmp_path: Path) -> None:
    shutil.copy(TASK_MODULES / "review_handlers.py", tmp_path / "review_handlers.py")
    db = f"sqlite:///{tmp_path}/turnout.db"
    with running_server(db, tmp_path, tasks=["review_handlers"]) as server, server.client() as api:
        deployed = api.post("/api/definitions", content=(DEFINITIONS / "review.yaml").read_text())
        assert deployed.status_code == 201
        small = api.post(
            "/api/instances", json={"definition": "surface_review", "data": {"amount": 3}}
        ).json()
        done = wait_until(
            lambda: (
                (i := api.get(f"/api/instances/{small['id']}").json())["status"] != "running" and i
            ),
            30,
            "the served worker to run review.check",
        )
    assert done["state"] == "approved" and done["context"]["checked_by"] == "handlers"
    assert "review.check" in server.log.read_text()

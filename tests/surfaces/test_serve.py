"""`turnout serve` as a command: what it refuses, and the worker it can run beside the API."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import Any

from turnout_processes import (
    DEFINITIONS,
    TASK_MODULES,
    run_turnout,
    running_server,
    wait_until,
)


def test_serve_refuses_a_non_loopback_address_without_a_token(tmp_path: Path) -> None:
    result = run_turnout(
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        "1",
        cwd=tmp_path,
        database=f"sqlite:///{tmp_path}/t.db",
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
        database="postgresql+psycopg://postgres:secret@127.0.0.1:1/x",
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unavailable" in lines[0] and "secret" not in lines[0]


def test_serve_on_a_port_already_in_use_exits_1_without_a_traceback(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_turnout("serve", "--port", str(port), database=f"sqlite:///{tmp_path}/t.db")
    assert result.returncode == 1
    assert "address already in use" in result.stderr and "Traceback" not in result.stderr


def test_serve_with_tasks_runs_a_users_handlers_and_finishes_them_when_stopped(
    tmp_path: Path,
) -> None:
    shutil.copy(TASK_MODULES / "review_handlers.py", tmp_path / "review_handlers.py")
    database = f"sqlite:///{tmp_path}/turnout.db"
    started = tmp_path / "started"
    with (
        running_server(database, tmp_path, tasks=["review_handlers"]) as server,
        server.client() as api,
    ):
        deployed = api.post("/api/definitions", content=(DEFINITIONS / "review.yaml").read_text())
        assert deployed.status_code == 201

        def begin(data: dict[str, Any]) -> str:
            answer = api.post("/api/instances", json={"definition": "surface_review", "data": data})
            assert answer.status_code == 201
            return str(answer.json()["id"])

        def finished(instance_id: str) -> Any:
            instance = api.get(f"/api/instances/{instance_id}").json()
            return instance["status"] != "running" and instance

        small = begin({"amount": 3})
        done = wait_until(lambda: finished(small), 30, "the served worker to run review.check")
        assert done["state"] == "approved" and done["context"]["checked_by"] == "handlers"
        slow = begin({"amount": 500, "started": str(started), "seconds": 2})
        wait_until(started.exists, 30, "the served worker to start the slow task")
        assert server.stop(signal.SIGTERM) == 0  # as a service manager stops it
    shown = run_turnout("show", slow, "--json", database=database)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["state"] == "declined"  # the task in hand was answered
    log = server.log.read_text()
    assert "review.check" in log and "Traceback" not in log


def test_serve_closes_connections_whose_request_does_not_arrive_whole_in_time(
    tmp_path: Path,
) -> None:
    """Connections that send nothing, half a request head, or a head and part of its body
    are closed once `--request-timeout` passes; the server answers others meanwhile."""
    database = f"sqlite:///{tmp_path}/turnout.db"
    with running_server(database, tmp_path, options=["--request-timeout", "1"]) as server:
        port = int(server.base_url.rsplit(":", 1)[1])
        head = b"POST /api/instances HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        body = b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"defin'
        partial = [b"", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n", head + body]
        sockets = []
        for sent in partial * 20:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(sent)
            sockets.append(sock)
        began = time.monotonic()
        with server.client() as api:
            assert api.get("/healthz").status_code == 200
        for sock in sockets:
            assert sock.recv(1024) == b""  # closed by the server, answering nothing
            sock.close()
        assert time.monotonic() - began < 8

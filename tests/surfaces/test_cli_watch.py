"""`turnout watch ID`: a real process following an instance while other processes advance
it; what it prints is read as it comes, each wait bounded by a timeout."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from turnout_processes import DEFINITIONS, run_turnout, turnout_command, turnout_env

DOOR = str(DEFINITIONS / "door.yaml")
LINE_WAIT_SECONDS = 60


class Watching:
    """A `turnout watch` process and the lines it has printed so far."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str) -> str:
        """The first line not yet read that contains `text` (failing after a timeout)."""
        while True:
            try:
                line = self.lines.get(timeout=LINE_WAIT_SECONDS)
            except queue.Empty:
                pytest.fail(f"no line with {text!r} after {self.seen}")
            self.seen.append(line)
            if text in line:
                return line


@contextmanager
def watching(database: str, *args: str) -> Iterator[Watching]:
    process = subprocess.Popen(
        [turnout_command(), "watch", *args, "--interval", "0.05"],
        env=turnout_env(database),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield Watching(process)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=LINE_WAIT_SECONDS)


def started_door(database: str) -> str:
    deployed = run_turnout("deploy", DOOR, database=database)
    assert deployed.returncode == 0, deployed.stderr
    started = run_turnout("start", "surface_door", "--json", database=database)
    assert started.returncode == 0, started.stderr
    return str(json.loads(started.stdout)["id"])


def send(database: str, instance_id: str, event: str) -> None:
    sent = run_turnout("send", instance_id, event, database=database)
    assert sent.returncode == 0, sent.stderr


def test_watch_prints_each_entry_as_another_process_commits_it_until_the_end(
    sqlite_db: str,
) -> None:
    instance_id = started_door(sqlite_db)
    with watching(sqlite_db, instance_id[:-4]) as watch:
        assert watch.wait_for(instance_id).startswith(f"{instance_id}  surface_door v1")
        assert "closed" in watch.wait_for("#1")
        watch.wait_for("state: closed   status: running")
        send(sqlite_db, instance_id, "lock")
        assert "closed -> locked" in watch.wait_for("#2")
        watch.wait_for("state: locked   status: running")
        send(sqlite_db, instance_id, "retire")
        assert "locked -> retired" in watch.wait_for("#3")
        watch.wait_for("finished: succeeded in retired")
        assert watch.process.wait(timeout=LINE_WAIT_SECONDS) == 0
        assert watch.process.stderr is not None and watch.process.stderr.read() == ""


def test_watch_json_prints_one_object_per_entry_and_ctrl_c_ends_it_quietly(
    sqlite_db: str,
) -> None:
    instance_id = started_door(sqlite_db)
    with watching(sqlite_db, "--json", instance_id) as watch:
        first = json.loads(watch.wait_for('"seq": 1'))
        assert first["kind"] == "start" and first["state"] == "closed"
        send(sqlite_db, instance_id, "open")
        second = json.loads(watch.wait_for('"seq": 2'))
        assert (second["event"], second["state"], second["status"]) == ("open", "opened", "running")
        watch.process.send_signal(signal.SIGINT)
        assert watch.process.wait(timeout=LINE_WAIT_SECONDS) == 0
        assert watch.process.stderr is not None and watch.process.stderr.read() == ""


def test_watch_of_a_finished_instance_prints_its_history_and_ends(sqlite_db: str) -> None:
    instance_id = started_door(sqlite_db)
    cancelled = run_turnout("cancel", instance_id, database=sqlite_db)
    assert cancelled.returncode == 0, cancelled.stderr
    watched = run_turnout("watch", instance_id[:20], database=sqlite_db)
    assert watched.returncode == 0, watched.stderr
    assert watched.stdout.strip().splitlines()[-1] == "finished: cancelled in closed"
    missing = run_turnout("watch", "fffff", database=sqlite_db)
    assert missing.returncode == 1 and missing.stderr.strip() == "error: no instance 'fffff'"

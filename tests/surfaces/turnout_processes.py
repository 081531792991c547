"""Running turnout as a user does: the installed command, a `turnout serve` process, polling.

Shared by the surface tests and their fixtures (`conftest.py`).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
from turnout_command import turnout_command, turnout_env

HERE = Path(__file__).parent
DEFINITIONS = HERE / "definitions"
TASK_MODULES = HERE / "task_modules"
CHROMIUM = Path("/usr/bin/chromium")
# The keys of an instance in `--json` output (the HTTP API adds `allowed`).
INSTANCE_KEYS = set(
    "id key definition version state active status context created_at updated_at revision "
    "last_error error parent children due_at held".split()
)
SERVER_START_SECONDS = 60.0


def run_turnout(
    *args: str, database: str | None = None, cwd: Path | None = None, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run `turnout ARGS...` to the end and return its exit status and output."""
    return subprocess.run(
        [turnout_command(), *args],
        env=turnout_env(database),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_together(
    *commands: Sequence[str], database: str | None = None
) -> list[subprocess.CompletedProcess[str]]:
    """Run several independent `turnout` commands at once; their results in the same order."""
    processes = [
        subprocess.Popen(
            [turnout_command(), *args],
            env=turnout_env(database),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for args in commands
    ]
    results = []
    for args, process in zip(commands, processes, strict=True):
        stdout, stderr = process.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(args, process.returncode, stdout, stderr))
    return results


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1
) -> Any:
    """Poll `condition()` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def definition_text(file: str, name: str | None = None) -> str:
    """The YAML of `definitions/<file>`, renamed to `name` so a test can own a fresh copy."""
    text = (DEFINITIONS / file).read_text()
    if name is None:
        return text
    lines = [f"name: {name}" if line.startswith("name:") else line for line in text.splitlines()]
    return "\n".join(lines) + "\n"


def unique(prefix: str) -> str:
    """A name no other test uses (definitions, business keys, task names)."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


# -- servers ------------------------------------------------------------------------------------
@dataclass
class Server:
    """A running `turnout serve` process and the address it answers on."""

    process: subprocess.Popen[bytes]
    base_url: str
    database: str
    log: Path
    token: str | None = None

    def client(self, token: str | None = None, **options: Any) -> httpx.Client:
        """An httpx client for this server, sending `token` (default: the server's) if any."""
        token = self.token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30.0, **options)

    def stop(self, how: signal.Signals = signal.SIGINT) -> int:
        """Interrupt the server as Ctrl-C would (or with `how`); return its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(how)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        return int(self.process.returncode)


def start_server(
    database: str,
    workdir: Path,
    token: str | None = None,
    tasks: Sequence[str] = (),
    options: Sequence[str] = (),
) -> Server:
    """Start `turnout serve --port PORT` on a free loopback port and wait until it answers.

    `token` sets TURNOUT_API_TOKEN; `tasks` names handler modules (in `workdir`) for
    `--tasks`, so the server also runs a worker; `options` are further options of `serve`.
    """
    port = free_port()
    task_options = [option for module in tasks for option in ("--tasks", module)]
    log = workdir / f"serve-{port}.log"
    extra = {"TURNOUT_API_TOKEN": token} if token else {}
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [turnout_command(), "serve", "--port", str(port), *task_options, *options],
            env=turnout_env(database, **extra),
            cwd=workdir,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, f"http://127.0.0.1:{port}", database, log, token)

    def answers() -> bool:
        if process.poll() is not None:
            pytest.fail(f"turnout serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            return httpx.get(f"{server.base_url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(answers, SERVER_START_SECONDS, "turnout serve to answer /healthz")
    except BaseException:
        server.stop()
        raise
    return server


@contextmanager
def running_server(
    database: str,
    workdir: Path,
    token: str | None = None,
    tasks: Sequence[str] = (),
    options: Sequence[str] = (),
) -> Iterator[Server]:
    """A started server (see `start_server`), interrupted when the block ends."""
    server = start_server(database, workdir, token, tasks, options)
    try:
        yield server
    finally:
        server.stop()


# -- diagrams -----------------------------------------------------------------------------------
def svg_classes(svg: str | bytes) -> dict[str, set[str]]:
    """The classes of every element of an SVG diagram that has an id, by id (entities decoded).

    The diagrams name each state's node `state-<path>` and add `active` to the current ones.
    """
    root = ElementTree.fromstring(svg.encode() if isinstance(svg, str) else svg)
    return {
        element.attrib["id"]: set(element.attrib.get("class", "").split())
        for element in root.iter()
        if "id" in element.attrib
    }

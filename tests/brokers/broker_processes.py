"""Running `turnout relay` and `turnout consume` as a user does, in processes a test can
interrupt (SIGTERM), kill (SIGKILL) and start again; and reading a Redis stream back."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from turnout_command import turnout_command, turnout_env

STOP_SECONDS = 30


@dataclass
class Running:
    """A `turnout` process started in the background, its output going to `log`."""

    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup, no last acknowledgement, no cursor saved."""
        self.process.kill()
        self.process.wait(timeout=STOP_SECONDS)

    def stop(self, how: signal.Signals = signal.SIGTERM) -> int:
        """Ask it to stop as a service manager would; its exit status."""
        if self.alive():
            self.process.send_signal(how)
            try:
                self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_SECONDS)
                pytest.fail(f"turnout did not stop on {how.name}:\n{self.output()}")
        return int(self.process.returncode)


def start_turnout(args: Sequence[str], database: str, log: Path) -> Running:
    """Start `turnout ARGS... --db DATABASE` in the background."""
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [turnout_command(), *args, "--db", database],
            env=turnout_env(),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return Running(process, log)


def run_turnout(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `turnout ARGS...` to the end."""
    return subprocess.run(
        [turnout_command(), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def stream_messages(client: Any, stream: str) -> list[tuple[str, dict[str, Any]]]:
    """Every entry of a stream relayed changes went to: (its `id` field, its decoded body)."""
    messages = []
    for _, fields in client.xrange(stream):
        messages.append((fields[b"id"].decode(), json.loads(fields[b"body"])))
    return messages

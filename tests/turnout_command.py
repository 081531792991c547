"""The installed `turnout` command and the environment a test runs it in, for every test
that starts it as a process (the surface tests, the broker tests)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest


def turnout_command() -> str:
    """The installed console script: beside this interpreter, else on PATH."""
    beside = Path(sys.executable).with_name("turnout")
    if beside.exists():
        return str(beside)
    found = shutil.which("turnout")
    if found is None:
        pytest.fail("the `turnout` command is not installed (pip install -e .)")
    return found


def turnout_env(database: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a `turnout` process: no TURNOUT_ settings leaking in, wide output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURNOUT_")}
    env |= {"COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    if database is not None:
        env["TURNOUT_DB"] = database
    env.update(extra)
    return env

"""An operator's redrive and reset, made again from the entry each wrote: what replay (time
travel, migration planning) does with a `redrive` or `reset` entry of a history.

Both are deterministic given the instance before them, the entry's data (the reason, the
target state, the context patch) and its time, so the entry carries no copy of what they
made. The revision the engine stamped on the entry is copied onto the entry made again.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .compile import CompiledMachine
from .errors import TurnoutError
from .replay import Recorded
from .steps import Snapshot, Step


def replay_redrive(
    machine: CompiledMachine, snapshot: Snapshot, entry: Recorded
) -> tuple[Step, CompiledMachine]:
    """The redrive that wrote `entry`, made again on `machine`."""
    data = _data(entry)
    reason = data.get("reason")
    step = machine.redrive(snapshot, reason if isinstance(reason, str) else None, entry.at)
    return _stamped(step, data), machine


def replay_reset(
    machine: CompiledMachine, snapshot: Snapshot, entry: Recorded
) -> tuple[Step, CompiledMachine]:
    """The reset that wrote `entry`, made again on `machine`."""
    data = _data(entry)
    to_state, patch, reason = data.get("to"), data.get("patch"), data.get("reason")
    if not isinstance(to_state, str):
        raise TurnoutError("the reset entry does not name the state it moved to")
    patch = patch if isinstance(patch, dict) else None
    step = machine.reset(snapshot, to_state, patch, str(reason or ""), entry.at)
    return _stamped(step, data), machine


def _data(entry: Recorded) -> dict[str, Any]:
    return entry.data if isinstance(entry.data, dict) else {}


def _stamped(step: Step, data: dict[str, Any]) -> Step:
    """The step with the revision the engine wrote on its first entry, as the entry has it."""
    if step.history and "revision" in data:
        first = step.history[0]
        merged = {**(first.data or {}), "revision": data["revision"]}
        step.history[0] = dataclasses.replace(first, data=merged)
    return step

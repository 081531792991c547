"""Failures with a name: the error a `final: failed` state reports, the `failed` a compound or
parallel state receives from a child or branch that ended failed, and the error an instance
keeps in its machine data once it ends `failed`.

`machine["error"]` is `{type, message, state, seq}` (and `details`, the failure's other
fields, when it has any): its type and message, the state where it arose, and the history
entry that records it. Beside it, `machine["redrive"]` keeps the failure point a redrive
restores (`failure_point`, `redrive_point`; see redrive.py).
"""

from __future__ import annotations

from typing import Any

from .model import State
from .steps import FINISHED, Status
from .values import copy_json

MAX_MESSAGE_CHARS = 2000
# The engine's own error types for a child or branch that ended in a `final: failed` state
# (kept as the type when that state names none, else as the failure's `wrapper`).
STATE_FAILED, BRANCH_FAILED = "StateFailed", "BranchFailed"
_KEPT = ("type", "message", "state")
_LEFT_OUT = ("traceback",)  # `last_error` shows it; the machine data does not repeat it


def ended_in(state: State, message: Any, owner: str, branch: str = "") -> dict[str, Any]:
    """The error of reaching the `final: failed` `state`: its own `error` type and `message`
    (the value of its message expression; None: the engine's message) or, when it names
    none, the engine's; `owner` is the compound or parallel state it ends ('' at the top),
    `branch` the region of a parallel state it is in. The error names `state`, its branch,
    and the engine's type as `wrapper` when the failure is named inside another state."""
    if branch:
        wrapper, default = BRANCH_FAILED, f"branch {branch!r} ended in {state.name!r}"
    elif owner:
        wrapper, default = STATE_FAILED, f"{owner!r} ended in {state.name!r}"
    else:
        wrapper, default = STATE_FAILED, f"the instance ended in {state.name!r}"
    error: dict[str, Any] = {"type": wrapper, "message": default, "state": state.path}
    if branch:
        error["branch"] = branch
    if state.error is not None:
        error["type"] = state.error.type
        if message is not None:
            error["message"] = text_of(message)
        if owner:
            error["wrapper"] = wrapper
    return error


def instance_error(error: Any, state: str, seq: int) -> dict[str, Any]:
    """What an instance keeps of the failure `error` it ended with (a `failed` payload's
    error, or one of `ended_in`) that arose at `state` (unless the error names its own) and
    that the history entry `seq` records."""
    found = error if isinstance(error, dict) else {"message": error}
    kept = {
        "type": text_of(found.get("type") or "Error"),
        "message": text_of(found.get("message", "")),
        "state": text_of(found.get("state") or state),
        "seq": seq,
    }
    details = {
        key: value for key, value in found.items() if key not in _KEPT and key not in _LEFT_OUT
    }
    if details:
        kept["details"] = details
    return kept


def faulted(machine: Any, status: str, state: str, error: Any, seq: int) -> tuple[str, Any]:
    """The status and machine data of an instance an operation failed for its own fault
    (the engine's `error` entry `seq`): it ends failed, keeping `error` arising at `state`
    unless it keeps one already; a finished instance keeps its status. The machine data is
    otherwise as read, since it may be what is broken."""
    ended = status if status in FINISHED else Status.FAILED
    if ended != status and isinstance(machine, dict) and "error" not in machine:
        machine = {**machine, "error": instance_error(error, state, seq)}
    return ended, machine


def text_of(value: Any) -> str:
    """A value as the text of an error (None is empty), at most MAX_MESSAGE_CHARS long."""
    text = "" if value is None else value if isinstance(value, str) else str(value)
    return text[:MAX_MESSAGE_CHARS]


def failure_point(state: str, machine: dict[str, Any]) -> dict[str, Any]:
    """Where a failure arose (the node at `state`) and the configuration it arose in: the
    active states with their entries, the foreach books and the regions' results, copied
    before the failure changes anything, for a redrive to restore."""
    return {
        "state": state,
        "active": dict(machine.get("active", {})),
        "foreach": copy_json(machine.get("foreach", {})),
        "results": copy_json(machine.get("results", {})),
    }


def redrive_point(
    failing: dict[str, Any] | None, state: str, machine: dict[str, Any], compensating: bool
) -> dict[str, Any]:
    """What an instance ending failed keeps for a redrive: the first failure point of the
    operation that ends it (`failing`), else the configuration now, failing at `state`;
    when `compensating`, with the compensations about to run, which a redrive refuses."""
    point = failing if failing is not None else failure_point(state, machine)
    ran = copy_json(machine.get("compensations", [])) if compensating else []
    return {**point, "compensations": ran}

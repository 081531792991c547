"""What a call state's child reports to its parent when it ends: its final context when it
succeeded, else the error its `failed` carries. The engine and `simulate` both use it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .steps import Entry, Status

CALL_ERROR = "CallError"  # a child that cannot be started: no such definition, too deep
CHILD_FAILED = "ChildFailed"  # a failed child whose history names no error
CHILD_CANCELLED = "ChildCancelled"  # a child cancelled by someone other than its parent


def failure_of(entries: Iterable[tuple[str, str | None, Any]]) -> dict[str, Any] | None:
    """The newest error among history entries (kind, event, data), newest first: an `error`
    entry, or a task's or a call's `failed`; None when there is none."""
    for kind, event, data in entries:
        if kind == "error" or (kind in ("task", "call") and event == "failed"):
            found = data.get("error") if isinstance(data, dict) else None
            return found if isinstance(found, dict) else (data if isinstance(data, dict) else {})
    return None


def child_value(
    status: str,
    context: dict[str, Any],
    machine: dict[str, Any],
    failure: dict[str, Any] | None,
    child: str,
) -> Any:
    """What `CompiledMachine.child_finished` is given for a child that ended with `status`:
    its context when it succeeded; else `{error: {type, message}, child}`, the error being
    the one the child's machine keeps, else its newest one (`failure`), else ChildFailed;
    ChildCancelled when it was cancelled."""
    if status == Status.SUCCEEDED:
        return context
    if status == Status.CANCELLED:
        error = {"type": CHILD_CANCELLED, "message": f"the called instance {child} was cancelled"}
    else:
        found = machine.get("error") if isinstance(machine.get("error"), dict) else failure
        found = found or {}
        error = {
            "type": str(found.get("type") or CHILD_FAILED),
            "message": str(found.get("message") or f"the called instance {child} failed"),
        }
    return {"error": error, "child": child}


def call_error(message: str) -> dict[str, Any]:
    """The `failed` payload of a call whose child could not be started."""
    return {"error": {"type": CALL_ERROR, "message": message}}


def newest_first(entries: list[Entry]) -> Iterable[tuple[str, str | None, Any]]:
    """History entries of `simulate` as `failure_of` reads them."""
    return ((entry.kind, entry.event, entry.data) for entry in reversed(entries))

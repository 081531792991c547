"""The exception hierarchy shared by every turnout package.

`TurnoutError` is the common root; the engine re-exports these and adds nothing of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class TurnoutError(Exception):
    """Root of every error turnout raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a definition, located in its source."""

    message: str
    line: int = 0
    column: int = 0
    file: str = "<definition>"
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class DefinitionError(TurnoutError):
    """A definition could not be loaded; `.problems` lists every defect found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.column))
        lines = "\n".join(str(p) for p in self.problems)
        count = len(self.problems)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} in definition:\n{lines}")


class InvalidInput(TurnoutError):
    """Data given to start an instance (or an event payload) is not acceptable."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or [message]
        super().__init__(message)


class ValueNotStorable(InvalidInput):
    """A value cannot be stored as JSON by the rule of `statemachines.values.storable`.

    `.path` locates the offending part (`context.tags[2]`), `.reason` says what is wrong with it.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path} {reason}")


class DefinitionNotFound(TurnoutError):
    """No deployed definition has this name (and version)."""

    def __init__(self, name: str, version: int | None = None) -> None:
        self.name = name
        self.version = version
        what = f"{name!r} version {version}" if version is not None else repr(name)
        super().__init__(f"no definition {what} is deployed")


class InstanceNotFound(TurnoutError):
    """No instance has this id (or business key)."""

    def __init__(self, instance: str) -> None:
        self.instance = instance
        super().__init__(f"no instance {instance!r}")


class EventRejected(TurnoutError):
    """No transition of the active states accepts the event; nothing changed."""

    def __init__(self, event: str, state: str, allowed: list[str], reason: str = "") -> None:
        self.event = event
        self.state = state
        self.allowed = allowed
        detail = f" ({reason})" if reason else ""
        accepts = ", ".join(allowed) if allowed else "no events"
        super().__init__(
            f"event {event!r} rejected in state {state!r}{detail}; it accepts: {accepts}"
        )


class DuplicateKey(TurnoutError):
    """A business key is already used by another instance of the same definition."""

    def __init__(self, definition: str, key: str) -> None:
        self.definition = definition
        self.key = key
        super().__init__(f"definition {definition!r} already has an instance with key {key!r}")


class TaskNotHeld(TurnoutError):
    """An answer to a task from a worker that neither holds it nor was its last holder (or
    whose late answer has already been recorded); nothing was written."""

    def __init__(self, task_id: str, worker: str, reason: str = "") -> None:
        self.task_id = task_id
        self.worker = worker
        detail = reason or "it neither holds the task nor was its last holder"
        super().__init__(f"worker {worker!r} may not answer task {task_id!r}: {detail}")


class ExpressionError(TurnoutError):
    """An expression failed while being evaluated (a type error, a limit reached)."""

    def __init__(self, expression: str, message: str, detail: Any = None) -> None:
        self.expression = expression
        self.detail = detail
        super().__init__(f"{message} in expression {expression!r}")


class RenderError(TurnoutError):
    """A diagram could not be produced: an unknown format, a missing `dot`, a layout failure."""


class DiagramTooLarge(RenderError):
    """A diagram that is not laid out: its definition has more states and transitions than
    `.limit` together, or Graphviz ran past its time or memory bound on it (`.reason`).

    `.states` and `.transitions` count what the drawing holds; its `dot` and `mermaid` text
    need no layout and can still be had.
    """

    def __init__(self, definition: str, states: int, transitions: int, limit: int,
                 reason: str) -> None:  # fmt: skip
        self.definition = definition
        self.states = states
        self.transitions = transitions
        self.limit = limit
        self.reason = reason
        super().__init__(
            f"the diagram of {definition!r} ({states:,} states, {transitions:,} transitions) "
            f"is not drawn: {reason}; its dot or mermaid text needs no layout"
        )

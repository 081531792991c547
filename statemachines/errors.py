"""Every error turnout raises on purpose, in one tree shared by its three packages.

    TurnoutError
    ├── DefinitionError        a definition does not load; `.problems` lists every defect
    ├── InvalidInput           data that cannot be accepted (start data, a payload, an argument)
    │   ├── ValueNotStorable   ... a value that cannot be stored as JSON
    │   ├── ContextTooLarge    ... a context that would grow past its limit
    │   ├── UsageError         ... a command-line argument that cannot be used
    │   └── UnknownState       ... a state path the instance's definition does not have
    ├── NotFound               the thing named does not exist
    │   ├── DefinitionNotFound
    │   ├── InstanceNotFound
    │   └── TaskNotFound
    ├── Conflict               the request does not fit the current state; nothing changed
    │   ├── EventRejected      no transition of the active states accepts the event
    │   ├── DuplicateKey       the business key is taken
    │   ├── TaskNotHeld        the worker may not answer this task
    │   ├── RedriveRefused     the instance cannot be redriven (not failed, compensated...)
    │   ├── ResetRefused       the instance cannot be reset now (it is compensating)
    │   └── ConcurrentUpdate   the instance moved under the operation (the engine retries)
    ├── ExpressionError        an expression failed while being evaluated
    ├── DatabaseUnavailable    the database cannot be reached or refused the operation
    └── RenderError            a diagram could not be produced
        └── DiagramTooLarge    ... its drawing is past the layout limits

The edges translate by the middle classes: the HTTP API answers 404 for any `NotFound`,
409 for any `Conflict`, 422 for `DefinitionError` and `InvalidInput`; the command line exits
2 for bad input and 1 for everything else. `statemachines` and `diagrams` raise the errors
they need from here; the engine re-exports the whole tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
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
        self.problems = sorted(problems, key=attrgetter("file", "line", "column"))
        lines = "\n".join(str(problem) for problem in self.problems)
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


class NotFound(TurnoutError):
    """The definition, instance or task named does not exist."""


class Conflict(TurnoutError):
    """The request does not fit the current state of what it names; nothing was changed."""


class ContextTooLarge(InvalidInput):
    """An operation would grow an instance's context past its limit; nothing of it is
    written (an event is refused, a task result fails its attempt)."""


class UsageError(InvalidInput):
    """A command-line argument that cannot be used (bad JSON in --data, say)."""


class UnknownState(InvalidInput):
    """A state path that names no state of the definition (`.state`); `.known` lists the
    paths of every state it has, in document order (the message names the first 50)."""

    def __init__(self, state: str, definition: str, known: list[str]) -> None:
        self.state = state
        self.definition = definition
        self.known = known
        names = ", ".join(known[:50]) + (f" and {len(known) - 50} more" if len(known) > 50 else "")
        super().__init__(f"{definition!r} has no state {state!r}; its states are: {names}")


class DefinitionNotFound(NotFound):
    """No deployed definition has this name (and version)."""

    def __init__(self, name: str, version: int | None = None) -> None:
        self.name = name
        self.version = version
        what = f"{name!r} version {version}" if version is not None else repr(name)
        super().__init__(f"no definition {what} is deployed")


class InstanceNotFound(NotFound):
    """No instance has this id (or business key)."""

    def __init__(self, instance: str) -> None:
        self.instance = instance
        super().__init__(f"no instance {instance!r}")


class TaskNotFound(NotFound):
    """No task has this id."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(f"no task with id {task_id!r}")


class EventRejected(Conflict):
    """No transition of the active states accepts the event; nothing changed."""

    def __init__(self, event: str, state: str, allowed: list[str], reason: str = "") -> None:
        self.event = event
        self.state = state
        self.allowed = allowed
        self.definition: str | None = None  # the instance's, when an engine refused it
        detail = f" ({reason})" if reason else ""
        accepts = ", ".join(allowed) if allowed else "no events"
        super().__init__(
            f"event {event!r} rejected in state {state!r}{detail}; it accepts: {accepts}"
        )


class DuplicateKey(Conflict):
    """A business key is already used by another instance of the same definition."""

    def __init__(self, definition: str, key: str) -> None:
        self.definition = definition
        self.key = key
        super().__init__(f"definition {definition!r} already has an instance with key {key!r}")


class TaskNotHeld(Conflict):
    """An answer to a task from a worker that neither holds it nor was its last holder (or
    whose late answer has already been recorded); nothing was written."""

    def __init__(self, task_id: str, worker: str, reason: str = "") -> None:
        self.task_id = task_id
        self.worker = worker
        detail = reason or "it neither holds the task nor was its last holder"
        super().__init__(f"worker {worker!r} may not answer task {task_id!r}: {detail}")


class RedriveRefused(Conflict):
    """A redrive the instance does not allow: it is not failed, compensation ran for its
    failure, or it ended in a `final: failed` state its definition chose; `.reason` says
    which. Nothing changed."""

    def __init__(self, reason: str, instance: str = "") -> None:
        self.reason = reason
        self.instance = instance
        which = f"instance {instance!r}" if instance else "the instance"
        super().__init__(f"{which} cannot be redriven: {reason}")


class ResetRefused(Conflict):
    """A reset the instance does not allow now (it is running its compensations); `.reason`
    says why. Nothing changed."""

    def __init__(self, reason: str, instance: str = "") -> None:
        self.reason = reason
        self.instance = instance
        which = f"instance {instance!r}" if instance else "the instance"
        super().__init__(f"{which} cannot be reset: {reason}")


class ConcurrentUpdate(Conflict):
    """An instance changed between reading and writing it (the engine retries the operation)."""


class ExpressionError(TurnoutError):
    """An expression failed while being evaluated (a type error, a limit reached)."""

    def __init__(self, expression: str, message: str, detail: Any = None) -> None:
        self.expression = expression
        self.detail = detail
        super().__init__(f"{message} in expression {expression!r}")


class DatabaseUnavailable(TurnoutError):
    """The database cannot be reached, cannot be used, or refused the operation.

    `outcome_unknown` is False when the failure came before the commit was sent: the call
    changed nothing, and retrying it is safe. It is True when the connection was lost with
    the commit in flight: the change may or may not have committed, and only a retry that is
    idempotent is safe (an event with an idempotency key; a start with a business key, which
    raises DuplicateKey if the first one committed, so `get_by_key` finds it).
    """

    def __init__(self, message: str, *, outcome_unknown: bool = False) -> None:
        self.outcome_unknown = outcome_unknown
        if outcome_unknown:
            outcome = (
                "the outcome is unknown: the change may have committed; retry only with a "
                "business key or an idempotency key"
            )
        else:
            outcome = "nothing was changed"
        super().__init__(f"{message} ({outcome})")


class SchemaMismatch(TurnoutError):
    """The database's schema is not the one this release of turnout uses: written by a newer
    release, or at a revision no release wrote. `current` and `head` name the revisions."""

    def __init__(self, message: str, *, current: str, head: str) -> None:
        self.current = current
        self.head = head
        super().__init__(message)


class SchemaOutdated(SchemaMismatch):
    """The database's schema is at an older revision: `turnout db upgrade` upgrades it."""


class RenderError(TurnoutError):
    """A diagram could not be produced: an unknown format, a missing `dot`, a layout failure."""


class DiagramTooLarge(RenderError):
    """A diagram that is not laid out: its definition has more states and transitions than
    `.limit` together, or Graphviz ran past its time or memory bound on it (`.reason`).

    `.states` and `.transitions` count what the drawing holds; its `dot` and `mermaid` text
    need no layout and can still be had.
    """

    def __init__(
        self, definition: str, states: int, transitions: int, limit: int, reason: str
    ) -> None:
        self.definition = definition
        self.states = states
        self.transitions = transitions
        self.limit = limit
        self.reason = reason
        super().__init__(
            f"the diagram of {definition!r} ({states:,} states, {transitions:,} transitions) "
            f"is not drawn: {reason}; its dot or mermaid text needs no layout"
        )

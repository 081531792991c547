"""How a task handler is called: with its input only, or with a `TaskContext` too, and with
its input as it comes or built into the type its first parameter declares.

Each handler's signature is read once (`plan_of`, when `Engine.task` registers it) into a
`HandlerPlan`; the workers ask the plan for the arguments of each call.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pydantic

from .records import ClaimedTask, InputMismatch
from .rows import InstanceRow

MAX_PROBLEMS = 20  # of a mismatched input, kept in InputMismatch's details
POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


@dataclass(frozen=True)
class TaskContext:
    """What a handler may know of the task it runs, as it stood when the attempt was claimed.

    `idempotency_key` is the same for every attempt of the task, on any worker, and another
    for each foreach item and each new entry into the state (a re-entry, a redrive): pass it
    to the services the handler calls so that a retried attempt is not applied twice.
    `attempt` counts from 1 to at most `max_attempts`; `lease_until` is when another worker
    may take the task over unless this one renews its lease (the workers do, while the
    handler runs); `deadline` is when the attempt runs past the task's `timeout` (None: no
    timeout). `traceparent` is the W3C trace context of the attempt's span when the
    instance is traced (see tracing.py), to pass on to services outside the process.
    """

    task_id: str
    task_name: str
    instance_id: str
    key: str | None
    definition: str
    version: int
    state: str
    item: int | None
    attempt: int
    max_attempts: int
    lease_until: datetime
    deadline: datetime | None
    idempotency_key: str
    traceparent: str | None = None


def context_of(
    task: ClaimedTask, instance: InstanceRow | None, traceparent: str | None = None
) -> TaskContext:
    """The context of a claimed task, with its instance's key, definition and version."""
    return TaskContext(
        task_id=task.id,
        task_name=task.name,
        instance_id=task.instance_id,
        key=instance.key if instance is not None else None,
        definition=instance.definition if instance is not None else "",
        version=instance.version if instance is not None else 0,
        state=task.state,
        item=task.item,
        attempt=task.attempt,
        max_attempts=task.max_attempts,
        lease_until=task.lease_until,
        deadline=task.deadline,
        idempotency_key=task.idempotency_key,
        traceparent=traceparent,
    )


@dataclass(frozen=True)
class HandlerPlan:
    """How to call one handler: `context` is None (input only), "" (the context as the
    second positional argument) or the keyword to pass it by; `input_type` is the pydantic
    model or dataclass the input is built into (None: the input as stored)."""

    context: str | None
    input_type: type | None

    @property
    def wants_context(self) -> bool:
        return self.context is not None

    @functools.cached_property
    def _adapter(self) -> pydantic.TypeAdapter[Any]:
        assert self.input_type is not None
        return pydantic.TypeAdapter(self.input_type)

    def arguments(
        self,
        task: ClaimedTask,
        instance: InstanceRow | None = None,
        traceparent: str | None = None,
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The positional and keyword arguments of the call for `task` (its `instance`
        read when `wants_context`, the `traceparent` of its attempt's span when traced);
        InputMismatch when its input does not fit."""
        value = self.build(task.input)
        if self.context is None:
            return (value,), {}
        context = context_of(task, instance, traceparent)
        if self.context == "":
            return (value, context), {}
        return (value,), {self.context: context}

    def build(self, value: Any) -> Any:
        """The input built into `input_type` (validated by pydantic, in its lax mode)."""
        if self.input_type is None:
            return value
        try:
            return self._adapter.validate_python(value)
        except pydantic.ValidationError as exc:
            problems = [
                {"at": ".".join(str(part) for part in problem["loc"]), "message": problem["msg"]}
                for problem in exc.errors(include_url=False)[:MAX_PROBLEMS]
            ]
            name = self.input_type.__name__
            message = f"the input does not fit {name}: {exc.error_count()} problem(s)"
            raise InputMismatch(message, problems) from None


def plan_of(handler: Callable[..., Any]) -> HandlerPlan:
    """How `handler` is called, read from its signature once (remembered per handler)."""
    try:
        return _remembered(handler)
    except TypeError:  # an unhashable callable: read every time
        return _read_plan(handler)


@functools.lru_cache(maxsize=4096)
def _remembered(handler: Callable[..., Any]) -> HandlerPlan:
    return _read_plan(handler)


def _read_plan(handler: Callable[..., Any]) -> HandlerPlan:
    """The rules: the context is passed to a parameter annotated `TaskContext` (by position
    if it is the second positional one, else by name), else to one named `context`, else
    as the second argument when the handler has a second positional parameter without a
    default. The first positional parameter's annotation, if a pydantic model or a
    dataclass, is the input's type. Annotations are resolved with `typing.get_type_hints`,
    so string annotations (`from __future__ import annotations`) count when the names they
    use can be found in the handler's module; when they cannot, none count."""
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):  # a builtin without one: called with its input only
        return HandlerPlan(None, None)
    hints = _hints(handler)
    parameters = list(signature.parameters.values())
    positional = [p for p in parameters if p.kind in POSITIONAL]
    context: str | None = None
    for place, parameter in enumerate(parameters):
        if hints.get(parameter.name) is TaskContext and place > 0:
            second = len(positional) > 1 and parameter is positional[1]
            context = "" if second else parameter.name
            break
    else:
        named = signature.parameters.get("context")
        if named is not None and named.kind != inspect.Parameter.POSITIONAL_ONLY:
            second = len(positional) > 1 and named is positional[1]
            context = "" if second else "context"
        elif len(positional) > 1 and positional[1].default is inspect.Parameter.empty:
            context = ""
    first = hints.get(positional[0].name) if positional else None
    return HandlerPlan(context, first if _buildable(first) else None)


def _hints(handler: Callable[..., Any]) -> dict[str, Any]:
    target = handler if inspect.isroutine(handler) else type(handler).__call__
    target = inspect.unwrap(target)
    if isinstance(handler, functools.partial):
        target = handler.func
    try:
        return typing.get_type_hints(target)
    except Exception:  # a name imported only for type checking, say
        return {}


def _buildable(hint: Any) -> bool:
    if not isinstance(hint, type):
        return False
    return dataclasses.is_dataclass(hint) or issubclass(hint, pydantic.BaseModel)

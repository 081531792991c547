"""How a handler's signature decides its call: `handler(input)` or `handler(input, context)`,
its input as stored or built into the type its first parameter declares."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine import TaskContext
from engine.handlers import plan_of

if TYPE_CHECKING:
    from decimal import Decimal  # a name the handler's module cannot resolve at run time


@dataclass
class Point:
    x: int
    y: int


def test_one_parameter_or_an_optional_second_takes_the_input_only() -> None:
    assert not plan_of(lambda data: None).wants_context
    assert not plan_of(lambda data, retries=3: None).wants_context
    assert not plan_of(lambda *args: None).wants_context


def test_a_required_second_parameter_takes_the_context_by_position() -> None:
    assert plan_of(lambda data, info: None).context == ""


def test_a_parameter_annotated_task_context_or_named_context_takes_it() -> None:
    def keyword_only(data: Any, *, about: TaskContext) -> None: ...

    def named(data: Any, *, context: Any = None) -> None: ...

    assert plan_of(keyword_only).context == "about"
    assert plan_of(named).context == "context"


def test_a_callable_object_and_a_partial_are_read_from_their_call() -> None:
    class Charger:
        def __call__(self, point: Point, context: TaskContext) -> None: ...

    def place(prefix: str, point: Point, context: TaskContext) -> None: ...

    assert plan_of(Charger()).input_type is Point and plan_of(Charger()).context == ""
    partial = plan_of(functools.partial(place, "p"))
    assert partial.context == "" and partial.input_type is Point


def test_annotations_that_cannot_be_resolved_count_as_absent() -> None:
    def unresolved(amount: Decimal, extra: int = 0) -> None: ...

    plan = plan_of(unresolved)
    assert plan.input_type is None and not plan.wants_context
    assert plan_of(lambda point: None).build({"x": 1}) == {"x": 1}

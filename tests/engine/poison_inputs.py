"""What the poison test feeds the engine: odd payloads, odd expressions, and the definitions,
instances and actions drawn from them. Each value prints in a few words, so a failing example
reads `deep(900, nan)` rather than nine hundred brackets."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent / "task_modules"))
import poison_handlers  # noqa: E402


# -- payloads ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Payload:
    """A value described in a few words and built on demand, so a failing example reads
    `deep(900, nan)` rather than nine hundred brackets."""

    kind: str  # leaf, deep, wide, long, record
    size: int = 0
    leaf: Any = None
    fields: tuple[tuple[str, Payload], ...] = ()

    def build(self) -> Any:
        if self.kind == "leaf":
            return self.leaf
        if self.kind == "deep":
            value = self.leaf
            for level in range(self.size):
                value = [value] if level % 2 else {"d": value}
            return value
        if self.kind == "wide":
            return {f"k{number}": number for number in range(self.size)}
        if self.kind == "long":
            return "x" * self.size
        return {name: payload.build() for name, payload in self.fields}

    def __repr__(self) -> str:
        if self.kind == "leaf":
            return repr(self.leaf)
        if self.kind == "record":
            return "{" + ", ".join(f"{name!r}: {field!r}" for name, field in self.fields) + "}"
        if self.kind == "deep":
            return f"deep({self.size}, {self.leaf!r})"
        return f"{self.kind}({self.size})"


ODD_LEAVES = [
    (1, 2),
    {1, 2},
    datetime(2026, 1, 1, tzinfo=UTC),
    {1: "a", "1": "b"},
    {(1, 2): "tuple key"},
    {None: 1, True: 2},
    b"bytes",
    float("nan"),
    float("inf"),
    -float("inf"),
    10**400,
    -(2**63),
    "nul \x00 inside",
    "a lone surrogate \ud800",
]
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(ODD_LEAVES)
)
PAYLOADS = st.one_of(
    st.builds(Payload, kind=st.just("leaf"), leaf=LEAVES),
    st.builds(
        Payload,
        kind=st.just("deep"),
        size=st.sampled_from([2, 30, 63, 64, 65, 100, 900]),
        leaf=LEAVES,
    ),
    st.builds(Payload, kind=st.just("wide"), size=st.sampled_from([10, 1_000, 50_000])),
    st.builds(Payload, kind=st.just("long"), size=st.sampled_from([300, 300_000, 1_100_000])),
)
CONTEXT_KEYS = ["a", "n", "items", "when"]
RECORDS = st.lists(st.tuples(st.sampled_from(CONTEXT_KEYS), PAYLOADS), max_size=3).map(
    lambda pairs: Payload("record", fields=tuple(dict(pairs).items()))
)


def _record(**leaves: Any) -> Payload:
    """A record of plain leaves, in the order given."""
    fields = tuple((key, Payload("leaf", leaf=value)) for key, value in leaves.items())
    return Payload("record", fields=fields)


def _tame(number: int, text: Any, items: list[int]) -> Payload:
    return _record(n=number, a=text, items=items, when="2026-01-01T00:00:00+00:00")


def _odd(odd: Any, number: int) -> Payload:
    return _record(n=number, a=odd)


# Plain values under the keys the expressions read, so that most instances start and most
# events carry something an expression can use; one payload in three is an odd one.
TAME = st.builds(
    _tame,
    st.integers(-10, 10),
    st.text(max_size=8) | st.dictionaries(st.just("b"), st.integers()),
    st.lists(st.integers(-5, 5), max_size=4),
)
MOSTLY_TAME = st.tuples(st.integers(0, 2), TAME, RECORDS | PAYLOADS).map(
    lambda drawn: drawn[2] if drawn[0] == 2 else drawn[1]
)
# Event data is odder: a refused event costs a request, not an instance.
EVENT_DATA = st.one_of(
    TAME,
    st.builds(_odd, st.sampled_from(ODD_LEAVES), st.integers(-10, 10)),
    RECORDS,
    PAYLOADS,
)


# -- expressions and definitions -----------------------------------------------------------------
ATOMS = [
    "1",
    "'text'",
    "None",
    "True",
    "-0.0",
    "10 ** 30",
    "2 ** 9000",
    "float('nan')",
    "float('inf')",
    "1e308 * 10",
    "(1, 2)",
    "(now, 1)",
    "{'k': 1}",
    "{1: 'a'}",
    "{1: 'a', '1': 'b'}",
    "{None: 1}",
    "{(1, 2): 3}",
    "[[1, [2, [3, [4]]]]]",
    "now",
    "now.year",
    "str(now)",
    "[now]",
    "{'at': now}",
    "1 / 0",
    "1 // 0",
    "int('x')",
    "context.missing.deeper",
    "context['missing']",
    "context.n + 1",
    "context.a",
    "context",
    "event",
    "event.n",
    "event.a.b",
    "result",
    "result.n",
    "len(context.items)",
    "context.items[0]",
    "'x' * 100000",
    "upper(context.a)",
    "round(1.5, 400)",
    "max(context.items)",
    "context.n > 5",
    "now > context.when",
    "event.n * 10 ** 300",
]
FORMS = [
    "{0}",
    "[{0}, {1}]",
    "{{'k': {0}}}",
    "({0}, {1})",
    "{0} if {1} else {1}",
    "str({0})",
    "{0} == {1}",
    "{0} + {1}",
    "len({0})",
    "{{{0}: {1}}}",
]
EXPRESSIONS = st.builds(
    lambda form, first, second: form.format(first, second),
    st.sampled_from(FORMS),
    st.sampled_from(ATOMS),
    st.sampled_from(ATOMS),
)
ASSIGNS = st.dictionaries(st.sampled_from(CONTEXT_KEYS + ["t", "x"]), EXPRESSIONS, max_size=2)
SOME_ASSIGNS = st.dictionaries(
    st.sampled_from(CONTEXT_KEYS + ["t", "x"]), EXPRESSIONS, min_size=1, max_size=2
)
QUICK = [outcome for outcome in poison_handlers.OUTCOMES if outcome != "poison.hang"]
OUTCOMES = st.sampled_from(QUICK) | st.just("poison.hang")


def transition(target: str | None, guard: str | None, assign: dict[str, str]) -> dict[str, Any]:
    spelled: dict[str, Any] = {} if target is None else {"to": target}
    if guard is not None:
        spelled["if"] = guard
    if assign:
        spelled["assign"] = assign
    return spelled


@st.composite
def definitions(draw: Any) -> dict[str, Any]:
    """A definition (without its name): a task, a wait with events and a timer, an eventless
    choice, a second task; every expression, outcome and result handling drawn."""
    guards = st.none() | EXPRESSIONS
    first: dict[str, Any] = {
        "task": draw(OUTCOMES),
        "timeout": "500ms",
        "retry": {"attempts": draw(st.sampled_from([1, 2])), "delay": "100ms", "backoff": 1},
    }
    if draw(st.booleans()):
        first["input"] = draw(EXPRESSIONS)
    result = draw(st.sampled_from([None, False, "answer"]))
    if result is not None:
        first["result"] = result
    done = [transition("waiting", draw(guards), draw(ASSIGNS))]
    if draw(st.booleans()):
        done.append(transition("waiting", None, draw(ASSIGNS)))
    first["on"] = {"poke": transition(None, None, draw(SOME_ASSIGNS)), "done": done}
    failed = draw(st.sampled_from(["waiting", "assign", "broken", "unhandled"]))
    if failed == "assign":
        first["on"]["failed"] = transition("waiting", None, draw(ASSIGNS))
    elif failed != "unhandled":
        first["on"]["failed"] = failed
    waiting = {
        "on": {
            "poke": transition(None, draw(guards), draw(SOME_ASSIGNS)),
            "go": transition("checkpoint", draw(guards), draw(ASSIGNS)),
            "finish": "ended",
        },
        "after": {
            draw(st.sampled_from(["200ms", "300ms", "1s"])): transition(
                "checkpoint", draw(guards), draw(ASSIGNS)
            )
        },
    }
    second: dict[str, Any] = {
        "task": draw(OUTCOMES),
        "timeout": "500ms",
        "on": {"done": transition("ended", None, draw(ASSIGNS)), "failed": "broken"},
    }
    if draw(st.booleans()):
        second["input"] = draw(EXPRESSIONS)
    return {
        "initial": "first",
        "states": {
            "first": first,
            "waiting": waiting,
            "checkpoint": {
                "always": [transition("second", draw(EXPRESSIONS), draw(ASSIGNS)), {"to": "ended"}]
            },
            "second": second,
            "ended": {"final": True},
            "broken": {"final": "failed"},
        },
    }


@dataclass(frozen=True)
class Action:
    """One thing done to an instance after it has left its first task: an event or a cancel,
    through HTTP or the Python API."""

    event: str
    data: Payload
    http: bool

    def __repr__(self) -> str:
        return f"{'http' if self.http else 'python'}:{self.event}({self.data!r})"


ACTIONS = st.builds(
    Action,
    event=st.sampled_from(["poke", "go", "finish", "done", "nope", "cancel"]),
    data=EVENT_DATA,
    http=st.booleans(),
)
INSTANCES = st.lists(
    st.tuples(MOSTLY_TAME, st.booleans(), st.lists(ACTIONS, max_size=3)), min_size=2, max_size=3
)

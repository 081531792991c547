"""Properties: generated valid definitions load, compile and run; mutations of them (of the
YAML text and of the data) either load or raise DefinitionError, never anything else."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import statemachines
from statemachines import DefinitionError, ExpressionError, Failure, simulate
from statemachines.expressions import Expression, ExpressionSyntaxError

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Names YAML 1.1 would have turned into booleans or numbers are fair game for state names.
NAMES = (
    "off on yes no y n start wait step_1 Step-2 null_ish true_state go e1 review state trigger "
    "initial machine"
).split()
EVENTS = ["go", "on", "off", "yes", "approve", "tick.tock", "x-1", "state", "trigger", "to_go"]
GUARDS = [
    "context.n > 1",
    "event.ok",
    "result.approved and context.amount < 10000",
    "len(context.items or []) > 0",
    "context.missing == None",
    "now.year > 2000",
    "'a' in (context.tags or [])",
    "not context.flag",
]
VALUES = ["context.n + 1", "event", "'text'", "[1, 2]", "{'k': context.n}", "now.day", "True"]
DURATIONS = ["500ms", "30s", "5m", "1h30m", "2d", "PT30S", "P1DT2H", "1w"]
TASKS = ["payments.validate", "mail.send", "inventory.reserve", "t"]


@st.composite
def transitions(draw: st.DrawFn, targets: list[str], last: str) -> Any:
    """TRANSITIONS in every form, with an unguarded last entry that goes to `last`."""
    guarded = draw(st.lists(st.sampled_from(targets), max_size=2))
    entries: list[Any] = [{"to": target, "if": draw(st.sampled_from(GUARDS))} for target in guarded]
    final_entry: Any = draw(st.sampled_from(["bare", "mapping", "assign"]))
    if final_entry == "bare":
        final_entry = last
    elif final_entry == "mapping":
        final_entry = {"to": last}
    else:
        final_entry = {"to": last, "assign": {"k": draw(st.sampled_from(VALUES))}}
    entries.append(final_entry)
    if len(entries) == 1 and draw(st.booleans()):
        return entries[0]
    return entries


@st.composite
def definitions(draw: st.DrawFn) -> dict[str, Any]:
    """A valid definition: a forward chain of states (so every state is reachable and runs
    end), with extra forward transitions, of every kind of state."""
    names = draw(st.lists(st.sampled_from(NAMES), min_size=2, max_size=7, unique=True))
    states: dict[str, Any] = {}
    for index, name in enumerate(names[:-1]):
        later = names[index + 1 :]
        nxt = later[0]
        kind = draw(st.sampled_from(["wait", "task", "choice", "parallel", "foreach"]))
        state: dict[str, Any] = {}
        if draw(st.booleans()):
            state["description"] = draw(st.text(max_size=20))
        if kind == "wait":
            events = draw(st.lists(st.sampled_from(EVENTS), min_size=1, max_size=3, unique=True))
            state["on"] = {event: draw(transitions(later, nxt)) for event in events}
            if draw(st.booleans()):
                state["on"]["poke"] = {"assign": {"n": "(context.n or 0) + 1"}}
            if draw(st.booleans()):
                state["after"] = {draw(st.sampled_from(DURATIONS)): nxt}
        elif kind == "task":
            state["task"] = draw(st.sampled_from(TASKS))
            state["on"] = {"done": draw(transitions(later, nxt))}
            if draw(st.booleans()):
                state["on"]["failed"] = draw(st.sampled_from(later))
            if draw(st.booleans()):
                state["retry"] = {
                    "attempts": draw(st.integers(1, 5)),
                    "delay": draw(st.sampled_from(DURATIONS)),
                }
            if draw(st.booleans()):
                state["timeout"] = draw(st.sampled_from(DURATIONS))
            if draw(st.booleans()):
                state["compensate"] = "undo." + name.lower().replace("-", "_")
            state["result"] = draw(st.sampled_from([False, "stored", "other_key"]))
        elif kind == "choice":
            state["always"] = draw(transitions(later, nxt))
        elif kind == "parallel":
            state["parallel"] = {
                "one": {"task": draw(st.sampled_from(TASKS))},
                "two": {"initial": "w", "states": {"w": {"on": {"go": "f"}}, "f": {"final": True}}},
            }
            state["on"] = {"done": nxt, "failed": draw(st.sampled_from(later))}
        else:
            state["foreach"] = {
                "items": "context.items or []",
                "task": "mail.send",
                "concurrency": draw(st.integers(1, 3)),
            }
            state["on"] = {"done": nxt}
        states[name] = state
    states[names[-1]] = {"final": draw(st.sampled_from([True, "succeeded", "failed"]))}
    definition: dict[str, Any] = {"name": "generated", "initial": names[0], "states": states}
    if draw(st.booleans()):
        definition["version"] = draw(st.integers(1, 50))
    if draw(st.booleans()):
        definition["input"] = {"type": "object", "properties": {"n": {"type": "integer"}}}
    return definition


def to_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def load_or_definition_error(text: str) -> statemachines.Definition | None:
    """Load `text`; a DefinitionError is an acceptable answer, anything else fails the test."""
    try:
        definition = statemachines.load(text)
    except DefinitionError as exc:
        assert exc.problems
        assert all(problem.line >= 0 and problem.message for problem in exc.problems)
        return None
    compiled = statemachines.compile_definition(definition)
    step = compiled.start({"n": 2, "items": ["a"]}, NOW)
    compiled.allowed(step.snapshot)
    return definition


@SETTINGS
@given(definitions(), st.lists(st.sampled_from([*EVENTS, "poke", "after:30s"]), max_size=6))
def test_generated_definitions_load_compile_and_run(
    data: dict[str, Any], events: list[str]
) -> None:
    definition = statemachines.load(to_yaml(data))
    assert definition.name == "generated"
    assert [state.name for state in definition.states] == list(data["states"])
    compiled = statemachines.compile_definition(definition)
    assert compiled.start({}, NOW).status in ("running", "succeeded", "failed")
    run = simulate(
        definition,
        events,
        data={"n": 2, "items": ["a", "b"]},
        strict=False,
        results={"payments.validate": {"approved": True}, "t": Failure()},
    )
    assert run.status in ("running", "succeeded", "failed", "compensating")
    assert run.path[0] == (None, None, data["initial"])


MUTATION_CHARS = st.sampled_from(list(":-[]{}&*!|>'\"#?,%@`\n \t0aZ_."))
TAGS = [
    f"!!{tag} "
    for tag in ("int", "float", "bool", "null", "str", "binary", "python/name:os.system")
]
STRUCTURE = ["&a ", "*a ", "? ", "<<: ", "- ", "|\n", "{", "[", "---\n", "%YAML 1.2\n"]
TOKENS = st.sampled_from([*TAGS, *STRUCTURE, "\ufeff", "\x00", "1:30", "0x"])
TEXT_ACTIONS = ["insert", "delete", "replace", "duplicate_line", "drop_line", "indent", "token"]


@st.composite
def text_mutations(draw: st.DrawFn) -> str:
    text = to_yaml(draw(definitions()))
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, max(len(text) - 1, 0)))
        action = draw(st.sampled_from(TEXT_ACTIONS))
        lines = text.splitlines(keepends=True)
        line = text.count("\n", 0, where)
        if action == "insert":
            text = (
                text[:where] + draw(st.text(MUTATION_CHARS, min_size=1, max_size=4)) + text[where:]
            )
        elif action == "token":
            text = text[:where] + draw(TOKENS) + text[where:]
        elif action == "delete":
            text = text[:where] + text[where + draw(st.integers(1, 8)) :]
        elif action == "replace":
            text = text[:where] + draw(MUTATION_CHARS) + text[where + 1 :]
        elif action == "duplicate_line" and lines:
            text = "".join(lines[: line + 1] + lines[line : line + 1] + lines[line + 1 :])
        elif action == "drop_line" and lines:
            text = "".join(lines[:line] + lines[line + 1 :])
        elif lines:
            text = "".join(
                lines[:line] + ["  " + lines[min(line, len(lines) - 1)]] + lines[line + 1 :]
            )
    return text


@SETTINGS
@given(text_mutations())
def test_mutated_yaml_text_loads_or_raises_definition_error(text: str) -> None:
    load_or_definition_error(text)


JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from([*NAMES, *DURATIONS, *GUARDS, "done", "failed"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.text(max_size=8) | st.sampled_from(["to", "if", "on", "task"]), inner, max_size=3
        )
    ),
    max_leaves=8,
)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += _paths(value, (*prefix, index))
    return found


MUTATED_KEYS = ["afer", "to", "task", "final", "always", "parallel", "foreach", "retry", "x"]


@st.composite
def data_mutations(draw: st.DrawFn) -> Any:
    data: Any = draw(definitions())
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(data)))
        action = draw(st.sampled_from(["replace", "delete", "add_key"]))
        if not path:
            data = draw(JSONISH) if action == "replace" else data
            continue
        parent = data
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        if action == "replace":
            parent[last] = draw(JSONISH)
        elif action == "delete":
            del parent[last]
        elif isinstance(parent[last], dict):
            key = draw(st.sampled_from(MUTATED_KEYS))
            parent[last][key] = draw(JSONISH)
    return data


@SETTINGS
@given(data_mutations())
def test_mutated_definition_data_loads_or_raises_definition_error(data: Any) -> None:
    load_or_definition_error(to_yaml(data))


EXPRESSION_TOKENS = """
context event result now . a b items year [ ] ( ) { } : , 0 1 -1 2.5 9 'x' '' + - * ** / // % < <=
== != in not and or is if else None True len str int float round min max abs lower _x __class__
lambda""".split()
SCOPE = {
    "context": {"a": 1, "b": [1, "two", None], "items": {"a": {"b": 2}}, "x": None},
    "event": {"a": "text", "b": [[1], {"a": 1}]},
    "result": None,
    "now": NOW,
}


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(EXPRESSION_TOKENS), min_size=1, max_size=12))
def test_random_expressions_are_refused_or_evaluate_or_fail_with_expression_error(
    tokens: list[str],
) -> None:
    text = " ".join(tokens)
    try:
        expression = Expression(text)
    except ExpressionSyntaxError:
        return
    try:
        expression.evaluate(SCOPE)
    except ExpressionError:
        pass


LEAVES = st.sampled_from(
    [
        *"context event result now context.a context.b event.b context.items.a now.year context.x "
        "0 1 -3 2.5 'x' '' None True [] {}".split(),
        "[1, 'a']",
    ]
)


OPERATORS = "+, -, *, /, //, %, **, <, <=, ==, !=, >, in, not in, is, and, or".split(", ")


def _combine(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.tuples(inner, st.sampled_from(OPERATORS), inner)
    return st.one_of(
        binary.map(lambda parts: f"({parts[0]} {parts[1]} {parts[2]})"),
        inner.map(lambda operand: f"(not {operand})"),
        inner.map(lambda operand: f"(-{operand})"),
        st.tuples(
            st.sampled_from(
                [
                    "len",
                    "str",
                    "int",
                    "float",
                    "bool",
                    "abs",
                    "round",
                    "min",
                    "max",
                    "lower",
                    "upper",
                ]
            ),
            st.lists(inner, max_size=2),
        ).map(lambda parts: f"{parts[0]}({', '.join(parts[1])})"),
        st.tuples(inner, inner).map(lambda parts: f"{parts[0]}[{parts[1]}]"),
        st.tuples(inner, st.sampled_from(["a", "b", "year", "items"])).map(
            lambda parts: f"({parts[0]}).{parts[1]}"
        ),
        st.tuples(inner, inner, inner).map(
            lambda parts: f"({parts[0]} if {parts[1]} else {parts[2]})"
        ),
        st.lists(inner, max_size=3).map(lambda items: f"[{', '.join(items)}]"),
        st.tuples(inner, inner).map(lambda parts: f"{{{parts[0]}: {parts[1]}}}"),
    )


@settings(max_examples=400, deadline=None)
@given(st.recursive(LEAVES, _combine, max_leaves=12))
def test_well_formed_expressions_evaluate_or_fail_with_expression_error(text: str) -> None:
    try:
        expression = Expression(text)
    except ExpressionSyntaxError as exc:
        assert "too complex" in str(exc) or "longer than" in str(exc)
        return
    try:
        expression.evaluate(SCOPE)
    except ExpressionError:
        pass

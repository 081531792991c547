"""SPEC 2.2: the expression language — what it computes, what it refuses, and its limits."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

import statemachines
from statemachines import DefinitionError, ExpressionError
from statemachines.expressions import (
    MAX_EXPRESSION_LENGTH,
    MAX_EXPRESSION_NODES,
    Expression,
    ExpressionSyntaxError,
)

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
CONTEXT = {
    "amount": 120,
    "customer": {"country": "PT", "tags": ["vip", "eu"]},
    "items": [{"sku": "a"}, {"sku": "b"}],
    "express": False,
    "note": None,
}


def evaluate(text: str, event: Any = None, **names: Any) -> Any:
    scope = {"context": CONTEXT, "event": event, "result": event, "now": NOW, **names}
    return Expression(text).evaluate(scope)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("context.amount < 10000 and not context.express", True),
        ("context.customer.country", "PT"),
        ("context.customer.country in ['PT', 'ES']", True),
        ("'vip' in context.customer.tags", True),
        ("context['customer']['tags'][1]", "eu"),
        ("context.items[-1].sku", "b"),
        ("len(context.items) * 2 + 1", 5),
        ("context.amount / 8", 15.0),
        ("context.amount // 7 % 5", 2),
        ("2 ** 10", 1024),
        ("'large' if context.amount > 100 else 'small'", "large"),
        ("{'total': context.amount, 'n': len(context.items)}", {"total": 120, "n": 2}),
        ("[context.amount, 'x']", [120, "x"]),
        ("min(3, context.amount)", 3),
        ("max([1, 7, 2])", 7),
        ("abs(-2) + round(2.6)", 5),
        ("round(1234, -2) + round(0.125, 2)", 1200.12),
        ("upper(context.customer.country) + lower('AB')", "PTab"),
        ("str(7) + 'x'", "7x"),
        ("int('42') + float('0.5')", 42.5),
        ("bool(context.items)", True),
        ("now.year * 100 + now.month", 202603),
        ("context.note == None", True),
        ("context.note is None", True),
        ("True", True),
        ("None", None),
        ("'abc'[1:]", "bc"),
    ],
)
def test_expressions_compute_what_python_would(text: str, value: Any) -> None:
    assert evaluate(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "context.missing",
        "context.customer.address.street",
        "context['nothing']['deeper']",
        "context.items[5]",
        "context.items[5].sku",
        "event.anything",
        "result.approved",
    ],
)
def test_a_missing_key_evaluates_to_none(text: str) -> None:
    assert evaluate(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "context.missing > 3",
        "context.missing < 3",
        "context.missing >= 0",
        "3 <= context.missing",
        "context.missing in context.nothing",
        "event.limit >= context.amount",
    ],
)
def test_comparison_with_none_is_false_not_an_error(text: str) -> None:
    assert evaluate(text) is False


def test_item_and_index_are_available_to_foreach_inputs() -> None:
    assert evaluate("{'to': item, 'n': index}", item="ana@x", index=3) == {"to": "ana@x", "n": 3}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("context.amount > 'x'", "TypeError"),
        ("1 / 0", "ZeroDivisionError"),
        ("len(context.amount)", "TypeError"),
        ("context.amount.value", "int has no field 'value'"),
        ("int('nope')", "ValueError"),
        ("now.tzinfo", "datetime has no field 'tzinfo'"),
    ],
)
def test_a_runtime_failure_raises_expression_error(text: str, message: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        evaluate(text)
    assert message in str(caught.value)
    assert caught.value.expression == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("().__class__", "access to '__class__' is not allowed"),
        ("context.__class__.__mro__", "is not allowed"),
        ("''.__class__.__subclasses__()", "only these functions can be called"),
        ("context._private", "access to '_private' is not allowed"),
        ("__import__('os')", "only these functions can be called"),
        ("__builtins__", "unknown name '__builtins__'"),
        ("open('/etc/passwd')", "only these functions can be called"),
        ("eval('1')", "only these functions can be called"),
        ("exec('x = 1')", "only these functions can be called"),
        ("getattr(context, 'x')", "only these functions can be called"),
        ("lambda: 1", "Lambda is not allowed"),
        ("[x for x in context.items]", "ListComp is not allowed"),
        ("{x: 1 for x in 'ab'}", "DictComp is not allowed"),
        ("(x for x in 'ab')", "GeneratorExp is not allowed"),
        ("{1, 2}", "Set is not allowed"),
        ("(y := 1)", "NamedExpr is not allowed"),
        ("f'{context}'", "JoinedStr is not allowed"),
        ("b'bytes'", "bytes literals are not allowed"),
        ("context.items.pop()", "only these functions can be called"),
        ("len(context, key=1)", "keyword arguments are not allowed"),
        ("1 << 100000", "LShift is not allowed"),
        ("~1", "Invert is not allowed"),
        ("contxt.amount", "unknown name 'contxt' — did you mean 'context'?"),
        ("x = 1", "invalid expression"),
        ("import os", "invalid expression"),
        ("context.amount >", "invalid expression"),
        ("1; 2", "invalid expression"),
    ],
)
def test_escapes_and_unsupported_syntax_are_refused_when_parsed(text: str, message: str) -> None:
    with pytest.raises(ExpressionSyntaxError) as caught:
        Expression(text)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "9**9**9",
        "4000000 ** 4000000 > 1",
        "(2 ** 5000) * (2 ** 5000) * (2 ** 5000)",
        "'a' * 10**9",
        "'a' * 100001",
        "[0] * 99999 * 99999",
        "len(str([[0] * 99999] * 99999))",
        "[[0] * 60000] * 2",
        "'%0999999999d' % 1",
        "'x' * 60000 + 'y' * 60000",
        "int('9' * 5000)",
        "round(5, -1000000000)",
        "round(1.5, 10 ** 9)",
    ],
)
def test_resource_bombs_fail_quickly_and_harmlessly(text: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ExpressionError):
        evaluate(text)
    assert time.perf_counter() - started < 2


def test_long_and_deep_expressions_are_refused_when_parsed() -> None:
    with pytest.raises(ExpressionSyntaxError, match="longer than 2000 characters"):
        Expression("1 + " * (MAX_EXPRESSION_LENGTH // 4) + "1")
    with pytest.raises(ExpressionSyntaxError, match="too complex"):
        Expression(" + ".join(["context.a"] * (MAX_EXPRESSION_NODES // 3)))
    with pytest.raises(ExpressionSyntaxError):
        Expression("(" * 1000 + "1" + ")" * 1000)


def test_an_escape_in_a_definition_is_a_definition_error_with_its_line() -> None:
    text = """\
name: escape
initial: wait
states:
  wait:
    on:
      go:
        - to: end
          if: ().__class__.__bases__[0].__subclasses__()
        - to: end
          assign: {os: "__import__('os').system('echo hi')"}
        - {to: end, if: "lambda: 1"}
  end: {final: true}
"""
    with pytest.raises(DefinitionError) as caught:
        statemachines.load(text)
    assert [p.line for p in caught.value.problems] == [8, 10, 11]
    assert all(p.message.startswith("expression ") for p in caught.value.problems)


def test_expressions_are_equal_by_text_and_constants_are_not_reevaluated() -> None:
    assert Expression("1 + 1") == Expression("1 + 1")
    assert len({Expression("a" if False else "context.x"), Expression("context.x")}) == 1
    assert Expression("'fixed'").evaluate({}) == "fixed"
    assert Expression("context.x").holds({"context": {"x": [1]}}) is True


def test_item_and_index_are_names_of_foreach_inputs_only() -> None:
    text = """\
name: items
initial: send
states:
  send:
    foreach: {items: context.people, task: mail.send, input: "{'to': item, 'n': index}"}
    on: {done: {to: end, if: "index == 0"}}
  end: {final: true}
"""
    with pytest.raises(DefinitionError) as caught:
        statemachines.load(text)
    assert [(p.line, p.message) for p in caught.value.problems] == [
        (6, "expression 'index == 0': unknown name 'index' (names: context, event, result, now)")
    ]
    statemachines.load(text.replace('if: "index == 0"', 'if: "len(event.results) > 0"'))

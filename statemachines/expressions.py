"""The expression language of guards, `assign`, `input` and `foreach.items`.

Python syntax, checked against an allow-list when a definition is loaded and evaluated by
simpleeval with mapping-only attribute access, so no expression can reach Python internals.
"""

from __future__ import annotations

import ast
import datetime
import difflib
import operator
from collections.abc import Callable, Mapping
from typing import Any

import simpleeval

from .errors import ExpressionError

MAX_EXPRESSION_LENGTH = 2000
MAX_EXPRESSION_NODES = 400
NAMES = ("context", "event", "result", "now", "item", "index")
MAX_VALUE_SIZE = 100_000  # elements and characters an expression may build
MAX_INTEGER_BITS = 10_000


class LimitExceeded(ValueError):
    """An expression tried to build a value past the limits of the language."""


def _size(value: Any, budget: int = MAX_VALUE_SIZE + 1) -> int:
    """Characters and elements in `value`, nested ones included, counted up to `budget`."""
    total, todo = 0, [value]
    while todo and total < budget:
        item = todo.pop()
        if isinstance(item, str | bytes):
            total += len(item)
        elif isinstance(item, Mapping):
            total += len(item)
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += len(item)
            todo.extend(item)
    return total


def _check_size(value: Any) -> Any:
    if _size(value) > MAX_VALUE_SIZE:
        raise LimitExceeded(f"the value would be larger than {MAX_VALUE_SIZE} elements")
    if isinstance(value, int) and value.bit_length() > MAX_INTEGER_BITS:
        raise LimitExceeded(f"the number would be larger than {MAX_INTEGER_BITS} bits")
    return value


def _power(base: Any, exponent: Any) -> Any:
    if isinstance(base, int) and isinstance(exponent, int) and abs(base) > 1:
        if abs(exponent) * base.bit_length() > MAX_INTEGER_BITS:
            raise LimitExceeded(f"the number would be larger than {MAX_INTEGER_BITS} bits")
    return base**exponent


def _multiply(left: Any, right: Any) -> Any:
    # A repeated list of lists is counted with its nested elements, not only its length.
    for sequence, times in ((left, right), (right, left)):
        if isinstance(sequence, str | list | tuple) and isinstance(times, int):
            if _size(sequence) * max(times, 0) > MAX_VALUE_SIZE:
                raise LimitExceeded(f"the value would be larger than {MAX_VALUE_SIZE} elements")
    product = left * right
    if isinstance(product, int) and product.bit_length() > MAX_INTEGER_BITS:
        raise LimitExceeded(f"the number would be larger than {MAX_INTEGER_BITS} bits")
    return product


def _add(left: Any, right: Any) -> Any:
    if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
        if _size(left) + _size(right) > MAX_VALUE_SIZE:
            raise LimitExceeded(f"the value would be larger than {MAX_VALUE_SIZE} elements")
    return left + right


def _modulo(left: Any, right: Any) -> Any:
    # `'%0999999d' % 1` would build any string; only numbers have a remainder here.
    if isinstance(left, str | bytes):
        raise TypeError("'%' is arithmetic only; string formatting is not available")
    return left % right


def _round(number: Any, ndigits: Any = None) -> Any:
    # round(5, -10**9) would compute 10**(10**9) first.
    if ndigits is not None and not (isinstance(ndigits, int) and -400 <= ndigits <= 400):
        raise LimitExceeded("round() takes at most 400 digits either side of the point")
    return round(number, ndigits)


def _text(value: Any) -> str:
    _check_size(value)
    # The text a date or time is stored as (statemachines.values), so that a stored `now`
    # compares with `str(now)`: '2026-01-01T00:00:00+00:00', not Python's spaced form.
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    return str(value)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len,
    "str": _text,
    "int": int,
    "float": float,
    "bool": bool,
    "abs": abs,
    "min": min,
    "max": max,
    "round": _round,
    "lower": lambda value: _text(value).lower(),
    "upper": lambda value: _text(value).upper(),
}
_LOGIC = (ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.IfExp)
_ARITHMETIC = (ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
_COMPARISON = (ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)
_MEMBERSHIP = (ast.In, ast.NotIn, ast.Is, ast.IsNot)
_OPERANDS = (ast.Expression, ast.Call, ast.Constant, ast.Name, ast.Load, ast.Attribute)
_CONTAINERS = (ast.Subscript, ast.Slice, ast.List, ast.Tuple, ast.Dict)
_ALLOWED_NODES = (*_LOGIC, *_ARITHMETIC, *_COMPARISON, *_MEMBERSHIP, *_OPERANDS, *_CONTAINERS)
_DATETIME_ATTRS = frozenset("year month day hour minute second microsecond days seconds".split())


class ExpressionSyntaxError(ValueError):
    """An expression that cannot be accepted; `.offset` is a column within its text."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


def _none_safe(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def checked(left: Any, right: Any) -> bool:
        if left is None or right is None:
            return False
        return compare(left, right)

    return checked


def _membership(left: Any, right: Any) -> bool:
    return False if right is None else left in right


_OPERATORS: dict[type, Callable[..., Any]] = dict(simpleeval.DEFAULT_OPERATORS)
_OPERATORS.update(
    {
        ast.Lt: _none_safe(operator.lt),
        ast.LtE: _none_safe(operator.le),
        ast.Gt: _none_safe(operator.gt),
        ast.GtE: _none_safe(operator.ge),
        ast.Add: _add,
        ast.Mult: _multiply,
        ast.Mod: _modulo,
        ast.Pow: _power,
        ast.In: _membership,
        ast.NotIn: lambda left, right: not _membership(left, right),
    }
)


class _Evaluator(simpleeval.EvalWithCompoundTypes):  # type: ignore[misc]
    """simpleeval with mapping-only dots, missing keys as None and calls by name only."""

    def __init__(self, names: Mapping[str, Any]) -> None:
        super().__init__(operators=_OPERATORS, functions=dict(FUNCTIONS), names=dict(names))

    def _eval_attribute(self, node: ast.Attribute) -> Any:
        if node.attr.startswith("_"):
            raise simpleeval.FeatureNotAvailable(f"no access to {node.attr!r}")
        value = self._eval(node.value)
        if value is None:
            return None
        if isinstance(value, Mapping):
            return value.get(node.attr)
        timely = isinstance(value, datetime.datetime | datetime.date | datetime.timedelta)
        if timely and node.attr in _DATETIME_ATTRS:
            return getattr(value, node.attr)
        raise TypeError(f"{type(value).__name__} has no field {node.attr!r}")

    def _eval_subscript(self, node: ast.Subscript) -> Any:
        container = self._eval(node.value)
        key = self._eval(node.slice)
        if container is None:
            return None
        if isinstance(container, Mapping):
            return container.get(key)
        if isinstance(container, list | tuple | str) and isinstance(key, int):
            return container[key] if -len(container) <= key < len(container) else None
        return container[key]

    def _eval_call(self, node: ast.Call) -> Any:
        assert isinstance(node.func, ast.Name)  # the load-time check guarantees it
        return FUNCTIONS[node.func.id](*(self._eval(argument) for argument in node.args))


def _check(tree: ast.AST, known_names: tuple[str, ...]) -> None:
    count = 0
    for node in ast.walk(tree):
        count += 1
        if not isinstance(node, _ALLOWED_NODES):
            raise ExpressionSyntaxError(
                f"{type(node).__name__} is not allowed in expressions",
                getattr(node, "col_offset", 0),
            )
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise ExpressionSyntaxError(f"access to {node.attr!r} is not allowed", node.col_offset)
        if isinstance(node, ast.Name) and node.id not in known_names and node.id not in FUNCTIONS:
            hint = difflib.get_close_matches(node.id, known_names, n=1)
            suggestion = f" — did you mean {hint[0]!r}?" if hint else ""
            raise ExpressionSyntaxError(
                f"unknown name {node.id!r}{suggestion} (names: {', '.join(known_names)})",
                node.col_offset,
            )
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                raise ExpressionSyntaxError(
                    f"only these functions can be called: {', '.join(FUNCTIONS)}",
                    node.col_offset,
                )
            if node.keywords:
                raise ExpressionSyntaxError("keyword arguments are not allowed", node.col_offset)
        if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
            if isinstance(node.value, bytes):
                raise ExpressionSyntaxError("bytes literals are not allowed", node.col_offset)
    if count > MAX_EXPRESSION_NODES:
        raise ExpressionSyntaxError(f"expression is too complex ({count} nodes)")


class Expression:
    """A parsed, checked expression; evaluate it with `evaluate(names)`."""

    __slots__ = ("text", "_tree", "_constant")

    def __init__(self, text: str, names: tuple[str, ...] = NAMES) -> None:
        if not isinstance(text, str):
            text = str(text)
        self.text = text
        if len(text) > MAX_EXPRESSION_LENGTH:
            raise ExpressionSyntaxError(
                f"expression is longer than {MAX_EXPRESSION_LENGTH} characters"
            )
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise ExpressionSyntaxError(
                f"invalid expression: {exc.msg}", max((exc.offset or 1) - 1, 0)
            ) from None
        except (ValueError, MemoryError, RecursionError) as exc:
            raise ExpressionSyntaxError(f"invalid expression: {exc}") from None
        _check(tree, names)
        self._tree = tree.body
        self._constant = isinstance(tree.body, ast.Constant)

    def evaluate(self, names: Mapping[str, Any]) -> Any:
        """Evaluate against `names`; raise ExpressionError on any failure."""
        if self._constant:
            return self._tree.value  # type: ignore[attr-defined]
        try:
            return _Evaluator(names).eval(self.text, previously_parsed=self._tree)
        except ExpressionError:
            raise
        except (
            simpleeval.InvalidExpression,
            TypeError,
            ValueError,
            ZeroDivisionError,
            IndexError,
            KeyError,
            OverflowError,
            RecursionError,
            MemoryError,
        ) as exc:
            raise ExpressionError(self.text, f"{type(exc).__name__}: {exc}") from None

    def holds(self, names: Mapping[str, Any]) -> bool:
        """Evaluate as a guard: truthiness of the value."""
        return bool(self.evaluate(names))

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expression) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

"""Search by context: the `where=` of `Engine.instances`, as SQL for each database and as the
Python rule the SQL must agree with (`matches`), and the index that serves one context path.

A `where` maps dotted context paths (`"customer.tier"`) to a value, meaning equality, or to a
mapping of operators to operands: `{"total": {">=": 100, "<": 500}}`. Operators: `==`,
`!=`, `<`, `<=`, `>`, `>=`, `in` (a list of values) and `exists` (true or false). Values are
compared as JSON values: a number never equals a string, `true` never equals `1`, `null`
matches only a present `null`. Ranges compare numbers with numbers and strings with strings
(by code point), and match nothing of another type. A path that is missing matches no
comparison; `!=` is the negation of `==`, so it matches instances without the path too.

Paths are inlined into the SQL as literals, never bound: SQLite uses an expression index only
for a query holding the very same expression, and PostgreSQL likewise. So each key of a path
is checked strictly (a letter or `_`, then letters, digits, `_` or `-`): no quote can reach
the SQL. Operands are always bound parameters.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

from statemachines import storable
from statemachines.errors import InvalidInput, ValueNotStorable

from .tables import instances_t

if TYPE_CHECKING:
    from .store import Store

KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
MAX_PATH_KEYS = 16
MAX_CONDITIONS = 32
MAX_IN_VALUES = 1000
INT_LIMIT = 2**63  # what both databases hold as an integer (SQLite binds no more)
OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "in", "exists")
RANGES: dict[str, Callable[[Any, Any], Any]] = {  # Python values and SQL alike
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
SQLITE_KINDS = {"string": ("text",), "number": ("integer", "real")}
_MISSING = object()


@dataclass(frozen=True)
class Condition:
    """One test of a `where`: the value at `path` (its keys) against `operand`."""

    path: tuple[str, ...]
    operator: str
    operand: Any


def parse_path(path: Any) -> tuple[str, ...]:
    """The keys of a dotted context path; InvalidInput for one that cannot be searched."""
    if not isinstance(path, str):
        raise InvalidInput(f"a context path must be text, not {type(path).__name__}")
    keys = tuple(path.split("."))
    if len(keys) > MAX_PATH_KEYS:
        raise InvalidInput(f"context path {path[:200]!r} has over {MAX_PATH_KEYS} keys")
    for key in keys:
        if not KEY.fullmatch(key):
            raise InvalidInput(
                f"context path {path[:200]!r}: each key must start with a letter or _ and hold "
                "only letters, digits, _ and - (at most 64 characters)"
            )
    return keys


def parse_where(where: Any) -> list[Condition]:
    """The conditions of a `where` mapping, checked; InvalidInput naming what is wrong."""
    if where is None:
        return []
    if not isinstance(where, Mapping):
        raise InvalidInput("where must map context paths to values or to {operator: value}")
    conditions: list[Condition] = []
    for path, test in where.items():
        keys = parse_path(path)
        if isinstance(test, Mapping):
            if not test:
                raise InvalidInput(f"where {path!r}: an empty mapping of operators")
            conditions += [_condition(keys, str(name), operand) for name, operand in test.items()]
        else:
            conditions.append(_condition(keys, "==", test))
    if len(conditions) > MAX_CONDITIONS:
        raise InvalidInput(f"where has {len(conditions)} conditions, over {MAX_CONDITIONS}")
    return conditions


def _condition(keys: tuple[str, ...], name: str, operand: Any) -> Condition:
    where = ".".join(keys)
    if name not in OPERATORS:
        raise InvalidInput(f"where {where!r}: unknown operator {name!r} (one of {OPERATORS})")
    if name == "exists":
        if not isinstance(operand, bool):
            raise InvalidInput(f"where {where!r}: exists takes true or false")
    elif name == "in":
        if not isinstance(operand, list | tuple) or len(operand) > MAX_IN_VALUES:
            raise InvalidInput(f"where {where!r}: in takes a list of at most {MAX_IN_VALUES}")
        operand = tuple(_scalar(where, item) for item in operand)
    elif name in RANGES:
        if _kind(operand) not in ("number", "string"):
            raise InvalidInput(f"where {where!r}: {name} compares with a number or a string")
        _scalar(where, operand)
    else:
        _scalar(where, operand)
    return Condition(keys, name, operand)


def _scalar(where: str, value: Any) -> Any:
    """`value` when it is a JSON string, number, boolean or null both databases can bind."""
    kind = _kind(value)
    if kind == "other":
        raise InvalidInput(
            f"where {where!r}: compare with a string, number, boolean or null, "
            f"not {type(value).__name__}"
        )
    if kind == "number" and not (
        math.isfinite(value) if isinstance(value, float) else -INT_LIMIT <= value < INT_LIMIT
    ):
        raise InvalidInput(f"where {where!r}: {value!r} is no number a database keeps")
    if kind == "string":
        try:
            storable(value)
        except ValueNotStorable:
            raise InvalidInput(f"where {where!r}: the text holds a NUL or lone surrogate") from None
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"


# -- the rule ----------------------------------------------------------------------------------
def matches(context: Any, where: Any) -> bool:
    """Whether a context passes every condition of `where`: what the SQL of `clauses` selects,
    said in Python."""
    return all(_holds(_value_at(context, cond.path), cond) for cond in parse_where(where))


def _value_at(context: Any, keys: tuple[str, ...]) -> Any:
    value = context
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


def _holds(value: Any, cond: Condition) -> bool:
    if cond.operator == "exists":
        return (value is not _MISSING) is cond.operand
    if cond.operator == "!=":
        return not _equal(value, cond.operand)
    if cond.operator == "in":
        return any(_equal(value, item) for item in cond.operand)
    if cond.operator == "==":
        return _equal(value, cond.operand)
    same = value is not _MISSING and _kind(value) == _kind(cond.operand)
    return same and bool(RANGES[cond.operator](value, cond.operand))


def _equal(value: Any, operand: Any) -> bool:
    return value is not _MISSING and _kind(value) == _kind(operand) and value == operand


# -- SQL ---------------------------------------------------------------------------------------
def clauses(where: Any, postgres: bool) -> list[ColumnElement[bool]]:
    """The SQL conditions on `turnout_instances` for `where`, in the forms `index_statement`'s
    indexes serve; InvalidInput, before any read, for a `where` that cannot be searched."""
    build = _postgres if postgres else _sqlite
    return [build(cond) for cond in parse_where(where)]


def sqlite_path(keys: tuple[str, ...]) -> str:
    """The SQLite JSON path of `keys`, as an SQL literal: `'$.customer.tier'`."""
    return "'$." + ".".join(keys) + "'"


def postgres_path(keys: tuple[str, ...]) -> str:
    """The PostgreSQL text array of `keys`, as an SQL literal: `'{customer,tier}'`."""
    return "'{" + ",".join(keys) + "}'"


def _negated(clause: ColumnElement[bool]) -> ColumnElement[bool]:
    # A missing path makes a comparison NULL; `!=` and `exists: false` match it.
    return sa.not_(sa.func.coalesce(clause, sa.false()))


def _sqlite(cond: Condition) -> ColumnElement[bool]:
    path: ColumnElement[Any] = sa.literal_column(sqlite_path(cond.path))
    value = sa.func.json_extract(instances_t.c.context, path)
    kind = sa.func.json_type(instances_t.c.context, path)

    def equal(operand: Any) -> ColumnElement[bool]:
        # `json_extract` gives 1 and 0 for true and false, NULL for null and for missing:
        # the value serves the index, its JSON type keeps types apart.
        if operand is None:
            return sa.and_(value.is_(None), kind == "null")
        if isinstance(operand, bool):
            return sa.and_(value == int(operand), kind == ("true" if operand else "false"))
        return sa.and_(value == operand, kind.in_(SQLITE_KINDS[_kind(operand)]))

    if cond.operator == "exists":
        present = kind.is_not(None)
        return present if cond.operand else _negated(present)
    if cond.operator == "==":
        return equal(cond.operand)
    if cond.operator == "!=":
        return _negated(equal(cond.operand))
    if cond.operator == "in":
        # Strings and numbers each in one IN list, which the index serves as one lookup each.
        tests = [equal(item) for item in cond.operand if _kind(item) in ("null", "boolean")]
        for name, kinds in SQLITE_KINDS.items():
            if listed := [item for item in cond.operand if _kind(item) == name]:
                tests.append(sa.and_(value.in_(listed), kind.in_(kinds)))
        return _any_of(tests)
    compare = RANGES[cond.operator]
    return sa.and_(compare(value, cond.operand), kind.in_(SQLITE_KINDS[_kind(cond.operand)]))


def _postgres(cond: Condition) -> ColumnElement[bool]:
    path: ColumnElement[Any] = sa.literal_column(postgres_path(cond.path))
    value = instances_t.c.context.op("#>", return_type=JSONB)(path)

    def json_value(operand: Any) -> ColumnElement[Any]:
        return sa.cast(sa.literal(json.dumps(operand), sa.Text), JSONB)

    # jsonb's own equality keeps types apart (1 = 1.0, never 1 = "1" nor 1 = true).
    if cond.operator == "exists":
        present = value.is_not(None)
        return present if cond.operand else _negated(present)
    if cond.operator == "==":
        return value == json_value(cond.operand)
    if cond.operator == "!=":
        return _negated(value == json_value(cond.operand))
    if cond.operator == "in":
        if not cond.operand:
            return sa.false()
        return value.in_([json_value(item) for item in cond.operand])
    compare = RANGES[cond.operator]
    if _kind(cond.operand) == "number":
        typed = sa.func.jsonb_typeof(value) == "number"
        return sa.and_(compare(value, json_value(cond.operand)), typed)
    # jsonb orders strings by the database's collation; code points are the same everywhere.
    text = instances_t.c.context.op("#>>", return_type=sa.Text)(path).collate("C")
    return sa.and_(compare(text, cond.operand), sa.func.jsonb_typeof(value) == "string")


def _any_of(tests: list[ColumnElement[bool]]) -> ColumnElement[bool]:
    return sa.or_(*tests) if tests else sa.false()


# -- indexes -----------------------------------------------------------------------------------
def index_name(keys: tuple[str, ...]) -> str:
    """The name `index_statement` gives the index of a path."""
    return "ix_turnout_context_" + "_".join(key.replace("-", "_").lower() for key in keys)


def index_statement(path: str, postgres: bool) -> str:
    """The CREATE INDEX that serves `where` on `path` (equality, `in` and number ranges, each
    page in the listing's order): the very expression `clauses` emits, then the order."""
    keys = parse_path(path)
    if postgres:
        expression = f"(context #> {postgres_path(keys)})"
        concurrently = "CONCURRENTLY "
    else:
        expression = f"json_extract(context, {sqlite_path(keys)})"
        concurrently = ""
    return (
        f"CREATE INDEX {concurrently}IF NOT EXISTS {index_name(keys)[:63]} "
        f"ON turnout_instances ({expression}, created_at, id)"
    )


class Searches:
    """The `Engine` calls about context indexes (a part of `Engine`)."""

    if TYPE_CHECKING:
        store: Store

    def context_index(self, path: str) -> str:
        """The CREATE INDEX statement, for this engine's database, that serves `where=`
        filters on the context path `path` (run it yourself, or `create_context_index`)."""
        return index_statement(path, self.store.postgres)

    def create_context_index(self, path: str) -> str:
        """Create the index `context_index(path)` names, if it is not there, then ANALYZE
        the table so the planner knows the values; returns the statement run. On
        PostgreSQL it is built CONCURRENTLY: writes go on while it is built."""
        statement = self.context_index(path)
        if not self.store.postgres:
            with self.store.core(write=True) as conn:
                conn.exec_driver_sql(statement)
                conn.exec_driver_sql("ANALYZE turnout_instances")
            return statement
        # CONCURRENTLY cannot run inside a transaction.
        with self.store._translated(), self.store.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql(statement)
            conn.exec_driver_sql("ANALYZE turnout_instances")
        return statement


# -- the text form -----------------------------------------------------------------------------
FILTER = re.compile(r"\s*([A-Za-z0-9_.-]+)\s*(==|!=|>=|<=|=|>|<)\s*(.*?)\s*", re.DOTALL)


def parse_filters(texts: list[str]) -> dict[str, dict[str, Any]]:
    """A `where` mapping from filters written `path=value`, `path!=value`, `path>=value` (also
    `>`, `<`, `<=`): the value is JSON when it parses as JSON (`100`, `true`, `"100"`), else
    the text itself; `path={"in": [...]}` gives operators as a JSON object. Filters on one
    path are all kept (`total>=100` and `total<500`); InvalidInput for one that is not a
    filter or says the same operator twice."""
    where: dict[str, dict[str, Any]] = {}
    for text in texts:
        found = FILTER.fullmatch(text)
        if found is None:
            raise InvalidInput(f"filter {text[:200]!r} is not path=value (or !=, >=, >, <=, <)")
        path, name, written = found.groups()
        value = _json_or_text(written)
        tests = value if name in ("=", "==") and isinstance(value, dict) else {name: value}
        for test, operand in tests.items():
            test = "==" if test == "=" else test
            if test in where.setdefault(path, {}):
                raise InvalidInput(f"filter {text[:200]!r}: {path} {test} is given twice")
            where[path][test] = operand
    return where


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text

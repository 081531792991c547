"""Search by context (`Engine.instances(where=...)`) on both databases: the SQL selects what the
Python rule (`engine.search.matches`) selects, in the listing's order, combined with the other
filters and with paging; what cannot be searched is InvalidInput before any read; the index
`context_index` names is the one the database uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import Engine
from engine.search import clauses, matches, parse_filters
from engine.tables import instances_t
from statemachines.errors import InvalidInput

KEYS = ("a", "b", "c")
PATHS = ("a", "b", "c", "a.b", "a.c", "b.a", "a.b.c")
# Few distinct values, so comparisons often meet: numbers and strings that look alike,
# booleans beside 1 and 0, null beside missing.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.0, 1.0, 2.5, -1.5, 2**53, -(2**53), 1e300]),
    st.sampled_from(["", "1", "0", "true", "null", "a", "b", "ab", "B", "é", "z", "[1]", "{}"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=2), st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)
    ),
    max_leaves=6,
)
contexts = st.dictionaries(st.sampled_from(KEYS), values, max_size=3)
ranged = st.one_of(st.integers(-3, 3), st.sampled_from([0.5, 2.5, -1.5]), st.sampled_from("ab1"))
tests = st.one_of(
    scalars,
    st.dictionaries(st.sampled_from(["==", "!="]), scalars, min_size=1, max_size=1),
    st.dictionaries(st.sampled_from(["<", "<=", ">", ">="]), ranged, min_size=1, max_size=2),
    st.fixed_dictionaries({"in": st.lists(scalars, max_size=3)}),
    st.fixed_dictionaries({"exists": st.booleans()}),
)
wheres = st.dictionaries(st.sampled_from(PATHS), tests, min_size=1, max_size=2)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(contexts, max_size=6), searches=st.lists(wheres, min_size=1, max_size=4))
def test_where_selects_what_the_python_rule_selects_in_the_listing_order(
    engine: Engine, deploy: Callable[[str], Any], batch: list[dict[str, Any]], searches: list[Any]
) -> None:
    deploy("notes")  # once: a second deploy of the same source is a no-op
    engine.start_many("notes", batch)
    everything = engine.instances(limit=10_000)
    for where in searches:
        expected = [found.id for found in everything if matches(found.context, where)]
        assert [found.id for found in engine.instances(where=where, limit=10_000)] == expected


CUSTOMERS = [
    {"customer": {"tier": "gold"}, "total": 120},
    {"customer": {"tier": "silver"}, "total": 80},
    {"customer": {"tier": "gold"}, "total": 499.5},
    {"customer": {"tier": "gold", "vip": True}, "total": 500},
    {"customer": {"tier": "1"}, "total": "120"},
    {"customer": {"tier": 1}, "total": None},
    {"total": 100},
]


@pytest.fixture
def customers(engine: Engine, clock: Any, deploy: Callable[[str], Any]) -> list[str]:
    """Instances of `notes` with the contexts of CUSTOMERS, a second apart, oldest first."""
    deploy("notes")
    started = []
    for context in CUSTOMERS:
        started.append(engine.start("notes", context).id)
        clock.advance(1)
    return started


def test_where_forms_a_user_writes(engine: Engine, customers: list[str]) -> None:
    def picked(where: Any) -> list[int]:
        return [customers.index(found.id) for found in engine.instances(where=where)]

    assert picked({"customer.tier": "gold"}) == [0, 2, 3]
    assert picked({"customer.tier": "1"}) == [4]  # a string never equals a number
    assert picked({"customer.tier": 1}) == [5]
    assert picked({"total": {">=": 100, "<": 500}}) == [0, 2, 6]  # "120" is text: no range
    assert picked({"customer.tier": "gold", "total": {">": 200}}) == [2, 3]
    assert picked({"customer.tier": {"!=": "gold"}}) == [1, 4, 5, 6]  # missing included
    assert picked({"customer.tier": {"in": ["silver", 1]}}) == [1, 5]
    assert picked({"customer.vip": True}) == [3]
    assert picked({"customer.vip": {"exists": False}, "total": {"<=": 100}}) == [1, 6]
    assert picked({"total": None}) == [5]  # a present null only
    assert picked({"customer.tier": {"in": []}}) == []
    assert picked({"customer.tier": {">=": "h", "<": "t"}}) == [1]


def test_where_goes_with_the_other_filters_and_with_paging(
    engine: Engine, clock: Any, customers: list[str]
) -> None:
    engine.send(customers[2], "note", {"text": "late"})
    gold = {"customer.tier": "gold"}
    assert [found.id for found in engine.instances(where=gold, limit=2)] == customers[0:3:2]
    assert [found.id for found in engine.instances(where=gold, limit=2, offset=2)] == [customers[3]]
    assert engine.instances(where=gold, definition="other") == []
    assert [found.id for found in engine.instances(where=gold, status="running")] == [
        customers[0],
        customers[2],
        customers[3],
    ]
    assert [found.id for found in engine.instances(where={"last": "late"})] == [customers[2]]


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ({"customer.tier'; DROP TABLE x; --": "gold"}, "each key"),
        ({"customer..tier": "gold"}, "each key"),
        ({"0.tier": "gold"}, "each key"),
        ({".".join(["a"] * 17): 1}, "over 16 keys"),
        ({"total": {"~": 1}}, "unknown operator"),
        ({"total": {}}, "empty mapping"),
        ({"total": {">": True}}, "number or a string"),
        ({"total": {">": None}}, "number or a string"),
        ({"total": [1, 2]}, "not list"),
        ({"total": {"==": {"a": 1}}}, "not dict"),
        ({"total": {"in": "ab"}}, "a list"),
        ({"total": {"exists": 1}}, "true or false"),
        ({"total": 2**64}, "no number"),
        ({"total": {"in": [10**400]}}, "no number"),
        ({"total": float("nan")}, "no number"),
        ({"total": "a\x00b"}, "NUL"),
        (["total"], "must map"),
    ],
)
def test_a_where_that_cannot_be_searched_is_invalid_input(
    engine: Engine, where: Any, says: str
) -> None:
    with pytest.raises(InvalidInput, match=says):
        engine.instances(where=where)


def test_filters_written_as_text() -> None:
    assert parse_filters(["customer.tier=gold", "total>=100", "total<500"]) == {
        "customer.tier": {"==": "gold"},
        "total": {">=": 100, "<": 500},
    }
    assert parse_filters(['id="100"', "flag=true", "x != null", "name=New York"]) == {
        "id": {"==": "100"},
        "flag": {"==": True},
        "x": {"!=": None},
        "name": {"==": "New York"},
    }
    assert parse_filters(['tier={"in": ["gold", "silver"]}']) == {
        "tier": {"in": ["gold", "silver"]}
    }
    with pytest.raises(InvalidInput, match="not path=value"):
        parse_filters(["tier"])
    with pytest.raises(InvalidInput, match="given twice"):
        parse_filters(["total>=1", "total>=2"])


def _plan(engine: Engine, where: Any, index: str) -> str:
    """The database's plan for the ids `where` selects, as text, the planner pushed to `index`
    (on a table this small it rightly prefers a scan): PostgreSQL with scans of the table and
    of the listing order's index off, SQLite told INDEXED BY, which fails unless the index
    serves the query."""
    store = engine.store
    query = sa.select(instances_t.c.id).where(*clauses(where, store.postgres))
    sql = str(query.compile(store.engine, compile_kwargs={"literal_binds": True}))
    with store.core() as conn:
        if store.postgres:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            return "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + sql))
        sql = sql.replace("FROM turnout_instances", f"FROM turnout_instances INDEXED BY {index}")
        return "\n".join(row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))


def test_the_documented_index_is_the_one_the_database_uses(
    engine: Engine, customers: list[str]
) -> None:
    for path in ("customer.tier", "total"):
        statement = engine.create_context_index(path)
        assert "ix_turnout_context_" in statement
    assert engine.create_context_index("total") == engine.context_index("total")  # again: no-op
    tier, total = "ix_turnout_context_customer_tier", "ix_turnout_context_total"
    assert tier in _plan(engine, {"customer.tier": "gold"}, tier)
    assert total in _plan(engine, {"total": {">=": 100, "<": 500}}, total)
    assert tier in _plan(engine, {"customer.tier": {"in": ["gold", "silver"]}}, tier)
    if not engine.store.postgres:  # PostgreSQL's jsonb orders text by its collation: a filter
        assert tier in _plan(engine, {"customer.tier": {">": "a"}}, tier)
    assert [found.id for found in engine.instances(where={"customer.tier": "gold"})] == [
        customers[0],
        customers[2],
        customers[3],
    ]

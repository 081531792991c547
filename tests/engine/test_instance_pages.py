"""`Engine.instance_page`: every order, both ways through the pages, filters, and cursors that
stay right while instances start and move between two pages (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine import Engine, Instance, InvalidInput
from engine.listing import SORTS

KEYS = ["b-7", None, "a b&c/d#e", "Zeta", "ünïcode", "a", "a_%", "A", None, "b-10"]


def population(engine: Engine, clock: Any, deploy: Callable[[str], Any]) -> list[Instance]:
    """31 instances of signup in several states, statuses and keys, some started in the
    same instant (equal times, so ties are broken by the id), most moved later."""
    deploy("signup")
    made: list[Instance] = []
    for n in range(31):
        if n % 3:
            clock.advance(1)
        key = None if KEYS[n % len(KEYS)] is None else f"{KEYS[n % len(KEYS)]}{n // 10}"
        made.append(engine.start("signup", {"email": f"{n}@x"}, key=key))
    for n, instance in enumerate(made):
        if n % 4 == 1:
            clock.advance(2)
            engine.send(instance.id, "confirm", {"by": "ops"})
        if n % 4 == 2:
            engine.send(instance.id, "reject")
    return [engine.get(instance.id) for instance in made]


def sort_value(instance: Instance, name: str) -> Any:
    values = {
        "created": instance.created_at,
        "updated": instance.updated_at,
        "definition": instance.definition,
        "key": instance.key or "",
        "state": instance.state,
        "status": instance.status,
        "revision": instance.revision,
    }
    return values[name]


def expected(instances: list[Instance], sort: str) -> list[str]:
    name = sort.removeprefix("-")
    ordered = sorted(instances, key=lambda i: (sort_value(i, name), i.id))
    if sort.startswith("-"):
        ordered.reverse()
    return [instance.id for instance in ordered]


def walk(engine: Engine, limit: int, **options: Any) -> list[str]:
    """Every id, following `next` from the first page."""
    seen: list[str] = []
    cursor = None
    while True:
        page = engine.instance_page(limit=limit, cursor=cursor, **options)
        assert len(page.items) <= limit
        seen += [instance.id for instance in page.items]
        if page.next is None:
            return seen
        cursor = page.next


@pytest.mark.parametrize("sort", [f"{way}{name}" for name in SORTS for way in ("", "-")])
def test_pages_follow_every_order_forwards_and_backwards(
    engine: Engine, clock: Any, deploy: Callable[[str], Any], sort: str
) -> None:
    made = population(engine, clock, deploy)
    assert walk(engine, 7, sort=sort) == expected(made, sort)
    # From the last page back to the first, by `previous`.
    page = engine.instance_page(sort=sort, limit=7)
    while page.next is not None:
        page = engine.instance_page(sort=sort, limit=7, cursor=page.next)
    back = [instance.id for instance in page.items]
    while page.previous is not None:
        page = engine.instance_page(sort=sort, limit=7, cursor=page.previous)
        assert len(page.items) == 7
        back = [instance.id for instance in page.items] + back
    assert back == expected(made, sort)


def test_the_default_order_is_newest_first_with_a_count(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    made = population(engine, clock, deploy)
    page = engine.instance_page(limit=5, count=True)
    assert page.sort == "-created" and page.previous is None
    assert [i.id for i in page.items] == expected(made, "-created")[:5]
    assert (page.total, page.total_exact) == (31, True)


def test_filters_select_what_the_rows_say(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    made = population(engine, clock, deploy)
    deploy("counter")
    other = engine.start("counter", {}, key="a b&c/d#e0")
    middle = made[15].created_at

    def ids(**filters: Any) -> set[str]:
        return set(walk(engine, 4, **filters))

    def where(test: Callable[[Instance], bool]) -> set[str]:
        return {i.id for i in made if test(i)}

    assert ids(definition="signup") == where(lambda i: True)
    assert ids(status="succeeded") == where(lambda i: i.status == "succeeded")
    assert ids(state="active", definition="signup") == where(lambda i: i.state == "active")
    assert ids(key="a b&c/d#e0") == where(lambda i: i.key == "a b&c/d#e0") | {other.id}
    assert ids(key_prefix="a") == where(lambda i: (i.key or "").startswith("a")) | {other.id}
    assert ids(key_prefix="a_%") == where(lambda i: (i.key or "").startswith("a_%"))
    assert ids(key_prefix="A") == where(lambda i: (i.key or "").startswith("A"))
    assert ids(id_prefix=made[3].id[:20]) == {made[3].id}
    assert ids(since=middle, definition="signup") == where(lambda i: i.created_at >= middle)
    assert ids(until=middle) == where(lambda i: i.created_at < middle)
    late = made[20].updated_at
    assert ids(since=late, time="updated", definition="signup") == where(
        lambda i: i.updated_at >= late
    )
    assert ids(where={"email": "7@x"}) == {made[7].id}
    combined = ids(definition="signup", status="running", key_prefix="b", until=middle)
    assert combined == where(
        lambda i: i.status == "running" and (i.key or "").startswith("b") and i.created_at < middle
    )
    assert engine.instance_page(status="cancelled", count=True).total == 0


def test_a_cursor_stays_right_while_instances_start_and_move_between_pages(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    made = population(engine, clock, deploy)
    first = engine.instance_page(limit=10)
    clock.advance(5)
    newer = [engine.start("signup", {"email": "new@x"}).id for _ in range(3)]
    rest = walk_from(engine, first.next)
    assert [i.id for i in first.items] + rest == expected(made, "-created")
    # Sorted by update time, an instance that moves past the cursor is shown again further
    # on (it changed), and none that stayed is lost.
    by_update = engine.instance_page(sort="updated", limit=10)
    moved = next(i for i in by_update.items if i.state == "pending")
    clock.advance(5)
    engine.send(moved.id, "confirm")
    later = walk_from(engine, by_update.next, sort="updated")
    assert later[-1] == moved.id
    stayed = expected(made, "updated")[10:]
    assert [i for i in later if i not in newer and i != moved.id] == stayed


def walk_from(engine: Engine, cursor: str | None, **options: Any) -> list[str]:
    seen: list[str] = []
    while cursor is not None:
        page = engine.instance_page(limit=6, cursor=cursor, **options)
        seen += [instance.id for instance in page.items]
        cursor = page.next
    return seen


def forged(position: list[Any]) -> str:
    """A cursor made by hand, as a caller might forge one."""
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def test_wrong_sorts_cursors_and_times_are_invalid_input(
    engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    population(engine, clock, deploy)
    cursor = engine.instance_page(limit=3).next
    assert cursor is not None
    wrong: list[dict[str, Any]] = [
        {"sort": "colour"},
        {"sort": "key", "cursor": cursor},
        {"cursor": "not-a-cursor"},
        {"cursor": cursor[:-4]},
        {"since": datetime(2026, 1, 1)},
        {"time": "finished"},
        {"limit": 0},
        {"key_prefix": "x\x00"},
        {"sort": "revision", "cursor": forged(["revision", 2**70, "x", "after"])},
        {"sort": "key", "cursor": forged(["key", "a\x00", "x", "after"])},
        {"sort": "key", "cursor": forged(["key", "a", "x", "sideways"])},
    ]
    for options in wrong:
        with pytest.raises(InvalidInput):
            engine.instance_page(**options)
    window = engine.instance_page(since=datetime.now(UTC) + timedelta(days=900), count=True)
    assert (window.items, window.next, window.total) == ([], None, 0)

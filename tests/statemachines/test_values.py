"""The one rule by which a value is stored (`storable`), and `simulate` applying it as the
engine does: to what `assign`, `input` and `foreach.items` yield, to data, payloads and results."""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import statemachines
from statemachines import InvalidInput, ValueNotStorable, simulate, storable

VALID = Path(__file__).parent / "valid"
MIDNIGHT = "2026-01-01T00:00:00+00:00"


def stored_values() -> statemachines.Definition:
    return statemachines.load(VALID / "stored_values.yaml")


def errors(run: statemachines.Run) -> list[dict[str, Any]]:
    return [dict(entry.data) for entry in run.history if entry.kind == "error"]


class Colour(enum.StrEnum):
    RED = "red"


class Size(enum.IntEnum):
    BIG = 3


# -- the rule ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (datetime(2026, 1, 1, tzinfo=UTC), MIDNIGHT),
        (
            datetime(2026, 1, 1, 2, 30, tzinfo=timezone(timedelta(hours=2))),
            "2026-01-01T02:30:00+02:00",
        ),
        (datetime(2026, 1, 1, 9, 15), "2026-01-01T09:15:00"),
        (date(2026, 5, 17), "2026-05-17"),
        (time(8, 30, 5), "08:30:05"),
        (timedelta(minutes=2, milliseconds=500), 120.5),
        ((1, ("a", None)), [1, ["a", None]]),
        ({"colour": Colour.RED, "size": Size.BIG}, {"colour": "red", "size": 3}),
        ({"a": [1, 2.5, True, None, "x"]}, {"a": [1, 2.5, True, None, "x"]}),
    ],
    ids=(
        "aware-datetime offset-datetime naive-datetime date time timedelta tuples enums json"
    ).split(),
)
def test_storable_converts_by_the_documented_rule(value: Any, stored: Any) -> None:
    converted = storable(value)
    assert converted == stored
    assert type(converted) is type(stored)


@pytest.mark.parametrize(
    ("value", "path", "reason"),
    [
        ({"x": [1, {"y": {1, 2}}]}, "context.x[1].y", "is a set"),
        ({"x": frozenset()}, "context.x", "is a frozenset"),
        ({"raw": b"\x00"}, "context.raw", "is bytes"),
        ({"ratio": float("nan")}, "context.ratio", "is the float nan"),
        ({"top": [float("inf")]}, "context.top[0]", "is the float inf"),
        ({"low": -float("inf")}, "context.low", "is the float -inf"),
        ({1: "a", "1": "b"}, "context", "has the key 1 of type int; keys must be strings"),
        ({"by": {(1, 2): "pair"}}, "context.by", "has the key (1, 2) of type tuple"),
        ({"two words": object()}, "context['two words']", "is of type object"),
        ({"huge": 10**5000}, "context.huge", "is an integer of more than 14000 bits"),
    ],
    ids="set frozenset bytes nan inf minus-inf int-key tuple-key object huge-int".split(),
)
def test_storable_refuses_what_json_cannot_hold_naming_the_path_and_type(
    value: Any, path: str, reason: str
) -> None:
    with pytest.raises(ValueNotStorable) as refused:
        storable(value, "context")
    assert refused.value.path == path
    assert refused.value.reason.startswith(reason)
    assert isinstance(refused.value, InvalidInput)


def test_storable_takes_64_levels_of_nesting_and_refuses_65() -> None:
    deepest: list[Any] = []
    for _ in range(63):
        deepest = [deepest]
    assert storable(deepest) == deepest
    with pytest.raises(ValueNotStorable, match="nested deeper than 64 levels"):
        storable({"a": deepest})


def test_storable_refuses_a_value_that_contains_itself_without_recursing_forever() -> None:
    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(ValueNotStorable, match=r"^value\[0\]\[0\].*… is nested deeper"):
        storable(looped)


def test_storable_returns_a_copy_the_caller_cannot_change_afterwards() -> None:
    original = {"items": [1, 2]}
    stored = storable(original)
    original["items"].append(3)
    assert stored == {"items": [1, 2]}


# -- simulate applies it to expressions ----------------------------------------------------------
def test_assigned_datetimes_and_tuples_are_stored_as_iso_text_and_lists() -> None:
    run = simulate(stored_values(), ["touch"])
    assert run.context == {"at": MIDNIGHT, "day": 1, "pair": [1, ["a", MIDNIGHT]], "waited": 0.0}


def test_str_of_now_is_the_iso_text_now_is_stored_as_so_the_two_compare() -> None:
    run = simulate(stored_values(), ["touch", "check"], now=datetime(2025, 12, 31, tzinfo=UTC))
    assert run.context["text"] == run.context["at"] == "2025-12-31T00:00:00+00:00"
    assert run.context["late"] is False


def test_now_assigned_on_a_timer_transition_is_iso_text() -> None:
    run = simulate(stored_values(), ["after:1h"])
    assert run.context == {"escalated_at": "2026-01-01T01:00:00+00:00"}


def test_an_assign_yielding_infinity_leaves_its_key_unwritten_and_is_recorded() -> None:
    run = simulate(stored_values(), ["overflow"])
    assert run.context == {"kept": "yes"}
    [error] = errors(run)
    assert error["where"] == "assign ratio in open"
    assert error["message"].startswith("context.ratio is the float inf")


def test_an_assign_nested_deeper_than_64_levels_leaves_its_key_unwritten() -> None:
    run = simulate(stored_values(), ["too_deep"])
    assert run.context == {}
    [error] = errors(run)
    where = "context.nest[0][0][0][0][0][0][0][0][0][0]…"
    assert error["message"].startswith(f"{where} is nested deeper than 64 levels")


def test_task_input_with_now_reaches_the_handler_as_iso_text() -> None:
    received: list[Any] = []
    answer = {"clerk.stamp": lambda value: received.append(value) or "ok"}
    run = simulate(stored_values(), ["stamp"], results=answer)
    assert received == [{"at": MIDNIGHT, "span": [1, 2]}]
    assert run.state == "closed"


def test_a_task_input_yielding_nan_fails_the_state_with_an_input_error() -> None:
    run = simulate(stored_values(), ["weigh"])
    assert run.state == "broken"
    failed = next(e for e in run.history if e.event == "failed")
    assert failed.data["error"]["type"] == "InputError"
    assert errors(run)[0]["message"].startswith("input is the float nan")


def test_foreach_items_given_as_a_tuple_are_stored_as_a_list_of_iso_texts() -> None:
    run = simulate(stored_values(), ["spread"], results={"clerk.note": lambda value: value})
    assert run.state == "closed"
    assert run.context == {"results": [MIDNIGHT, MIDNIGHT]}


# -- simulate applies it to data, payloads and results -------------------------------------------
def test_simulate_stores_start_data_and_payloads_by_the_rule() -> None:
    run = simulate(
        stored_values(),
        [("touch", {"on": date(2026, 2, 1)})],
        data={"since": datetime(2025, 12, 31, tzinfo=UTC)},
    )
    assert run.history[0].data == {"since": "2025-12-31T00:00:00+00:00"}
    assert run.history[1].data == {"on": "2026-02-01"}


def test_simulate_refuses_a_payload_json_cannot_hold() -> None:
    with pytest.raises(ValueNotStorable, match="event data has the key 1"):
        simulate(stored_values(), [("touch", {1: "a", "1": "b"})], strict=False)


def test_simulate_converts_a_result_and_fails_the_task_on_one_it_cannot_store() -> None:
    converted = simulate(stored_values(), ["stamp"], results={"clerk.stamp": {"span": (1, 2)}})
    assert converted.context["stamped"] == {"span": [1, 2]}
    refused = simulate(stored_values(), ["stamp"], results={"clerk.stamp": {"tags": {"a"}}})
    assert refused.state == "broken"
    failed = next(e for e in refused.history if e.event == "failed")
    assert failed.data["error"] == {
        "type": "ResultError",
        "message": "result.tags is a set, which JSON cannot hold (make it a list)",
    }

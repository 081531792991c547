"""The JSON of an instance's columns and its history: whatever JSON the engine took it writes
and reads back exactly — integers beyond 64 bits (which the fast codec refuses to write and
would read as floats), non-ASCII text, nesting — on SQLite and PostgreSQL; and rows written
as the standard library writes JSON read as before."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest

from engine import Engine
from engine.codec import dumps, loads, strict_dumps

HUGE = 2**64 + 1  # past what the fast codec writes
LONG = -(2**63) - 1  # past it below zero
EXACT = [
    HUGE,
    LONG,
    2**64 - 1,
    -(2**63),
    10**30,
    0.1,
    1e16,
    -0.0,
    "ünïcødé ☃ 日本",
    '\u2028 \\ " \n',
    {"nested": [1, [2, {"deep": None}]], "true": True},
    "12345678901234567890 digits in text",
]


@pytest.mark.parametrize("value", EXACT, ids=repr)
def test_every_json_value_is_written_as_the_standard_library_writes_it_and_read_back(
    value: Any,
) -> None:
    text = dumps(value)
    assert json.loads(text) == value and type(json.loads(text)) is type(value)
    assert loads(text) == value and type(loads(text)) is type(value)
    assert loads(strict_dumps(value)) == value  # the text rows were written as before
    assert "\\u" not in text or "\\u" in strict_dumps(value)  # non-ASCII text as it is


def test_a_key_that_is_not_text_is_written_as_the_standard_library_writes_it() -> None:
    assert dumps({1: "one"}) == strict_dumps({1: "one"}) == '{"1":"one"}'


def test_huge_numbers_in_the_context_and_history_survive_sends_on_either_database(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("notes")
    start = {"huge": HUGE, "long": LONG, "name": "Zoë ☃", "list": [HUGE, 1.5]}
    instance = engine.start("notes", start)
    engine.send(instance.id, "note", {"text": HUGE})
    engine.send(instance.id, "note", {"text": "naïve — 日本"})
    engine.send(instance.id, "note", {"text": LONG})
    found = engine.get(instance.id)
    assert found.context == {**start, "last": LONG}
    assert type(found.context["huge"]) is int
    assert [entry.data for entry in engine.history(instance.id)][1:] == [
        {"text": HUGE},
        {"text": "naïve — 日本"},
        {"text": LONG},
    ]
    assert [entry.data for entry in engine.history(instance.id)][0] == start


def test_rows_written_by_the_standard_library_are_read_and_updated(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    with Engine(url) as engine:
        engine.deploy(
            "name: notes_old\ninitial: open\nstates:\n  open:\n    on:\n"
            "      note: {assign: {last: event.text}}\n"
        )
        instance = engine.start("notes_old", {"a": 1})
    old = {"a": 1, "text": "Zoë ☃", "big": HUGE, "float": 1e16}
    with sqlite3.connect(f"{tmp_path}/old.db") as connection:  # as an earlier release wrote it
        connection.execute(
            "UPDATE turnout_instances SET context = ? WHERE id = ?",
            (json.dumps(old, separators=(",", ":"), ensure_ascii=True), instance.id),
        )
    with Engine(url) as engine:
        assert engine.get(instance.id).context == old
        engine.send(instance.id, "note", {"text": "new"})
        assert engine.get(instance.id).context == {**old, "last": "new"}

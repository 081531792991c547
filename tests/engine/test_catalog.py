"""The catalog: each deployed version parsed, compiled and validated once per process, read
through the transaction that needs it."""

from __future__ import annotations

import pytest

from engine import DefinitionNotFound, Engine, InvalidInput

COUNTER = """\
name: counter
input:
  type: object
  properties: {count: {type: integer}}
initial: counting
states:
  counting:
    on:
      increment: {to: counting, assign: {count: "context.count + 1"}}
"""


def test_a_version_is_built_once_and_kept(engine: Engine) -> None:
    engine.deploy(COUNTER)
    with engine.store.reading() as transaction:
        first = engine.catalog.version(transaction, "counter")
        again = engine.catalog.version(transaction, "counter", first.number)
    assert again is first
    assert first.machine.definition is first.definition
    assert engine.catalog.known("counter", first.number) is first


def test_the_latest_version_is_read_in_the_transaction(engine: Engine) -> None:
    engine.deploy(COUNTER)
    engine.deploy(COUNTER.replace("context.count + 1", "context.count + 2"))
    started = engine.start("counter", {"count": 0})
    assert started.version == 2
    assert engine.send(started.id, "increment").context == {"count": 2}


def test_an_unknown_version_is_not_found(engine: Engine) -> None:
    engine.deploy(COUNTER)
    with engine.store.reading() as transaction, pytest.raises(DefinitionNotFound):
        engine.catalog.version(transaction, "counter", 7)
    with engine.store.reading() as transaction, pytest.raises(DefinitionNotFound):
        engine.catalog.version(transaction, "nothing")


def test_the_input_schema_is_checked_by_the_version(engine: Engine) -> None:
    engine.deploy(COUNTER)
    with pytest.raises(InvalidInput) as refused:
        engine.start("counter", {"count": "many"})
    assert refused.value.problems == ["count: 'many' is not of type 'integer'"]
    assert engine.instances() == []

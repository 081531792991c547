"""What a caller names an instance or a definition by is checked against the database's real
limits before anything is written: business and idempotency keys (text, at most 200
characters), instance ids, and versions (a 32-bit integer column); a bad one is a named
error on both databases, never a driver error or a key stored silently."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from engine import DefinitionError, DefinitionNotFound, Engine, InstanceNotFound, InvalidInput

TOO_LONG = "k" * 201


def test_a_business_key_over_200_characters_is_refused_and_nothing_is_started(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    """Start and start_many refuse it with InvalidInput naming the limit."""
    deploy("counter")
    with pytest.raises(InvalidInput, match="201 characters, over the limit of 200"):
        engine.start("counter", {"count": 0}, key=TOO_LONG)
    with pytest.raises(InvalidInput, match="over the limit of 200"):
        engine.start_many("counter", [{"count": 0}, {"count": 1}], keys=["fine", TOO_LONG])
    assert engine.instances() == []


def test_a_business_key_of_200_characters_is_kept_whole(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    started = engine.start("counter", {"count": 0}, key="k" * 200)
    assert engine.get_by_key("counter", "k" * 200).id == started.id
    assert engine.get(started.id).key == "k" * 200


@pytest.mark.parametrize(
    ("key", "message"),
    [(5, "must be text, not int"), ("a\x00b", "NUL character"), ("a\ud800", "lone surrogate")],
)
def test_a_business_key_the_database_cannot_keep_is_refused(
    engine: Engine, deploy: Callable[[str], Any], key: Any, message: str
) -> None:
    deploy("counter")
    with pytest.raises(InvalidInput, match=message):
        engine.start("counter", {"count": 0}, key=key)
    assert engine.instances() == []


def test_lookups_by_a_key_over_200_characters_are_invalid_input(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    with pytest.raises(InvalidInput, match="over the limit of 200"):
        engine.get_by_key("counter", TOO_LONG)
    with pytest.raises(InvalidInput, match="over the limit of 200"):
        engine.send_by_key("counter", TOO_LONG, "increment")


def test_an_idempotency_key_over_200_characters_is_refused_and_the_event_not_applied(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    started = engine.start("counter", {"count": 0})
    with pytest.raises(InvalidInput, match="idempotency key is 201 characters"):
        engine.send(started.id, "increment", idempotency_key=TOO_LONG)
    with pytest.raises(InvalidInput, match="NUL character"):
        engine.send(started.id, "increment", idempotency_key="a\x00")
    assert engine.get(started.id).revision == started.revision


@pytest.mark.parametrize("instance_id", ["x" * 10_000, "0123\x00", "a\ud800"])
def test_an_id_no_instance_can_have_is_not_found(
    engine: Engine, deploy: Callable[[str], Any], instance_id: str
) -> None:
    deploy("counter")
    engine.start("counter", {"count": 0})
    send = partial(engine.send, event="increment")
    for call in (engine.get, engine.history, engine.allowed, engine.cancel, send):
        with pytest.raises(InstanceNotFound):
            call(instance_id)


@pytest.mark.parametrize("version", [0, 2**31, 10**20])
def test_a_version_no_definition_can_have_is_not_found(
    engine: Engine, deploy: Callable[[str], Any], version: int
) -> None:
    deploy("counter")
    with pytest.raises(DefinitionNotFound):
        engine.definition("counter", version)
    with pytest.raises(DefinitionNotFound):
        engine.start("counter", {"count": 0}, version=version)
    with pytest.raises(DefinitionNotFound):
        engine.start_many("counter", [{"count": 0}], version=version)
    assert engine.instances() == []


def test_a_version_past_the_32_bit_column_is_refused_at_deploy(engine: Engine) -> None:
    """The definition names its version; a DefinitionError at its line, nothing deployed."""
    source = "name: big\nversion: 99999999999999999999\ninitial: a\nstates: {a: {final: true}}\n"
    with pytest.raises(DefinitionError) as refused:
        engine.deploy(source)
    assert [(p.line, p.message) for p in refused.value.problems] == [
        (2, "version must be an integer from 1 to 2147483647")
    ]
    assert engine.definitions() == []
    top = engine.deploy(source.replace("99999999999999999999", "2147483647"))
    assert top.version == 2_147_483_647

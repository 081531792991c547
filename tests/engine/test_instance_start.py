"""Starting instances: input validation against the schema, the initial state, business keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from engine import (
    DefinitionNotFound,
    DuplicateKey,
    Engine,
    InstanceNotFound,
    InvalidInput,
    TurnoutError,
)


def test_start_enters_initial_state_with_data_as_context(
    engine: Engine, deploy: Callable[[str], Any], clock: Any
) -> None:
    deployment = deploy("signup")
    inst = engine.start("signup", {"email": "ann@example.com", "age": 30})
    assert inst.state == "pending"
    assert inst.status == "running"
    assert inst.context == {"email": "ann@example.com", "age": 30}
    assert inst.definition == "signup"
    assert inst.version == deployment.version
    assert inst.key is None
    assert isinstance(inst.id, str) and inst.id
    assert inst.created_at == clock.now and inst.updated_at == clock.now
    assert inst.revision >= 1
    assert engine.get(inst.id) == inst


def test_start_gives_each_instance_its_own_id(engine: Engine, deploy: Callable[[str], Any]) -> None:
    deploy("signup")
    ids = {engine.start("signup", {"email": f"{n}@example.com"}).id for n in range(5)}
    assert len(ids) == 5


def test_start_does_not_keep_a_reference_to_the_callers_data(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("signup")
    data: dict[str, Any] = {"email": "ann@example.com"}
    inst = engine.start("signup", data)
    data["email"] = "changed@example.com"
    assert engine.get(inst.id).context == {"email": "ann@example.com"}


@pytest.mark.parametrize(
    "data",
    [
        {},  # required email missing
        {"email": 42},  # wrong type
        {"email": "ann@example.com", "age": -1},  # below minimum
    ],
    ids=["missing-required", "wrong-type", "below-minimum"],
)
def test_start_with_data_not_matching_input_schema_raises_and_creates_nothing(
    engine: Engine, deploy: Callable[[str], Any], data: dict[str, Any]
) -> None:
    deploy("signup")
    with pytest.raises(InvalidInput) as raised:
        engine.start("signup", data, key="k-1")
    assert str(raised.value)
    assert isinstance(raised.value, TurnoutError)
    assert engine.instances(definition="signup") == []
    # the rejected start did not take the business key either
    assert engine.start("signup", {"email": "ok@example.com"}, key="k-1").key == "k-1"


def test_start_without_data_gives_an_empty_context(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("counter")
    inst = engine.start("counter")
    assert inst.context == {}
    assert inst.state == "counting"


def test_start_of_unknown_definition_raises_definition_not_found(engine: Engine) -> None:
    with pytest.raises(DefinitionNotFound):
        engine.start("no_such_definition", {})
    assert engine.instances() == []


def test_get_of_unknown_instance_raises_instance_not_found(engine: Engine) -> None:
    with pytest.raises(InstanceNotFound):
        engine.get("no-such-instance")
    with pytest.raises(InstanceNotFound):
        engine.history("no-such-instance")
    with pytest.raises(InstanceNotFound):
        engine.send("no-such-instance", "confirm")


def test_business_key_is_kept_on_the_instance(engine: Engine, deploy: Callable[[str], Any]) -> None:
    deploy("signup")
    inst = engine.start("signup", {"email": "ann@example.com"}, key="order-7")
    assert inst.key == "order-7"
    assert engine.get(inst.id).key == "order-7"


def test_duplicate_business_key_for_same_definition_raises_and_creates_nothing(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("signup")
    first = engine.start("signup", {"email": "ann@example.com"}, key="order-7")
    with pytest.raises(DuplicateKey):
        engine.start("signup", {"email": "bob@example.com"}, key="order-7")
    assert [i.id for i in engine.instances(definition="signup")] == [first.id]


def test_duplicate_key_is_refused_even_after_the_first_instance_finished(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("signup")
    first = engine.start("signup", {"email": "ann@example.com"}, key="order-7")
    engine.send(first.id, "reject")
    with pytest.raises(DuplicateKey):
        engine.start("signup", {"email": "bob@example.com"}, key="order-7")


def test_same_business_key_may_be_used_by_another_definition(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("signup")
    deploy("counter")
    signup = engine.start("signup", {"email": "ann@example.com"}, key="shared-1")
    counter = engine.start("counter", {"count": 0}, key="shared-1")
    assert signup.id != counter.id


def test_send_by_key_reaches_the_instance_with_that_key(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("signup")
    engine.start("signup", {"email": "ann@example.com"}, key="a")
    bob = engine.start("signup", {"email": "bob@example.com"}, key="b")
    moved = engine.send_by_key("signup", "b", "confirm", {"by": "admin"})
    assert moved.id == bob.id
    assert moved.state == "active"
    assert moved.context["confirmed_by"] == "admin"
    assert engine.instances(definition="signup", key="a")[0].state == "pending"


def test_send_by_unknown_key_raises_instance_not_found(
    engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("signup")
    engine.start("signup", {"email": "ann@example.com"}, key="a")
    with pytest.raises(InstanceNotFound):
        engine.send_by_key("signup", "zzz", "confirm")
    with pytest.raises((InstanceNotFound, DefinitionNotFound)):
        engine.send_by_key("counter", "a", "confirm")


@pytest.mark.parametrize("data", [["not", "an", "object"], "text", 7], ids=["list", "str", "int"])
def test_start_data_that_is_not_an_object_is_invalid_input(
    engine: Engine, deploy: Callable[[str], Any], data: Any
) -> None:
    deploy("counter")  # no input schema: the context must still be a JSON object
    with pytest.raises(InvalidInput):
        engine.start("counter", data)
    assert engine.instances() == []

"""Definition versions, instances living only in the database, and an unreachable database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import statemachines
from engine import DatabaseUnavailable, DefinitionError, Engine, TurnoutError

DEFINITIONS = Path(__file__).parent / "definitions"


@pytest.fixture
def second_engine(store_url: str, clock: Any) -> Iterator[Any]:
    """Another Engine on the same database, as another process would have."""
    eng = Engine(store_url, clock=clock)
    try:
        yield eng
    finally:
        eng.close()


def test_deploy_returns_name_version_and_digest(engine: Engine) -> None:
    deployment = engine.deploy(DEFINITIONS / "versioned_v1.yaml")
    assert deployment.name == "versioned"
    assert deployment.version == 1
    assert deployment.created is True
    assert deployment.digest


def test_deploying_same_content_again_changes_nothing(engine: Engine) -> None:
    first = engine.deploy(DEFINITIONS / "versioned_v1.yaml")
    again = engine.deploy(DEFINITIONS / "versioned_v1.yaml")
    assert (again.version, again.digest, again.created) == (first.version, first.digest, False)


def test_comments_and_layout_do_not_make_a_new_version(engine: Engine) -> None:
    first = engine.deploy(DEFINITIONS / "versioned_v1.yaml")
    relaid = engine.deploy(DEFINITIONS / "versioned_v1_relaid.yaml")
    assert relaid.version == first.version
    assert relaid.created is False


def test_deploy_accepts_a_path_yaml_text_or_a_definition(engine: Engine) -> None:
    path = DEFINITIONS / "versioned_v1.yaml"
    by_path = engine.deploy(path)
    by_text = engine.deploy(path.read_text())
    by_definition = engine.deploy(statemachines.load(path))
    assert by_path.version == by_text.version == by_definition.version == 1
    assert by_text.created is False and by_definition.created is False


def test_changed_content_is_the_next_version(engine: Engine) -> None:
    engine.deploy(DEFINITIONS / "versioned_v1.yaml")
    second = engine.deploy(DEFINITIONS / "versioned_v2.yaml")
    assert second.version == 2
    assert second.created is True
    assert engine.deploy(DEFINITIONS / "versioned_v1.yaml").version in (1, 3)


def test_naming_an_existing_version_with_other_content_is_refused(engine: Engine) -> None:
    engine.deploy(DEFINITIONS / "versioned_v1.yaml")
    with pytest.raises(DefinitionError):
        engine.deploy(DEFINITIONS / "versioned_pinned.yaml")
    inst = engine.start("versioned", {})
    assert inst.version == 1
    assert engine.send(inst.id, "next").state == "second"


def test_invalid_definition_is_refused_with_its_problems(engine: Engine) -> None:
    with pytest.raises(DefinitionError) as raised:
        engine.deploy("name: broken\ninitial: nowhere\nstates:\n  here: {final: true}\n")
    assert raised.value.problems
    assert isinstance(raised.value, TurnoutError)


def test_new_instances_use_the_latest_version_and_running_ones_keep_theirs(engine: Engine) -> None:
    engine.deploy(DEFINITIONS / "versioned_v1.yaml")
    old = engine.start("versioned", {})
    engine.send(old.id, "next")
    engine.deploy(DEFINITIONS / "versioned_v2.yaml")
    new = engine.start("versioned", {})
    assert (old.version, new.version) == (1, 2)
    assert engine.send(old.id, "next").state == "done_v1"
    engine.send(new.id, "next")
    assert engine.send(new.id, "next").state == "done_v2"
    assert engine.get(old.id).version == 1


def test_a_version_deployed_by_another_engine_is_the_one_new_instances_use(
    engine: Engine, second_engine: Engine
) -> None:
    engine.deploy(DEFINITIONS / "versioned_v1.yaml")
    assert engine.start("versioned", {}).version == 1  # version 1 is now loaded here
    second_engine.deploy(DEFINITIONS / "versioned_v2.yaml")
    started = engine.start("versioned", {})
    assert started.version == 2
    engine.send(started.id, "next")
    assert engine.send(started.id, "next").state == "done_v2"


def test_start_on_a_named_version(engine: Engine, second_engine: Engine) -> None:
    engine.deploy(DEFINITIONS / "versioned_v1.yaml")
    engine.deploy(DEFINITIONS / "versioned_v2.yaml")
    # The second engine has loaded neither version: it loads the one named.
    started = second_engine.start("versioned", {}, version=1)
    assert started.version == 1
    second_engine.send(started.id, "next")
    assert second_engine.send(started.id, "next").state == "done_v1"
    with pytest.raises(TurnoutError, match="versioned"):
        second_engine.start("versioned", {}, version=9)
    assert len(engine.instances()) == 1


def test_starting_an_undeployed_definition_changes_nothing(engine: Engine) -> None:
    with pytest.raises(TurnoutError, match="nowhere"):
        engine.start("nowhere", {})
    assert engine.instances() == []


def test_a_second_engine_sees_and_continues_an_instance_of_the_first(
    engine: Engine, second_engine: Engine, deploy: Callable[[str], Any]
) -> None:
    deploy("one_task")
    deploy("signup")
    inst = engine.start("signup", {"email": "a@x"}, key="k")
    assert second_engine.get(inst.id) == inst
    moved = second_engine.send(inst.id, "confirm", {"by": "other process"})
    assert engine.get(inst.id) == moved
    assert engine.history(inst.id) == second_engine.history(inst.id)
    assert [i.id for i in second_engine.instances(key="k")] == [inst.id]

    work = engine.start("one_task", {})  # the first engine has no handler

    @second_engine.task("jobs.work")
    def handler(data: Any) -> Any:
        return {"ran_in": "second"}

    assert engine.run_until_idle() == 0
    assert second_engine.run_until_idle() == 1
    assert engine.get(work.id).context == {"ran_in": "second"}
    assert engine.get(work.id).state == "finished"


def test_an_engine_reopened_on_the_same_database_finds_everything(
    store_url: str, clock: Any
) -> None:
    first = Engine(store_url, clock=clock)
    try:
        first.deploy(DEFINITIONS / "counter.yaml")
        inst = first.start("counter", {"count": 1})
        first.send(inst.id, "increment")
    finally:
        first.close()
    reopened = Engine(store_url, clock=clock)
    try:
        assert reopened.get(inst.id).context == {"count": 2}
        assert reopened.send(inst.id, "increment").context == {"count": 3}
        assert reopened.deploy(DEFINITIONS / "counter.yaml").created is False
    finally:
        reopened.close()


def test_timer_set_by_one_engine_fires_under_another(
    engine: Engine, second_engine: Engine, clock: Any, deploy: Callable[[str], Any]
) -> None:
    deploy("reminder")
    inst = engine.start("reminder", {})
    clock.advance(3600)
    assert second_engine.run_until_idle() >= 1
    assert engine.get(inst.id).state == "expired"


def test_unreachable_database_raises_database_unavailable_without_the_password() -> None:
    url = "postgresql+psycopg://postgres:secret@127.0.0.1:1/test"
    with pytest.raises(DatabaseUnavailable) as raised:
        eng = Engine(url)
        try:
            eng.deploy(DEFINITIONS / "counter.yaml")
        finally:
            eng.close()
    message = str(raised.value)
    assert message
    assert "secret" not in message
    assert "secret" not in repr(raised.value)
    assert isinstance(raised.value, TurnoutError)


def test_sqlite_file_in_a_missing_directory_raises_database_unavailable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/no/such/directory/turnout.db"
    with pytest.raises(DatabaseUnavailable):
        eng = Engine(url)
        try:
            eng.deploy(DEFINITIONS / "counter.yaml")
        finally:
            eng.close()

"""Instance ids as a person types them: a unique prefix wherever an id is taken (the command
line, and `Engine.resolve_id` under it), an ambiguous one answered with its candidates; ids
printed whole in every format, however narrow the terminal.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from turnout_processes import DEFINITIONS, run_together, run_turnout, turnout_command, turnout_env

from engine import Engine, InstanceNotFound
from engine.ids import AmbiguousId

DOOR = str(DEFINITIONS / "door.yaml")


def shortest_unique(instance_id: str, others: list[str]) -> str:
    """The shortest prefix of `instance_id` that starts no id of `others`."""
    shared = max(len(os.path.commonprefix([instance_id, other])) for other in others)
    return instance_id[: shared + 1]


@pytest.fixture(scope="module")
def door_ids(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    """A database with door.yaml deployed and three instances: its URL and their ids."""
    database = f"sqlite:///{tmp_path_factory.mktemp('ids')}/turnout.db"
    lines = tmp_path_factory.mktemp("lines") / "three.jsonl"
    lines.write_text("{}\n{}\n{}\n")
    deployed = run_turnout("deploy", DOOR, database=database)
    assert deployed.returncode == 0, deployed.stderr
    started = run_turnout(
        "start", "surface_door", "--many", str(lines), "--json", database=database
    )
    assert started.returncode == 0, started.stderr
    return database, json.loads(started.stdout)["ids"]


def test_engine_resolves_a_unique_prefix_and_lists_the_candidates_of_an_ambiguous_one(
    store_url: str,
) -> None:
    with Engine(store_url) as engine:
        engine.deploy(DOOR)
        ids = [engine.start("surface_door", {}).id for _ in range(3)]
        first = ids[0]
        unique = shortest_unique(first, ids[1:])
        assert engine.resolve_id(unique) == first
        assert engine.resolve_id(unique.upper() + "-") == first  # case and dashes ignored
        assert engine.resolve_id(str(uuid.UUID(first))) == first  # the UUID form, unread
        shared = os.path.commonprefix(ids)
        with pytest.raises(AmbiguousId) as ambiguous:
            engine.resolve_id(shared)
        assert ambiguous.value.candidates == sorted(ids) and not ambiguous.value.more
        with pytest.raises(InstanceNotFound):
            engine.resolve_id("f" * 12)  # UUIDv7 ids of this century start with 0
        with pytest.raises(InstanceNotFound):
            engine.get(engine.resolve_id("not-hex"))


def test_every_command_that_takes_an_id_takes_a_unique_prefix(
    door_ids: tuple[str, list[str]], tmp_path: Path
) -> None:
    database, ids = door_ids
    first, second, third = ids
    prefix = shortest_unique(first, [second, third])
    shown, history, timeline, drawn, children = run_together(
        ["show", prefix, "--json"],
        ["history", prefix, "--json"],
        ["timeline", prefix, "--json"],
        ["diagram", "--instance", prefix, "-f", "dot"],
        ["list", "--parent", prefix, "--json"],
        database=database,
    )
    assert json.loads(shown.stdout)["id"] == first, shown.stderr
    assert json.loads(history.stdout)[0]["kind"] == "start", history.stderr
    assert json.loads(timeline.stdout)["points"], timeline.stderr
    assert drawn.returncode == 0 and "digraph" in drawn.stdout, drawn.stderr
    assert json.loads(children.stdout) == [], children.stderr
    sent = run_turnout("send", prefix, "open", "--json", database=database)
    assert json.loads(sent.stdout)["state"] == "opened", sent.stderr
    reset = run_turnout(
        "reset",
        shortest_unique(second, [first, third]),
        "locked",
        "--reason",
        "test",
        "--json",
        database=database,
    )
    assert json.loads(reset.stdout)["state"] == "locked", reset.stderr
    cancelled = run_turnout(
        "cancel", shortest_unique(third, [first, second]), "--json", database=database
    )
    assert json.loads(cancelled.stdout)["status"] == "cancelled", cancelled.stderr
    redriven = run_turnout("redrive", shortest_unique(third, [first, second]), database=database)
    assert redriven.returncode == 1 and "Traceback" not in redriven.stderr  # not failed: refused
    assert third in redriven.stderr or "cancelled" in redriven.stderr


def test_an_ambiguous_prefix_is_an_error_listing_every_candidate(
    door_ids: tuple[str, list[str]],
) -> None:
    database, ids = door_ids
    shared = os.path.commonprefix(ids)
    assert shared, "UUIDv7 ids made in the same second share their first digits"
    results = run_together(
        ["show", shared],
        ["history", shared],
        ["send", shared, "open"],
        ["watch", shared],
        database=database,
    )
    for result in results:
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert lines[0] == f"error: instance id prefix {shared!r} is ambiguous; it starts:"
        assert sorted(line.strip() for line in lines[1:]) == sorted(ids)
    unknown = run_turnout("show", "fff", database=database)
    assert unknown.returncode == 1 and unknown.stderr.strip() == "error: no instance 'fff'"


def test_ids_are_printed_whole_at_80_columns_in_every_format(
    door_ids: tuple[str, list[str]],
) -> None:
    database, ids = door_ids
    listed, history, as_json, as_yaml, wrong = (
        subprocess.run(
            [turnout_command(), *args],
            env=turnout_env(database, COLUMNS="80"),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        for args in (
            ["list"],
            ["history", ids[0]],
            ["list", "-o", "json"],
            ["list", "-o", "yaml"],
            ["list", "-o", "xml"],
        )
    )
    assert listed.returncode == 0, listed.stderr
    assert "…" not in listed.stdout and "..." not in listed.stdout
    for instance_id in ids:
        assert instance_id in listed.stdout
    assert "surface_door" in listed.stdout and "running" in listed.stdout
    assert ids[0] in history.stdout and "…" not in history.stdout
    assert {item["id"] for item in json.loads(as_json.stdout)} == set(ids)
    assert {item["id"] for item in yaml.safe_load(as_yaml.stdout)} == set(ids)
    assert wrong.returncode == 2 and "choose one of table, json, yaml" in wrong.stderr


def test_global_options_come_before_or_after_the_command(
    door_ids: tuple[str, list[str]],
) -> None:
    database, ids = door_ids
    before, after, equals, yaml_first = run_together(
        ["--json", "history", ids[0]],
        ["history", ids[0], "--json"],
        ["--output=json", "show", ids[0]],
        ["-oyaml", "show", ids[0]],
        database=database,
    )
    no_env = run_turnout("--json", "--db", database, "list")
    assert json.loads(before.stdout) == json.loads(after.stdout), before.stderr
    assert json.loads(equals.stdout)["id"] == ids[0], equals.stderr
    assert yaml.safe_load(yaml_first.stdout)["id"] == ids[0], yaml_first.stderr
    assert {item["id"] for item in json.loads(no_env.stdout)} == set(ids), no_env.stderr

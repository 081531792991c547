"""`turnout` starts quickly because building its command line imports nothing heavy: the
modules `turnout --help`, `validate` and `simulate` load are checked here (their times are
benchmarks/startup.py's, in `make bench`), and the engine's values the options copy are
checked against the engine's own."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from engine.cli import common

HEAVY = ("engine.engine", "sqlalchemy", "sqlmodel", "fastapi", "graphviz", "uvicorn", "httpx")
LANGUAGE = ("statemachines", "jsonschema", "pydantic", "yaml")
RUN = """
import json, sys
from engine.cli import main
sys.argv = ["turnout", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit:
    pass
sys.__stdout__.write("\\n" + json.dumps(sorted(sys.modules)))
"""


def modules_loaded(*args: str) -> set[str]:
    """The modules a `turnout ARGS` run in a fresh interpreter has imported by its end."""
    done = subprocess.run(
        [sys.executable, "-c", RUN, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return [name for name in names if name in modules]


@pytest.mark.parametrize("args", [["--help"], ["show", "--help"], ["--version"]])
def test_help_imports_neither_the_engine_nor_the_language(args: list[str]) -> None:
    modules = modules_loaded(*args)
    # A command's own parameters are converted by typer, which uses pydantic to do so.
    assert loaded(modules, HEAVY + LANGUAGE) in ([], ["pydantic"] if args[0] == "show" else [])
    assert "rich.console" not in modules  # help is plain text


def test_validate_and_simulate_import_the_language_but_not_the_engine() -> None:
    from turnout_processes import DEFINITIONS

    door = str(DEFINITIONS / "door.yaml")
    for args in (["validate", door], ["simulate", door, "-e", "open"]):
        modules = modules_loaded(*args)
        assert loaded(modules, HEAVY) == [], args
        assert "statemachines" in modules


def test_the_language_commands_run_without_typer_pydantic_or_jsonschema() -> None:
    """`validate`, `simulate` and `schema` are click commands `main` runs without building
    the typer app (whose parameters pydantic converts); jsonschema is for an input schema."""
    from turnout_processes import DEFINITIONS

    door = str(DEFINITIONS / "door.yaml")
    for args in (["validate", door], ["--json", "simulate", door, "-e", "open"], ["schema"]):
        modules = modules_loaded(*args)
        assert loaded(modules, ("typer", "pydantic", "jsonschema")) == [], args
        assert "statemachines.histories" not in modules, args  # nor replays of histories


def test_the_values_the_options_copy_are_the_engines() -> None:
    from engine.batching import DEFAULT_BATCH, DEFAULT_LINGER
    from engine.brokers.delivery_log import DeliveryStatus
    from engine.brokers.webhooks import MAX_LISTED
    from engine.retention import FINISHED_STATUSES, MAX_PURGE_BATCH
    from engine.schedule_times import CATCH_UPS, OVERLAPS
    from engine.tracing import EXTRA

    assert common.FINISHED_STATUSES == FINISHED_STATUSES
    assert common.MAX_PURGE_BATCH == MAX_PURGE_BATCH
    assert (common.OVERLAPS, common.CATCH_UPS) == (OVERLAPS, CATCH_UPS)
    assert (common.DEFAULT_BATCH, common.DEFAULT_LINGER) == (DEFAULT_BATCH, DEFAULT_LINGER)
    assert common.TRACING_EXTRA == EXTRA
    assert common.DELIVERY_STATUSES == tuple(str(status) for status in DeliveryStatus)
    assert common.MAX_LISTED_DELIVERIES == MAX_LISTED


def test_global_options_are_moved_after_the_command_name() -> None:
    from engine.cli import global_options_moved

    assert global_options_moved(["--json", "history", "ab"]) == ["history", "ab", "--json"]
    assert global_options_moved(["--db", "sqlite://", "-o", "yaml", "schedule", "list"]) == [
        "schedule",
        "list",
        "--db",
        "sqlite://",
        "-o",
        "yaml",
    ]
    assert global_options_moved(["-ojson", "--db=x", "show", "ab"]) == [
        "show",
        "ab",
        "-ojson",
        "--db=x",
    ]
    assert global_options_moved(["--json", "replay", "f", "--", "-x"]) == [
        "replay",
        "f",
        "--json",
        "--",
        "-x",
    ]
    assert global_options_moved(["show", "ab", "--json"]) == ["show", "ab", "--json"]
    assert global_options_moved(["--json", "--version"]) == ["--json", "--version"]


def test_the_id_length_engine_ids_copies_is_the_tables() -> None:
    from engine import ids, tables

    assert ids.ID_LENGTH == tables.ID_LENGTH

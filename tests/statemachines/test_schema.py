"""`statemachines.json_schema()`: a draft 2020-12 schema of the language, for editors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import statemachines
from statemachines.build import STATE_KEYS, TOP_KEYS
from statemachines.loader import parse_yaml

HERE = Path(__file__).parent
SCHEMA = statemachines.json_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def data_of(path: Path) -> Any:
    return parse_yaml(path.read_text(), str(path)).data


def test_the_schema_is_valid_under_the_2020_12_metaschema() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    json.dumps(SCHEMA)


def test_every_key_of_the_language_is_described() -> None:
    assert set(SCHEMA["properties"]) == set(TOP_KEYS)
    assert set(SCHEMA["required"]) == {"name", "initial", "states"}
    state = SCHEMA["$defs"]["state"]
    assert set(state["properties"]) == set(STATE_KEYS)
    for key, schema in [*SCHEMA["properties"].items(), *state["properties"].items()]:
        assert schema.get("description"), key
    for name in ("retry", "foreach"):
        for key, schema in SCHEMA["$defs"][name]["properties"].items():
            assert schema.get("description"), f"{name}.{key}"


@pytest.mark.parametrize(
    "path",
    [*statemachines.examples(), *sorted((HERE / "valid").glob("*.yaml"))],
    ids=lambda path: Path(path).name,
)
def test_every_bundled_example_and_valid_test_file_is_accepted(path: Path) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(data_of(path))]
    assert errors == []


def test_the_spec_example_is_accepted() -> None:
    data = data_of(HERE / "valid" / "spec_example.yaml")
    assert data["name"] == "order_fulfillment"
    VALIDATOR.validate(data)


def _minimal(**state: Any) -> dict[str, Any]:
    return {"name": "x", "initial": "a", "states": {"a": state, "b": {"final": True}}}


@pytest.mark.parametrize(
    ("document", "why"),
    [
        ([], "a list is not a definition"),
        ({"initial": "a", "states": {"a": {"final": True}}}, "no name"),
        ({**_minimal(on={"go": "b"}), "owner": "me"}, "an unknown top-level key"),
        ({**_minimal(on={"go": "b"}), "name": "Bad Name"}, "a name outside the pattern"),
        ({**_minimal(on={"go": "b"}), "version": 0}, "version below 1"),
        (_minimal(on={"go": "b"}, afer={"1h": "b"}), "an unknown state key"),
        (_minimal(task="t", parallel={"p": {"task": "u"}}, on={"done": "b"}), "task and parallel"),
        (_minimal(final=True, on={"go": "b"}), "a final state with transitions"),
        (_minimal(on={"go": "b"}, after={"soon": "b"}), "a timer that is not a duration"),
        (_minimal(task="t", timeout=30, on={"done": "b"}), "a duration without a unit"),
        (_minimal(task="t", retry={"attempts": 0}, on={"done": "b"}), "zero attempts"),
        (_minimal(task="t", retry={"tries": 2}, on={"done": "b"}), "an unknown retry key"),
        (_minimal(on={"go": {"to": "b", "when": "True"}}), "an unknown transition key"),
        (_minimal(on={"go": {"if": "True"}}), "a transition with neither to nor assign"),
        (_minimal(on={"go": []}), "an empty list of transitions"),
        (_minimal(result="r", on={"go": "b"}), "result without a task"),
        (_minimal(final="maybe"), "final must be true, succeeded or failed"),
        (_minimal(foreach={"items": "context.x"}, on={"done": "b"}), "foreach without a task"),
        (_minimal(parallel={"p": {"initial": "x"}}, on={"done": "b"}), "a region without states"),
        (_minimal(parallel={}, on={"done": "b"}), "a parallel state without branches"),
        ({"name": "x", "initial": "a", "states": {}}, "no states"),
        ({"name": "x", "initial": "a", "states": {"a b": {"final": True}}}, "a bad state name"),
    ],
)
def test_obviously_wrong_documents_are_rejected(document: Any, why: str) -> None:
    assert not VALIDATOR.is_valid(document), why


@pytest.mark.parametrize(
    "name",
    "unknown_key conflicting_keys bad_duration bare_number_duration final_with_transitions "
    "missing_required".split(),
)
def test_structural_defects_in_invalid_files_are_rejected_too(name: str) -> None:
    assert not VALIDATOR.is_valid(data_of(HERE / "invalid" / f"{name}.yaml"))


@pytest.mark.parametrize(
    "state",
    [
        None,
        {"on": {"go": ["b", {"to": "b", "if": "context.x", "assign": {"k": 1}}]}},
        {"on": {"go": {"assign": {"n": "context.n + 1"}}, "stop": "b"}},
        {"after": {"PT30S": "b", "1h30m": {"to": "b"}}},
        {"always": [{"to": "b", "if": "True"}, {"to": "b"}]},
        {
            "task": "t.x",
            "result": False,
            "retry": {"attempts": 3, "jitter": True},
            "on": {"done": "b"},
        },
        {
            "foreach": {"items": "context.xs", "task": "t", "concurrency": 2, "result": "rs"},
            "on": {"done": "b"},
        },
        {
            "parallel": {
                "one": {"task": "t"},
                "two": {
                    "initial": "w",
                    "states": {"w": {"on": {"go": "e"}}, "e": {"final": "failed"}},
                },
            },
            "on": {"done": "b"},
        },
    ],
)
def test_each_state_form_is_accepted(state: Any) -> None:
    document = _minimal() | {"states": {"a": state, "b": {"final": True}}}
    errors = [error.message for error in VALIDATOR.iter_errors(document)]
    assert errors == []


def test_the_input_schema_is_checked_against_the_json_schema_metaschema() -> None:
    data = data_of(statemachines.EXAMPLES / "order_fulfillment.yaml")
    VALIDATOR.validate(data)
    assert not VALIDATOR.is_valid({**data, "input": {"type": 12}})
    assert not VALIDATOR.is_valid({**data, "input": {"required": "order_id"}})
    assert not VALIDATOR.is_valid({**data, "input": [1]})

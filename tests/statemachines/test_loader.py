"""The YAML reader: YAML 1.2 meanings, positions, duplicate keys, and what it refuses to build."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import statemachines
from statemachines import DefinitionError, Problem
from statemachines.loader import MAX_DEPTH, MAX_SOURCE_BYTES, parse_yaml

HERE = Path(__file__).parent


def _problems(text: str) -> list[Problem]:
    with pytest.raises(DefinitionError) as caught:
        statemachines.load(text)
    return caught.value.problems


def _wrap(state_body: str) -> str:
    return f"name: tagged\ninitial: start\nstates:\n  start: {state_body}\n  end: {{final: true}}\n"


# -- YAML 1.2 meanings ---------------------------------------------------------------------


def test_on_is_the_key_on_and_off_no_yes_stay_state_names() -> None:
    definition = statemachines.load(HERE / "valid" / "yaml12_words.yaml")
    assert definition.initial == "off"
    assert [state.name for state in definition.states] == ["off", "yes", "no"]
    off = definition.state("off")
    assert [(event, [t.target for t in ts]) for event, ts in off.on] == [
        ("on", ["yes"]),
        ("toggle", ["no"]),
    ]
    assert definition.state("yes").events["off"][0].target == "off"


def test_colon_numbers_stay_strings() -> None:
    definition = statemachines.load(HERE / "valid" / "yaml12_words.yaml")
    assert definition.description == "1:30"
    assert definition.input_schema is not None
    properties = definition.input_schema["properties"]
    assert properties["start_time"]["default"] == "1:30"
    assert properties["flag"]["enum"] == ["yes", "no", "on", "off", "y", "n"]


def test_only_true_and_false_are_booleans_and_numbers_are_read_as_numbers() -> None:
    data = parse_yaml("a: true\nb: False\nc: yes\nd: 0x1F\ne: 0o17\nf: 1.5e3\ng: ~\nh: 017\n").data
    assert data == {
        "a": True,
        "b": False,
        "c": "yes",
        "d": 31,
        "e": 15,
        "f": 1500.0,
        "g": None,
        "h": 17,
    }


def test_yaml12_words_run_as_state_names() -> None:
    definition = statemachines.load(HERE / "valid" / "yaml12_words.yaml")
    run = statemachines.simulate(definition, ["on", "off", "on", "stop"])
    assert run.path[-1] == ("stop", "yes", "no")
    assert run.status == "succeeded"


# -- positions -----------------------------------------------------------------------------


def test_positions_of_values_and_keys_are_one_based() -> None:
    document = parse_yaml("name: x\nstates:\n  first:\n    on: {go: there}\n")
    assert document.where(("states", "first", "on", "go")) == (4, 14)
    assert document.where(("states", "first"), key=True) == (3, 3)
    assert document.where(("states", "missing", "deeper")) == (3, 3)


def test_transition_positions_point_at_the_target() -> None:
    definition = statemachines.load(
        "name: x\ninitial: a\nstates:\n  a:\n    on: {go: b}\n  b: {final: true}\n"
    )
    transition = definition.state("a").events["go"][0]
    assert (transition.position.line, transition.position.column) == (5, 14)


# -- duplicate keys ------------------------------------------------------------------------


def test_duplicate_key_is_reported_with_its_line() -> None:
    problems = _problems(
        "name: dup\ninitial: a\nstates:\n  a:\n    on: {go: b, go: a}\n  b: {final: true}\n"
    )
    assert [(p.line, p.column, p.message) for p in problems] == [
        (5, 17, "duplicate key 'go' (first defined at line 5)")
    ]


def test_duplicate_top_level_key_is_reported() -> None:
    problems = _problems("name: one\nname: two\ninitial: a\nstates:\n  a: {final: true}\n")
    assert [(p.line, p.message) for p in problems] == [
        (2, "duplicate key 'name' (first defined at line 1)")
    ]


def test_parse_yaml_refuses_duplicates_on_its_own() -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_yaml("a: 1\nb: 2\na: 3\n")
    assert caught.value.problems[0].line == 3


# -- what the loader refuses to build --------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        '!!python/object/apply:os.system ["echo pwned"]',
        "!!python/object/new:os.system [echo pwned]",
        "!!python/name:os.system",
        "!!python/module:os",
        "!!python/object:builtins.dict {a: 1}",
        "!!binary aGVsbG8=",
        "!!set {a, b}",
        "!custom {on: {go: end}}",
    ],
)
def test_yaml_object_tags_are_refused(body: str) -> None:
    problems = _problems(_wrap(body))
    assert [p.line for p in problems] == [4]
    assert "is not allowed" in problems[0].message


def test_python_tag_in_a_file_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = _wrap(f'!!python/object/apply:os.system ["touch {marker}"]')
    _problems(text)
    assert not marker.exists()


def test_alias_bomb_is_refused_quickly() -> None:
    started = time.perf_counter()
    with pytest.raises(DefinitionError) as caught:
        statemachines.load(HERE / "invalid" / "alias_bomb.yaml")
    assert time.perf_counter() - started < 5
    assert "definition too large" in caught.value.problems[0].message


def test_merge_key_is_not_merged_but_reported_as_an_unknown_key() -> None:
    problems = _problems(
        "name: merge\ninitial: start\nstates:\n"
        "  start: {<<: {on: {go: end}}}\n  end: {final: true}\n"
    )
    found = [(problem.line, problem.column, problem.message) for problem in problems]
    assert (4, 11, "unknown key '<<' in state 'start'") in found


def test_a_mapping_as_a_key_is_refused() -> None:
    problems = _problems("? {a: 1}\n: value\nname: x\n")
    assert problems[0].message == "a key must be a plain scalar, not a mapping or list"


def test_documents_nested_deeper_than_the_limit_are_refused() -> None:
    text = "name: deep\nx: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n"
    problems = _problems(text)
    assert "definition too large" in problems[0].message or "deep" in problems[0].message


def test_a_very_deep_flow_document_is_refused_without_a_crash() -> None:
    problems = _problems("x: " + "[" * 5000 + "]" * 5000 + "\n")
    assert problems


def test_documents_larger_than_one_megabyte_are_refused(tmp_path: Path) -> None:
    text = "name: big\ndescription: " + "x" * MAX_SOURCE_BYTES + "\n"
    assert "larger than" in _problems(text)[0].message
    big = tmp_path / "big.yaml"
    big.write_text(text)
    with pytest.raises(DefinitionError) as caught:
        statemachines.load(big)
    assert "larger than" in caught.value.problems[0].message


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(DefinitionError) as caught:
        statemachines.load(path)
    assert "not UTF-8" in caught.value.problems[0].message


def test_several_documents_in_one_file_are_refused() -> None:
    problems = _problems("name: a\n---\nname: b\n")
    assert problems[0].message.startswith("malformed YAML")
    assert problems[0].line == 2


def test_an_overlong_integer_is_refused() -> None:
    text = "name: x\nversion: " + "9" * 60 + "\ninitial: a\nstates: {a: {final: true}}\n"
    problems = _problems(text)
    assert problems[0].message == "integer is too long"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("!!int x", "'x' is not an integer"),
        ("!!int -0x1F", "'-0x1F' is not an integer"),
        ("!!float abc", "'abc' is not a number"),
        ("!!bool maybe", "'maybe' is not true or false"),
        ("!!null something", "'something' is not null"),
    ],
)
def test_explicit_standard_tags_with_wrong_values_are_refused(value: str, message: str) -> None:
    problems = _problems(f"name: x\nversion: {value}\ninitial: a\nstates: {{a: {{final: true}}}}\n")
    assert [(p.line, p.column, p.message) for p in problems] == [(2, 10, message)]


def test_explicit_standard_tags_with_fitting_values_are_read() -> None:
    data = parse_yaml("a: !!int '42'\nb: !!str 5\nc: !!float 1\nd: !!bool TRUE\ne: !!null ~\n").data
    assert data == {"a": 42, "b": "5", "c": 1.0, "d": True, "e": None}

"""SPEC 2.3: every validation rule, one invalid file each, reported with its place."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import statemachines
from statemachines import DefinitionError, Problem

Invalid = Callable[[str], list[Problem]]
INVALID = Path(__file__).parent / "invalid"

# file, then (line, column, a fragment of the message) of the one problem it must report
ONE_PROBLEM = [
    ("malformed_yaml", 6, 6, "malformed YAML"),
    ("duplicate_key", 7, 3, "duplicate key 'start' (first defined at line 4)"),
    ("unknown_key", 6, 5, "unknown key 'afer' in state 'waiting' — did you mean 'after'?"),
    ("unknown_initial", 2, 10, "initial state 'strat' names no state — did you mean 'start'?"),
    ("no_way_out", 6, 3, "state 'stuck' has no way out"),
    ("task_without_done", 4, 3, "task state 'charge' has no 'done' transition"),
    ("unreachable_state", 6, 3, "state 'orphan' cannot be reached from 'start'"),
    ("conflicting_keys", 6, 5, "state 'work' has both 'task' and 'parallel'"),
    ("bad_duration", 7, 7, "'soon' is not a duration"),
    ("bare_number_duration", 6, 14, "duration 30 needs a unit"),
    ("bad_expression", 8, 15, "expression 'context.amount >': invalid expression"),
    ("bad_input_schema", 4, 13, "input is not a valid JSON Schema"),
    ("final_with_transitions", 7, 5, "final state 'finish' cannot have outgoing transitions"),
    ("guarded_last_always", 7, 14, "the last 'always' entry of state 'route' is guarded"),
    ("python_object_tag", 4, 10, "python/object/apply:os.system' is not allowed"),
    ("unknown_event_in_task_state", 6, 16, "goes to 'finsh', which is not a state"),
]


@pytest.mark.parametrize(
    ("name", "line", "column", "message"), ONE_PROBLEM, ids=[case[0] for case in ONE_PROBLEM]
)
def test_each_rule_is_reported_with_its_line_and_column(
    invalid: Invalid, name: str, line: int, column: int, message: str
) -> None:
    problems = invalid(name)
    assert len(problems) == 1, problems
    problem = problems[0]
    assert message in problem.message
    assert (problem.line, problem.column) == (line, column)
    assert problem.file == str(INVALID / f"{name}.yaml")
    assert str(problem).startswith(f"{INVALID / name}.yaml:{line}:{column}: ")


def test_missing_name_initial_and_states_are_each_reported(invalid: Invalid) -> None:
    messages = [p.message for p in invalid("missing_required")]
    assert messages == [
        "missing required key 'name'",
        "missing required key 'initial'",
        "missing required key 'states'",
    ]


def test_target_that_names_no_state_gets_a_suggestion(invalid: Invalid) -> None:
    problems = invalid("unknown_target")
    assert len(problems) == 1, "the misspelt state is not also reported as unreachable"
    first = problems[0]
    assert (first.line, first.column) == (6, 16)
    assert first.message == (
        "event 'approve' of state 'waiting' goes to 'aproved', which is not a state"
        " — did you mean 'approved'?"
    )


def test_a_file_with_several_defects_reports_them_all_in_one_error(invalid: Invalid) -> None:
    found = {(p.line, p.message.split(" — ")[0].split(";")[0]) for p in invalid("several_defects")}
    assert {
        (6, "event 'go' of state 'start' goes to 'middel', which is not a state"),
        (7, "unknown key 'afer' in state 'start'"),
        (8, "task state 'middle' has no 'done' transition (add on: {done: NEXT_STATE})"),
        (10, "'forever' is not a duration"),
        (15, "final state 'finish' cannot have outgoing transitions ('on')"),
        (16, "duplicate key 'finish' (first defined at line 13)"),
    } <= found


def test_problems_are_sorted_by_line_and_the_error_message_lists_each(invalid: Invalid) -> None:
    with pytest.raises(DefinitionError) as caught:
        statemachines.load(INVALID / "several_defects.yaml")
    lines = [p.line for p in caught.value.problems]
    assert lines == sorted(lines)
    text = str(caught.value)
    assert text.startswith(f"{len(lines)} problems in definition:")
    for problem in caught.value.problems:
        assert str(problem) in text


def test_misspelt_key_inside_retry_gets_a_suggestion() -> None:
    problems = _problems("""\
name: retry_typo
initial: work
states:
  work:
    task: jobs.run
    retry: {atempts: 3}
    on: {done: finish}
  finish: {final: true}
""")
    assert [(p.line, p.message) for p in problems] == [
        (6, "unknown key 'atempts' in retry — did you mean 'attempts'?")
    ]


def test_misspelt_state_name_in_a_branch_is_suggested_from_that_branch() -> None:
    problems = _problems("""\
name: branch_typo
initial: both
states:
  both:
    parallel:
      left:
        initial: wait
        states:
          wait: {on: {go: finihsed}}
          finished: {final: true}
    on: {done: end}
  end: {final: true}
""")
    hint = "goes to 'finihsed', which is not a state of branch 'left' — did you mean 'finished'?"
    assert hint in problems[0].message
    assert problems[0].line == 9


def test_unreachable_final_state_is_a_warning_not_an_error() -> None:
    definition = statemachines.load(Path(__file__).parent / "valid" / "trapped.yaml")
    assert definition.warnings == (
        f"{Path(__file__).parent / 'valid' / 'trapped.yaml'}:6:3: no final state can be "
        "reached from state 'spinning'",
    )


def test_a_definition_that_is_not_a_mapping_is_refused() -> None:
    problems = _problems("- just\n- a list\n")
    assert problems[0].message.startswith("a definition must be a mapping")
    assert (problems[0].line, problems[0].column) == (1, 1)


def test_an_empty_definition_is_refused() -> None:
    assert _problems("# nothing here\n")[0].message == "the definition is empty"


def test_a_bad_name_is_reported_at_its_value() -> None:
    problems = _problems("name: Order Flow\ninitial: a\nstates:\n  a: {final: true}\n")
    assert [(p.line, p.column) for p in problems] == [(1, 7)]
    assert "must match [a-z][a-z0-9_.-]*" in problems[0].message


def test_a_missing_file_is_a_definition_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    problems = _problems_of_path(missing)
    assert problems[0].file == str(missing)
    assert "cannot read file" in problems[0].message


def test_done_on_a_state_without_a_task_is_reported() -> None:
    problems = _problems("""\
name: stray_done
initial: wait
states:
  wait:
    on: {done: end, go: end}
  end: {final: true}
""")
    assert [(p.line, p.message) for p in problems] == [
        (5, "state 'wait' has no task, parallel or foreach, so 'done' never fires there")
    ]


def _problems(text: str) -> list[Problem]:
    with pytest.raises(DefinitionError) as caught:
        statemachines.load(text)
    return caught.value.problems


def _problems_of_path(path: Path) -> list[Problem]:
    with pytest.raises(DefinitionError) as caught:
        statemachines.load(path)
    return caught.value.problems


def test_empty_or_valueless_required_keys_are_reported_at_the_key() -> None:
    assert [(p.line, p.message) for p in _problems("name:\ninitial:\nstates:\n")] == [
        (1, "required key 'name' has no value"),
        (2, "required key 'initial' has no value"),
        (3, "required key 'states' has no value"),
    ]
    problems = _problems("name: x\ninitial: a\nstates: {}\n")
    assert [(p.line, p.message) for p in problems] == [(3, "states must not be empty")]


def test_a_branch_without_states_or_initial_is_reported() -> None:
    problems = _problems("""\
name: branches
initial: both
states:
  both:
    parallel:
      two: {initial: w}
      three: {}
    on: {done: end}
  end: {final: true}
""")
    assert [(p.line, p.message) for p in problems] == [
        (6, "branch 'two' needs 'states' (or a 'task')"),
        (7, "branch 'three' needs 'initial' and 'states' (or a 'task')"),
    ]


def test_a_state_description_must_be_text() -> None:
    problems = _problems(
        "name: x\ninitial: a\nstates:\n  a:\n    description: [1]\n    final: true\n"
    )
    assert [(p.line, p.column, p.message) for p in problems] == [
        (5, 18, "description must be text")
    ]


def test_a_misspelt_done_event_is_pointed_out() -> None:
    problems = _problems("""\
name: typo_done
initial: work
states:
  work:
    task: jobs.run
    on: {doen: end}
  end: {final: true}
""")
    expected = (
        "task state 'work' has no 'done' transition (add on: {done: NEXT_STATE})"
        " — is 'doen' meant to be 'done'?"
    )
    assert [(p.line, p.message) for p in problems] == [(4, expected)]


@pytest.mark.parametrize(
    ("guard", "column", "message"),
    [
        # the guard starts at column 26
        ("context.amount > > 3", 43, "invalid syntax"),
        ('"len(contxt)"', 31, "unknown name 'contxt' — did you mean 'context'?"),
        ("'context.__class__'", 27, "access to '__class__' is not allowed"),
        ("event.ok and __import__('os')", 39, "only these functions can be called"),
    ],
)
def test_an_expression_problem_points_at_its_place_in_the_line(
    guard: str, column: int, message: str
) -> None:
    text = f"name: x\ninitial: a\nstates:\n  a:\n    on: {{go: {{to: b, if: {guard}}}}}\n"
    problems = _problems(text + "  b: {final: true}\n")
    assert [(p.line, p.column) for p in problems] == [(5, column)]
    assert message in problems[0].message


def test_an_empty_initial_is_reported() -> None:
    problems = _problems("name: x\ninitial: ''\nstates:\n  a: {final: true}\n")
    assert [(p.line, p.message) for p in problems] == [(2, "initial must be a state name")]


def test_likely_typos_of_event_names_are_warnings_with_their_place() -> None:
    """`faild` beside `done` on a task state, `fialed` on a parallel state, `Done` and
    `Approve` beside `approve`; `mailed` on a foreach state that handles `failed` is not one."""
    file = Path(__file__).parent / "valid" / "likely_typos.yaml"
    assert statemachines.load(file).warnings == (
        f"{file}:9:14: event 'faild' of task state 'charge' looks like a misspelt 'failed': "
        "the engine fires 'failed', and this state has no transition for it",
        f"{file}:16:15: event 'fialed' of parallel state 'ship' looks like a misspelt "
        "'failed': the engine fires 'failed', and this state has no transition for it",
        f"{file}:26:13: event 'Done' differs from 'done' only in capitals; events match exactly",
        f"{file}:29:16: event 'Approve' differs from 'approve' only in capitals; events match "
        "exactly",
    )


@pytest.mark.parametrize("event", ["faild", "fialed", "faled", "FAILD", "fail", "faield"])
def test_an_event_within_two_edits_of_an_unhandled_failed_is_a_warning(event: str) -> None:
    definition = statemachines.load(
        "name: t\ninitial: work\nstates:\n  work:\n    task: jobs.work\n"
        f"    on: {{done: end, {event}: end}}\n  end: {{final: true}}\n"
    )
    [warning] = definition.warnings
    assert f"event {event!r} of task state 'work' looks like a misspelt 'failed'" in warning


@pytest.mark.parametrize("event", ["fails", "mailed", "retry", "cancel"])
def test_an_event_beside_a_handled_failed_or_far_from_it_is_no_warning(event: str) -> None:
    definition = statemachines.load(
        "name: t\ninitial: work\nstates:\n  work:\n    task: jobs.work\n"
        f"    on: {{done: end, failed: end, {event}: end}}\n  end: {{final: true}}\n"
    )
    assert definition.warnings == ()


def test_an_empty_or_dotted_state_name_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    for bad in ('""', "a.b"):
        file = tmp_path / "bad.yaml"
        file.write_text(
            f"name: x\ninitial: a\nstates:\n  a: {{on: {{go: b}}}}\n  b: {{final: true}}\n"
            f"  {bad}: {{final: true}}\n"
        )
        with pytest.raises(DefinitionError) as caught:
            statemachines.load(file)
        assert any("must be letters, digits" in str(p) for p in caught.value.problems)

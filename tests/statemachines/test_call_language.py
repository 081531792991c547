"""`call: DEFINITION`: a state that runs an instance of another definition, read with its
problems at their lines, in the JSON Schema, and run by `simulate` from the definitions
given to it or from `results` for the calling state."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest

import statemachines
from statemachines import Failure, simulate
from statemachines.errors import DefinitionError
from statemachines.loader import parse_yaml
from statemachines.model import MAX_CALL_DEPTH

HERE = Path(__file__).parent / "calls"
PARENT = statemachines.load(HERE / "parent.yaml")
CHILD = statemachines.load(HERE / "child.yaml")


def test_a_call_state_reads_its_definition_version_input_result_and_timeout() -> None:
    state = PARENT.state("ask")
    assert state.kind == "call"
    assert state.call is not None
    assert (state.call.definition, state.call.version) == ("child", None)
    assert state.call.result == "answer"
    assert state.call.timeout == timedelta(hours=1)
    assert statemachines.load(HERE / "defaults.yaml").state("ask").call.version == 2  # type: ignore[union-attr]
    assert PARENT.calls == ["child"]


def _problems(body: str) -> list[str]:
    text = f"name: p\ninitial: a\nstates:\n  a:\n{body}    on: {{done: b}}\n  b: {{final: true}}\n"
    with pytest.raises(DefinitionError) as caught:
        statemachines.load(text)
    return [f"{problem.line}: {problem.message}" for problem in caught.value.problems]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("    call: child\n    task: work\n", "5: state 'a' has both 'task' and 'call'"),
        ("    call: Child!\n", "5: call must name a definition"),
        ("    call: child\n    version: 0\n", "6: version must be an integer from 1"),
        ("    version: 2\n", "5: 'version' belongs with 'call'; state 'a' has no call"),
        ("    call: child\n    retry: {attempts: 2}\n", "6: 'retry' belongs with 'task'"),
        ("    call: child\n    compensate: undo\n", "6: 'compensate' belongs with 'task'"),
        ("    call: child\n    input: 'context.('\n", "6: "),
        ("    call: child\n    timeout: soon\n", "6: "),
    ],
)
def test_a_misused_call_is_a_problem_at_its_line(body: str, expected: str) -> None:
    problems = _problems(body)
    assert any(problem.startswith(expected) for problem in problems), problems


def test_a_call_state_without_done_is_reported_as_a_task_state_is() -> None:
    text = (
        "name: p\ninitial: a\nstates:\n  a:\n    call: child\n"
        "    on: {failed: b}\n  b: {final: true}\n"
    )
    with pytest.raises(DefinitionError, match="call state 'a' has no 'done' transition"):
        statemachines.load(text)


def test_the_json_schema_takes_a_call_state_and_refuses_call_with_task() -> None:
    schema = statemachines.json_schema()
    for name in ("parent.yaml", "child.yaml", "defaults.yaml", "recursive.yaml"):
        jsonschema.validate(parse_yaml((HERE / name).read_text()).data, schema)
    state = {"call": "child", "task": "work", "on": {"done": "b"}}
    for wrong in (state, {"version": 2, "on": {"go": "b"}}, {"call": "c", "retry": {}}):
        document = {"name": "p", "initial": "a", "states": {"a": wrong, "b": {"final": True}}}
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(document, schema)


def test_a_child_that_succeeds_fires_done_with_its_final_context_shaped_by_result() -> None:
    run = simulate(PARENT, data={"n": 2}, definitions=[CHILD], results={"work": {"x": 1}})
    assert (run.status, run.state) == ("succeeded", "answered")
    assert run.context == {"n": 2, "answer": {"n": 2, "hold": None, "x": 1}}
    assert ("done", "ask", "answered") in run.path


def test_a_child_that_fails_fires_failed_with_its_error_caught_by_type() -> None:
    results = {"work": Failure("bad number", "ValueError")}
    run = simulate(PARENT, data={"n": 2}, definitions={"child": CHILD}, results=results)
    assert run.state == "child_failed"
    failed = [entry for entry in run.history if entry.kind == "call" and entry.event == "failed"]
    assert failed[0].data["error"] == {"type": "ValueError", "message": "bad number"}


def test_a_waiting_child_makes_the_call_wait_until_its_timeout() -> None:
    data = {"n": 1, "hold": True}
    run = simulate(PARENT, ["after:timeout"], data=data, definitions=[CHILD])
    assert run.state == "timed_out"
    error = next(entry.data["error"] for entry in run.history if entry.event == "failed")
    assert error["type"] == "Timeout"


def test_an_event_leaving_the_calling_state_leaves_the_child_behind() -> None:
    run = simulate(PARENT, ["stop"], data={"n": 1, "hold": True}, definitions=[CHILD])
    assert run.state == "stopped"


def test_results_for_the_calling_state_stand_for_the_child() -> None:
    run = simulate(PARENT, data={"n": 1}, results={"ask": {"y": 5}})
    assert run.context["answer"] == {"y": 5}
    run = simulate(PARENT, data={"n": 1}, results={"ask": Failure("no", "ValueError")})
    assert run.state == "child_failed"


def test_a_definition_not_given_fails_the_call_with_call_error() -> None:
    run = simulate(PARENT, data={"n": 1})
    assert (run.status, run.state) == ("failed", "other_failure")
    failed = [entry for entry in run.history if entry.event == "failed"]
    assert failed[0].data["error"]["type"] == "CallError"


def test_calls_nest_at_most_max_call_depth_deep() -> None:
    recursive = statemachines.load(HERE / "recursive.yaml")
    run = simulate(recursive, definitions=[recursive])
    assert run.status == "succeeded"
    levels, context = 0, run.context
    while "inner" in context:
        levels, context = levels + 1, context["inner"]
    assert levels == MAX_CALL_DEPTH
    assert context["level"] == MAX_CALL_DEPTH

"""`foreach` with `call:`: a child instance per item instead of a task, read with its
problems at their lines and in the JSON Schema, drawn with the link to the called
definition, and run by `simulate` (children from `definitions`, or answers from `results`
under the foreach's name, one per item) with the concurrency, ordering and tolerance of a
foreach of tasks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import jsonschema
import pytest

import diagrams
import statemachines
from statemachines import DefinitionError, Failure, simulate
from statemachines.loader import parse_yaml

CHILD = statemachines.load("""\
name: item_child
initial: work
states:
  work:
    task: item.work
    on:
      done:
        - {to: hold, if: context.hold}
        - end
      failed:
        Refused: refused
  hold:
    on: {finish: end}
  end: {final: true}
  refused:
    final: failed
    error: {type: Refused, message: "'item ' + str(context.n) + ' refused'"}
""")
PARENT = """\
name: item_parent
initial: fan
states:
  fan:
    foreach:
      items: context.items
      call: item_child
      input: "{{'n': item, 'at': index, 'hold': item in context.holding}}"
      concurrency: 5
      tolerate: {tolerate}
      result: answers
      timeout: 1h
    on:
      done: {{to: finished, assign: {{failures: event.failures}}}}
      failed: {{to: too_many, assign: {{failures: event.failures}}}}
      stop: stopped
  finished: {{final: true}}
  too_many: {{final: failed}}
  stopped: {{final: true}}
"""


def parent(tolerate: Any = 0) -> statemachines.Definition:
    return statemachines.load(PARENT.format(tolerate=tolerate))


def refusing(*refused: int) -> Any:
    def work(data: dict[str, Any]) -> Any:
        return Failure("no", "Refused") if data["n"] in refused else {"doubled": data["n"] * 2}

    return work


def test_a_foreach_reads_its_call_version_input_timeout_and_is_listed_in_calls() -> None:
    state = parent().state("fan")
    assert state.foreach is not None and state.foreach.task is None
    call = state.foreach.call
    assert call is not None
    assert (call.definition, call.version, call.result) == ("item_child", None, "answers")
    assert call.timeout == timedelta(hours=1)
    assert call.input is not None and "index" in call.input.text
    assert state.foreach.result == "answers"
    assert parent().calls == ["item_child"]
    assert parent().tasks == []


def _problems(body: str) -> list[str]:
    text = (
        "name: p\ninitial: a\nstates:\n  a:\n    foreach:\n      items: context.xs\n"
        f"{body}    on: {{done: b}}\n  b: {{final: true}}\n"
    )
    with pytest.raises(DefinitionError) as caught:
        statemachines.load(text)
    return [f"{problem.line}: {problem.message}" for problem in caught.value.problems]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("      task: work\n      call: child\n", "8: foreach has both 'task' and 'call'"),
        ("      concurrency: 2\n", "6: foreach needs 'task' (a task per item) or 'call'"),
        ("      call: Child!\n", "7: call must name a definition"),
        ("      call: child\n      retry: {attempts: 2}\n", "8: 'retry' belongs with 'task'"),
        ("      task: work\n      version: 2\n", "8: 'version' belongs with 'call'"),
        ("      call: child\n      version: 0\n", "8: version must be an integer from 1"),
        ("      call: child\n      compensate: undo\n", "8: unknown key 'compensate'"),
        ("      call: child\n      input: 'item.('\n", "8: "),
        ("      call: child\n      timeout: soon\n", "8: "),
    ],
)
def test_a_misused_call_in_a_foreach_is_a_problem_at_its_line(body: str, expected: str) -> None:
    problems = _problems(body)
    assert any(problem.startswith(expected) for problem in problems), problems


def test_the_json_schema_takes_a_foreach_that_calls_and_refuses_task_with_call() -> None:
    schema = statemachines.json_schema()
    jsonschema.validate(parse_yaml(PARENT.format(tolerate=1)).data, schema)
    for wrong in (
        {"items": "context.xs", "call": "c", "task": "t"},
        {"items": "context.xs"},
        {"items": "context.xs", "call": "c", "retry": {"attempts": 2}},
        {"items": "context.xs", "task": "t", "version": 2},
    ):
        state = {"foreach": wrong, "on": {"done": "b"}}
        document = {"name": "p", "initial": "a", "states": {"a": state, "b": {"final": True}}}
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(document, schema)


def test_each_item_runs_a_child_and_the_results_keep_item_order() -> None:
    items = list(range(50))
    run = simulate(
        parent(),
        data={"items": items, "holding": []},
        definitions=[CHILD],
        results={"item.work": refusing()},
    )
    assert (run.status, run.state) == ("succeeded", "finished")
    assert [answer["doubled"] for answer in run.context["answers"]] == [n * 2 for n in items]
    assert [answer["at"] for answer in run.context["answers"]] == items
    done = [e for e in run.history if e.kind == "call" and e.event == "done" and not e.to_state]
    assert [entry.data["index"] for entry in done] == items


def test_tolerated_failures_are_recorded_with_their_error_type() -> None:
    run = simulate(
        parent(tolerate="20%"),
        data={"items": list(range(10)), "holding": []},
        definitions=[CHILD],
        results={"item.work": refusing(2, 5)},
    )
    assert run.state == "finished"
    failures = run.context["failures"]
    assert [(f["index"], f["error"]["type"]) for f in failures] == [(2, "Refused"), (5, "Refused")]
    assert failures[0]["error"]["message"] == "item 2 refused"
    assert run.context["answers"][2] is None


def test_one_failure_more_than_tolerated_fails_the_foreach_with_items_failed() -> None:
    run = simulate(
        parent(tolerate=1),
        data={"items": list(range(10)), "holding": []},
        definitions=[CHILD],
        results={"item.work": refusing(0, 1)},
    )
    assert (run.status, run.state) == ("failed", "too_many")
    failed = [e for e in run.history if e.event == "failed" and e.to_state == "too_many"]
    assert failed[0].data["error"]["type"] == "ItemsFailed"
    assert [failure["index"] for failure in run.context["failures"]] == [0, 1]


def test_results_under_the_foreachs_name_answer_each_item_from_its_input() -> None:
    def answer(child_input: dict[str, Any]) -> Any:
        return Failure("gone", "Lost") if child_input["n"] == 3 else {"seen": child_input["n"]}

    run = simulate(
        parent(tolerate=1), data={"items": [1, 2, 3], "holding": []}, results={"fan": answer}
    )
    assert run.context["answers"] == [{"seen": 1}, {"seen": 2}, None]
    assert run.context["failures"][0]["error"] == {"type": "Lost", "message": "gone"}


def test_an_item_that_is_no_json_object_fails_with_call_error() -> None:
    definition = statemachines.load(
        PARENT.format(tolerate=1).replace("      input: \"{'n': item", '      # "')
    )
    run = simulate(definition, data={"items": [{"n": 2}, 7]}, definitions=[CHILD])
    assert run.state == "finished"
    [failure] = run.context["failures"]
    assert (failure["index"], failure["error"]["type"]) == (1, "CallError")


def test_a_waiting_child_fails_its_item_at_its_timeout_and_the_others_go_on() -> None:
    run = simulate(
        parent(tolerate=1),
        ["after:timeout:1"],
        data={"items": [1, 2, 3], "holding": [2]},
        definitions=[CHILD],
    )
    assert run.state == "finished"
    [failure] = run.context["failures"]
    assert (failure["index"], failure["error"]["type"]) == (1, "Timeout")


def test_leaving_the_foreach_leaves_its_waiting_children_behind() -> None:
    run = simulate(
        parent(), ["stop"], data={"items": [1, 2], "holding": [1, 2]}, definitions=[CHILD]
    )
    assert (run.status, run.state) == ("succeeded", "stopped")


def test_a_foreach_that_calls_is_drawn_with_the_call_and_its_link() -> None:
    svg = diagrams.render(parent(tolerate=2), "dot").decode()
    assert "call item_child" in svg
    assert "/api/definitions/item_child/diagram.svg" in svg
    assert "tolerate 2" in svg
    mermaid = diagrams.render(parent(), "mermaid").decode()
    assert "call item_child" in mermaid

"""`foreach: {tolerate: N | "P%"}`: failed items up to the tolerance are recorded and passed
over, `done` carries the results in item order with the failures; one more failure fires
`failed` at once (`ItemsFailed`). Read by the loader, the JSON Schema and the diagrams."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest

import diagrams
import statemachines
from statemachines import DefinitionError, Failure, compile_definition, simulate
from statemachines.loader import parse_yaml
from statemachines.model import Tolerance

NOW = datetime(2026, 1, 1, tzinfo=UTC)

FANNING = """\
name: fanning
initial: send
states:
  send:
    foreach:
      items: context.people
      task: mail.send
      concurrency: {concurrency}
{tolerate}      result: receipts
    on:
      done: {{to: sent, assign: {{bounced: event.failures}}}}
      failed:
        ItemsFailed: {{to: too_many, assign: {{why: event.error.message, bounced: event.failures}}}}
        "*": {{to: broken, assign: {{why: event.error.type, index: event.index}}}}
  sent: {{final: true}}
  too_many: {{final: failed}}
  broken: {{final: failed}}
"""


def fanning(tolerate: str | None, concurrency: int = 2) -> statemachines.Definition:
    line = "" if tolerate is None else f"      tolerate: {tolerate}\n"
    return statemachines.load(FANNING.format(tolerate=line, concurrency=concurrency))


class Mailer:
    """A handler for `mail.send` that bounces the people whose name starts with 'bad'."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def __call__(self, person: str) -> Any:
        self.sent.append(person)
        if person.startswith("bad"):
            return Failure(f"no mailbox for {person}", "Bounce")
        return f"sent:{person}"


def _bounce(index: int, person: str) -> dict[str, Any]:
    return {"index": index, "error": {"type": "Bounce", "message": f"no mailbox for {person}"}}


# -- reading -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "tolerance"),
    [
        ("0", Tolerance(count=0)),
        ("3", Tolerance(count=3)),
        ("10000", Tolerance(count=10_000)),
        ("10%", Tolerance(percent="10")),
        ('"2.5%"', Tolerance(percent="2.5")),
        ("0%", Tolerance(percent="0")),
        ("100%", Tolerance(percent="100")),
    ],
)
def test_a_count_or_a_percentage_is_read(written: str, tolerance: Tolerance) -> None:
    definition = fanning(written)
    foreach = definition.state("send").foreach
    assert foreach is not None and foreach.tolerate == tolerance
    data = parse_yaml(FANNING.format(tolerate=f"      tolerate: {written}\n", concurrency=2), "x")
    jsonschema.validate(data.data, statemachines.json_schema())


def test_without_tolerate_nothing_is_tolerated() -> None:
    foreach = fanning(None).state("send").foreach
    assert foreach is not None and foreach.tolerate is None


@pytest.mark.parametrize(
    "written", ["-1", "10001", "true", "2.5", "101%", '"-5%"', "ten", '"10 %"', "null", "[1]"]
)
def test_anything_else_is_a_problem_at_its_line(written: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        fanning(written)
    problems = [(p.line, p.column, p.message) for p in caught.value.problems]
    assert len(problems) == 1
    line, column, message = problems[0]
    assert (line, column) == (9, 17)
    assert message.startswith(
        "tolerate must be a number of items from 0 to 10000 or a percentage from 0% to 100% "
        "such as '10%', not "
    )
    data = parse_yaml(FANNING.format(tolerate=f"      tolerate: {written}\n", concurrency=2), "x")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data.data, statemachines.json_schema())


@pytest.mark.parametrize(
    ("tolerance", "items", "allowed"),
    [
        (Tolerance(count=3), 2, 3),
        (Tolerance(percent="10"), 25, 2),  # rounded down
        (Tolerance(percent="10"), 9, 0),
        (Tolerance(percent="29"), 100, 29),  # exactly, not 28.999...
        (Tolerance(percent="2.5"), 40, 1),
        (Tolerance(percent="100"), 7, 7),
        (Tolerance(percent="50"), 0, 0),
    ],
)
def test_a_percentage_counts_the_items_at_fan_out_rounded_down(
    tolerance: Tolerance, items: int, allowed: int
) -> None:
    assert tolerance.allowed(items) == allowed


# -- running -------------------------------------------------------------------------------


def test_tolerated_failures_are_recorded_and_done_has_the_results_in_item_order() -> None:
    people = ["ann", "bad-bo", "cy", "bad-di", "ed"]
    mailer = Mailer()
    run = simulate(fanning("2"), data={"people": people}, results={"mail.send": mailer})
    assert (run.state, run.status) == ("sent", "succeeded")
    assert sorted(mailer.sent) == sorted(people)
    assert run.context["receipts"] == ["sent:ann", None, "sent:cy", None, "sent:ed"]
    assert run.context["bounced"] == [_bounce(1, "bad-bo"), _bounce(3, "bad-di")]
    done = next(entry for entry in run.history if entry.event == "done" and entry.to_state)
    assert done.data == {"results": run.context["receipts"], "failures": run.context["bounced"]}
    tolerated = [entry.data for entry in run.history if entry.event == "failed"]
    assert [(data["index"], data["tolerated"]) for data in tolerated] == [(1, True), (3, True)]
    assert tolerated[0]["error"] == {"type": "Bounce", "message": "no mailbox for bad-bo"}


def test_a_percentage_of_the_items_is_tolerated() -> None:
    people = ["ann", "bad-bo", "cy", "bad-di", "ed"]  # 40% of 5 items: 2
    run = simulate(fanning("40%"), data={"people": people}, results={"mail.send": Mailer()})
    assert run.state == "sent"
    assert [failure["index"] for failure in run.context["bounced"]] == [1, 3]
    one_too_many = simulate(
        fanning("39%"), data={"people": people}, results={"mail.send": Mailer()}
    )
    assert one_too_many.state == "too_many"


def test_one_failure_more_than_tolerated_fails_at_once_and_drops_the_other_items() -> None:
    people = ["bad-al", "ann", "bad-bo", "cy", "dee", "ed"]
    mailer = Mailer()
    definition = fanning("1", concurrency=1)
    run = simulate(definition, data={"people": people}, results={"mail.send": mailer})
    assert (run.state, run.status) == ("too_many", "failed")
    assert mailer.sent == ["bad-al", "ann", "bad-bo"]  # nothing started after the failure
    assert run.context["why"] == "2 of 6 items failed, more than the 1 tolerated"
    assert run.context["bounced"] == [_bounce(0, "bad-al"), _bounce(2, "bad-bo")]
    assert "receipts" not in run.context
    failed = run.history[-1]
    assert (failed.event, failed.from_state, failed.to_state) == ("failed", "send", "too_many")
    assert failed.data["error"]["type"] == "ItemsFailed"
    assert failed.data["index"] == 2


def test_items_still_running_get_no_say_once_too_many_failed() -> None:
    """The failure that goes over the tolerance leaves the state: the other items' tasks
    are dropped with it, and an answer of one of them that comes anyway is stale."""
    compiled = compile_definition(fanning("0", concurrency=3))
    started = compiled.start({"people": ["a", "b", "c"]}, NOW)
    assert [task.item for task in started.tasks] == [0, 1, 2]
    activation = started.tasks[0].activation
    error = {"type": "Bounce", "message": "no"}
    step = compiled.task_failed(started.snapshot, ("send", activation, 1), error, 1, NOW)
    assert step.state == "too_many"
    assert ("send", activation) in step.cancelled
    late = compiled.task_done(step.snapshot, ("send", activation, 0), "ok", NOW)
    assert late.history[-1].kind == "stale"
    late = compiled.task_failed(step.snapshot, ("send", activation, 2), error, 1, NOW)
    assert late.history[-1].kind == "stale"


def test_tolerate_zero_fails_at_the_first_failure_with_items_failed() -> None:
    run = simulate(
        fanning("0"), data={"people": ["ann", "bad-bo"]}, results={"mail.send": Mailer()}
    )
    assert run.state == "too_many"
    assert run.context["why"] == "1 of 2 items failed, more than the 0 tolerated"
    assert run.context["bounced"] == [_bounce(1, "bad-bo")]


def test_without_tolerate_the_first_failure_fails_with_its_own_error_as_before() -> None:
    run = simulate(
        fanning(None), data={"people": ["ann", "bad-bo"]}, results={"mail.send": Mailer()}
    )
    assert run.state == "broken"
    assert run.context["why"] == "Bounce"
    assert run.context["index"] == 1
    failed = run.history[-1]
    assert failed.data == {
        "error": {"type": "Bounce", "message": "no mailbox for bad-bo"},
        "attempts": 1,
        "index": 1,
    }


def test_without_a_result_key_results_and_failures_are_merged_into_the_context() -> None:
    source = FANNING.format(tolerate="      tolerate: 5\n", concurrency=2).replace(
        "      result: receipts\n", ""
    )
    run = simulate(
        statemachines.load(source),
        data={"people": ["bad-al", "ann"]},
        results={"mail.send": Mailer()},
    )
    assert run.context["results"] == [None, "sent:ann"]
    assert run.context["failures"] == [_bounce(0, "bad-al")]


def test_an_empty_list_is_done_at_once_with_no_failures() -> None:
    run = simulate(fanning("10%"), data={"people": []})
    assert (run.state, run.context["receipts"], run.context["bounced"]) == ("sent", [], [])


def test_a_foreach_with_tolerate_is_drawn_with_it() -> None:
    definition = fanning("10%")
    assert "send : for each in context.people, 2 at a time, tolerate 10%" in (
        diagrams.to_mermaid(definition)
    )
    assert "tolerate 10%" in diagrams.to_dot(definition)
    assert "tolerate" not in diagrams.to_mermaid(fanning(None))

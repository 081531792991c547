"""Bounds a definition is held to: a version that fits the database's 32-bit column, and a
`foreach` whose items and tasks at a time are limited, by the loader and at run time alike."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import statemachines
from statemachines import DefinitionError, Problem, compile_definition, simulate

NOW = datetime(2026, 1, 1, tzinfo=UTC)
FOREACH = """\
name: fanning
initial: send
states:
  send:
    foreach:
      items: context.people
      task: mail.send
{extra}    on:
      done: sent
      failed: {{to: refused, assign: {{reason: event.error.message}}}}
  sent: {{final: true}}
  refused: {{final: failed}}
"""


def _problems(text: str) -> list[Problem]:
    with pytest.raises(DefinitionError) as caught:
        statemachines.load(text)
    return caught.value.problems


@pytest.mark.parametrize("version", ["2147483648", "99999999999999999999"])
def test_a_version_past_the_32_bit_column_is_refused_at_its_place(version: str) -> None:
    problems = _problems(
        f"name: x\nversion: {version}\ninitial: a\nstates: {{a: {{final: true}}}}\n"
    )
    assert [(p.line, p.column, p.message) for p in problems] == [
        (2, 10, "version must be an integer from 1 to 2147483647")
    ]


def test_the_largest_32_bit_version_is_accepted() -> None:
    text = "name: x\nversion: 2147483647\ninitial: a\nstates: {a: {final: true}}\n"
    assert statemachines.load(text).version == 2_147_483_647


def test_a_foreach_concurrency_over_a_thousand_is_refused_at_its_place() -> None:
    problems = _problems(FOREACH.format(extra="      concurrency: 1001\n"))
    assert [(p.line, p.column, p.message) for p in problems] == [
        (8, 20, "concurrency must be an integer from 1 to 1000")
    ]


def test_a_foreach_without_concurrency_schedules_ten_items_at_a_time() -> None:
    compiled = compile_definition(statemachines.load(FOREACH.format(extra="")))
    started = compiled.start({"people": [f"p{n}" for n in range(25)]}, NOW)
    assert [task.item for task in started.tasks] == list(range(10))


def test_a_foreach_over_more_than_ten_thousand_items_fails_before_any_task() -> None:
    compiled = compile_definition(statemachines.load(FOREACH.format(extra="")))
    started = compiled.start({"people": list(range(10_001))}, NOW)
    assert started.tasks == []
    assert (started.state, started.status) == ("refused", "failed")
    assert started.context["reason"] == "foreach items has 10001 items, more than 10000"


def test_simulate_fails_a_foreach_over_too_many_items_as_the_engine_does() -> None:
    run = simulate(
        statemachines.load(FOREACH.format(extra="")), data={"people": list(range(10_001))}
    )
    assert (run.state, run.status) == ("refused", "failed")
    assert run.context["reason"] == "foreach items has 10001 items, more than 10000"


def test_a_foreach_over_exactly_ten_thousand_items_runs() -> None:
    compiled = compile_definition(statemachines.load(FOREACH.format(extra="")))
    started = compiled.start({"people": list(range(10_000))}, NOW)
    assert (started.state, started.status, len(started.tasks)) == ("send", "running", 10)


LONG_NAME, LONG_STATE, LONG_TASK = "n" + "a" * 200, "s" + "a" * 400, "t" + "a" * 200
LONG_EVENT, LONG_DURATION = "e" + "a" * 400, "1ms" * 34


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (
            f"name: {LONG_NAME}\ninitial: a\nstates: {{a: {{on: {{go: b}}}}, "
            "b: {final: true}}\n",
            (1, 7),
            "name is 201 characters, over the limit of 200",
        ),
        (
            f"name: x\ninitial: {LONG_STATE}\n"
            f"states: {{{LONG_STATE}: {{on: {{go: b}}}}, b: {{final: true}}}}\n",
            (3, 10),
            f"the path of state {LONG_STATE[:40]!r} is 401 characters, over the limit of 400",
        ),
        (
            f"name: x\ninitial: a\nstates: {{a: {{task: {LONG_TASK}, on: {{done: b}}}}, "
            "b: {final: true}}\n",
            (3, 20),
            "task name is 201 characters, over the limit of 200",
        ),
        (
            f"name: x\ninitial: a\nstates: {{a: {{on: {{{LONG_EVENT}: b}}}}, "
            "b: {final: true}}\n",
            (3, 19),
            "event name is 401 characters, over the limit of 400",
        ),
        (
            f"name: x\ninitial: a\nstates: {{a: {{after: {{'{LONG_DURATION}': b}}}}, "
            "b: {final: true}}\n",
            (3, 22),
            "duration is 102 characters, over the limit of 100",
        ),
    ],
    ids=["name", "state path", "task name", "event name", "duration"],
)
def test_text_longer_than_the_column_that_keeps_it_is_refused_at_its_place(
    text: str, where: tuple[int, int], message: str
) -> None:
    assert [((p.line, p.column), p.message) for p in _problems(text)] == [(where, message)]

"""Retry by error type: `retry` as a list of policies, each with its `errors` (the one without
them last, for every other type); first match wins, each policy counts its own failures, a
failure no policy takes is not retried. The mapping form is one policy for every type."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import diagrams
import statemachines
from statemachines import DefinitionError, Failure, Problem, Retry, RetryPolicy, simulate
from statemachines.loader import parse_yaml

TYPED = Path(__file__).parent / "valid" / "typed_retry.yaml"
SCHEMA = jsonschema.Draft202012Validator(statemachines.json_schema())
TIMEOUT, REFUSED, OTHER = Failure("slow", "Timeout"), Failure("no", "Refused"), Failure("x")


def problems_of(source: str) -> list[Problem]:
    with pytest.raises(DefinitionError) as caught:
        statemachines.load(source)
    return caught.value.problems


def _retry_of(retry: str) -> str:
    return (
        "name: t\ninitial: a\nstates:\n  a:\n    task: work\n"
        f"    retry: {retry}\n    on: {{done: end}}\n  end: {{final: true}}\n"
    )


def test_each_policy_is_read_with_its_error_types_in_order() -> None:
    definition = statemachines.load(TYPED)
    task = definition.state("pay").task
    assert task is not None
    assert [(p.errors, p.attempts, p.delay) for p in task.retry.policies] == [
        (("Timeout",), 4, timedelta(seconds=10)),
        (("Refused",), 1, timedelta(seconds=1)),
        ((), 2, timedelta(seconds=5)),
    ]
    assert task.retry.attempts == 5  # the first, plus 3 timeouts and 1 other error retried
    assert [task.retry.policy_for(kind) for kind in ("Timeout", "Refused", "KeyError")] == [
        0,
        1,
        2,
    ]
    label = definition.state("ship.label.label").task
    assert label is not None and label.retry.policy_for("KeyError") is None
    foreach = definition.state("notify").foreach
    assert foreach is not None and foreach.task.retry.policy_for("Bounced") == 0


def test_the_mapping_form_is_one_policy_for_every_type_and_stored_as_before() -> None:
    task = statemachines.load(_retry_of("{attempts: 3, delay: 2s}")).state("a").task
    assert task is not None
    assert task.retry == Retry((RetryPolicy(attempts=3, delay=timedelta(seconds=2)),))
    assert not task.retry.typed
    stored = task.retry.to_json()
    assert stored == RetryPolicy(attempts=3, delay=timedelta(seconds=2)).to_json()
    assert Retry.from_json(stored) == task.retry
    typed = statemachines.load(TYPED).state("pay").task
    assert typed is not None and Retry.from_json(typed.retry.to_json()) == typed.retry


@pytest.mark.parametrize(
    ("retry", "line", "message"),
    [
        (
            "[{attempts: 2}, {errors: [Timeout], attempts: 3}]",
            6,
            "a policy without errors takes every other type: put it last",
        ),
        ("[{errors: [Time out]}]", 6, "error type 'Time out' must be a name like 'Timeout'"),
        (
            "[{errors: [Timeout]}, {errors: [Busy, Timeout]}]",
            6,
            "error type 'Timeout' is listed twice",
        ),
        ("[{errors: [], attempts: 2}]", 6, "errors must be a list of 1 to 50 error types"),
        ("[]", 6, "a list of retry policies has 1 to 20 entries"),
        ("{errors: [Timeout], attempts: 2}", 6, "errors belongs to a policy in a list"),
        ("[{errors: [Timeout], tries: 2}]", 6, "unknown key 'tries' in retry"),
        ("[{errors: [Timeout], attempts: 0}]", 6, "attempts must be an integer from 1 to 100"),
        ("[3]", 6, "a retry policy must be a mapping, not"),
        ("three", 6, "retry must be a policy or a list of policies, not"),
    ],
)
def test_a_malformed_policy_list_is_a_problem_at_its_line(
    retry: str, line: int, message: str
) -> None:
    problems = [(problem.line, problem.message) for problem in problems_of(_retry_of(retry))]
    assert any(at == line and message in text for at, text in problems), problems


def test_errors_in_the_mapping_form_is_one_problem() -> None:
    problems = problems_of(_retry_of("{errors: [Timeout], attempts: 2}"))
    assert [problem.message for problem in problems] == [
        "errors belongs to a policy in a list: write retry: [{errors: [...], ...}]"
    ]


def test_a_misplaced_catch_all_is_reported_at_its_own_line() -> None:
    source = _retry_of("\n      - {attempts: 2}\n      - {errors: [Timeout], attempts: 3}")
    problems = [(problem.line, problem.message) for problem in problems_of(source)]
    assert (7, "a policy without errors takes every other type: put it last") in problems


def test_the_schema_takes_both_forms_and_refuses_malformed_policies() -> None:
    assert list(SCHEMA.iter_errors(parse_yaml(TYPED.read_text(), "t.yaml").data)) == []
    for retry in ("{attempts: 2}", "[{errors: [Timeout]}, {attempts: 2}]"):
        assert list(SCHEMA.iter_errors(parse_yaml(_retry_of(retry), "t.yaml").data)) == []
    for retry in (
        "{errors: [Timeout], attempts: 2}",  # errors only in a list
        "[]",
        "[{errors: []}]",
        "[{errors: [Time out]}]",
        "[{errors: [Timeout, Timeout]}]",
        "[{errors: [Timeout], tries: 2}]",
    ):
        assert list(SCHEMA.iter_errors(parse_yaml(_retry_of(retry), "t.yaml").data)), retry
    policy = statemachines.json_schema()["$defs"]["typedRetryPolicy"]["properties"]
    assert all(schema.get("description") for schema in policy.values())


def _pay(outcomes: list[Any]) -> tuple[Any, int]:
    """Simulate `pay` answering each attempt from `outcomes`: the run and its call count."""
    calls: list[Any] = []

    def charge(data: Any) -> Any:
        calls.append(data)
        return outcomes[len(calls) - 1]

    results = {"payments.charge": charge, "shipping.label": {}}
    run = simulate(statemachines.load(TYPED), data={"people": []}, results=results)
    return run, len(calls)


@pytest.mark.parametrize(
    ("outcomes", "status", "attempts"),
    [
        ([TIMEOUT, TIMEOUT, TIMEOUT, {"ok": True}], "succeeded", 4),  # retried 3 times
        ([TIMEOUT, TIMEOUT, TIMEOUT, TIMEOUT], "failed", 4),
        ([REFUSED], "failed", 1),  # not retried
        ([OTHER, OTHER], "failed", 2),  # the catch-all: twice
        ([OTHER, REFUSED], "failed", 2),
        # Each policy counts its own: 3 timeouts and 1 other error, all retried.
        ([TIMEOUT, OTHER, TIMEOUT, TIMEOUT, {"ok": True}], "succeeded", 5),
        ([TIMEOUT, OTHER, TIMEOUT, OTHER], "failed", 4),
    ],
)
def test_simulate_retries_each_failure_by_its_own_policy(
    outcomes: list[Any], status: str, attempts: int
) -> None:
    run, calls = _pay(outcomes)
    assert (run.status, calls) == (status, attempts)
    if status == "failed":
        assert run.context == {"attempts": attempts, "type": outcomes[-1].type, "people": []}


def test_a_failure_no_policy_takes_is_not_retried_in_simulate() -> None:
    calls: list[Any] = []

    def label(data: Any) -> Any:
        calls.append(data)
        return Failure("no printer", "KeyError") if len(calls) == 1 else {}

    run = simulate(
        statemachines.load(TYPED),
        data={"people": []},
        results={"payments.charge": {}, "shipping.label": label},
    )
    assert (run.state, len(calls)) == ("broken", 1)


def test_a_foreach_item_is_retried_by_its_policies() -> None:
    sent: list[Any] = []

    def send(person: Any) -> Any:
        sent.append(person)
        return Failure("full", "Bounced") if sent.count(person) == 1 else {"to": person}

    run = simulate(
        statemachines.load(TYPED),
        data={"people": ["a", "b"]},
        results={"payments.charge": {}, "shipping.label": {}, "mail.send": send},
    )
    assert run.state == "paid"
    assert sent == ["a", "a", "b", "b"]


def test_diagrams_label_each_policy_with_its_attempts() -> None:
    definition = statemachines.load(TYPED)
    mark = "Timeout ×4, Refused ×1, others ×2"
    assert f"↻ {mark}" in diagrams.to_dot(definition)
    assert mark in diagrams.to_mermaid(definition)
    assert "Timeout/Busy ×3" in diagrams.to_mermaid(definition)
    single = statemachines.load(_retry_of("{attempts: 3}"))
    assert "↻ 3 attempts" in diagrams.to_dot(single)


def test_input_mismatch_is_retried_only_by_a_policy_that_names_it() -> None:
    every_type = Retry((RetryPolicy(attempts=3),))
    assert not every_type.after_failure("InputMismatch", (0,)).again
    assert every_type.after_failure("Timeout", (0,)).again
    named = Retry((RetryPolicy(attempts=2, errors=("InputMismatch",)), RetryPolicy(attempts=3)))
    assert named.after_failure("InputMismatch", (0, 0)).again

"""`failed: {TYPE: TRANSITIONS, ...}`: catching a failure by its error type, first match in
file order, `"*"` last for every other type; drawn with the type on the edge."""

from __future__ import annotations

import jsonschema
import pytest

import diagrams
import statemachines
from statemachines import Failure, simulate
from statemachines.errors import DefinitionError
from statemachines.loader import parse_yaml

PAYMENT = """\
name: payment
initial: pay
states:
  pay:
    task: payments.charge
    on:
      done: paid
      failed:
        Timeout: later
        payments.Declined:
          - {to: declined, if: event.attempts > 1, assign: {why: event.error.message}}
          - to: ask_again
        "*": broken
  later: {final: true}
  ask_again: {final: true}
  declined: {final: failed}
  broken: {final: failed}
  paid: {final: true}
"""


@pytest.mark.parametrize(
    ("failure", "attempts", "ends_in"),
    [
        (Failure("slow", "Timeout"), 1, "later"),
        (Failure("no funds", "payments.Declined"), 1, "ask_again"),
        (Failure("no funds", "payments.Declined"), 3, "declined"),
        (Failure("boom", "KeyError"), 1, "broken"),
    ],
)
def test_a_failure_goes_where_its_type_is_caught(
    failure: Failure, attempts: int, ends_in: str
) -> None:
    source = PAYMENT.replace(
        "    task: payments.charge\n",
        f"    task: payments.charge\n    retry: {{attempts: {attempts}, delay: 1s}}\n",
    )
    run = simulate(statemachines.load(source), results={"payments.charge": failure})
    assert run.active == [ends_in]
    if ends_in == "declined":
        assert run.context == {"why": "no funds"}


def test_the_by_type_form_is_in_the_schema_and_drawn_with_the_types() -> None:
    jsonschema.validate(parse_yaml(PAYMENT, "payment.yaml").data, statemachines.json_schema())
    text = diagrams.to_mermaid(statemachines.load(PAYMENT))
    assert "pay --> later : failed [Timeout]" in text
    assert "pay --> broken : failed [other errors]" in text


@pytest.mark.parametrize(
    ("failed", "message"),
    [
        ('{"*": end, Timeout: end}', "'*' catches every other type: put it last"),
        ("{Time out: end}", "error type 'Time out' must be a name like 'Timeout'"),
        ("{Timeout: nowhere}", "goes to 'nowhere', which is not a state"),
    ],
)
def test_a_malformed_catch_is_a_problem_at_its_line(failed: str, message: str) -> None:
    source = (
        "name: t\ninitial: a\nstates:\n  a:\n    task: work\n"
        f"    on:\n      done: end\n      failed: {failed}\n  end: {{final: true}}\n"
    )
    with pytest.raises(DefinitionError) as caught:
        statemachines.load(source)
    problems = [(problem.line, problem.message) for problem in caught.value.problems]
    assert any(line == 8 and message in text for line, text in problems), problems

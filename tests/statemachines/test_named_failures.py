"""Failures with a name: `final: failed` with `error: {type, message}`; the error an instance
ends with (`Run.error` of `simulate`); a parallel or compound state receiving its branch's or
child's own type, `BranchFailed` / `StateFailed` kept as the wrapper."""

from __future__ import annotations

import jsonschema
import pytest

import diagrams
import statemachines
from statemachines import Failure, simulate
from statemachines.errors import DefinitionError
from statemachines.loader import parse_yaml

CHECKOUT = """\
name: checkout
initial: pay
states:
  pay:
    task: payments.charge
    compensate: payments.refund
    on:
      done: confirm
      failed:
        Declined: {to: declined, assign: {reason: event.error.message}}
  confirm:
    on:
      confirm: done
      refuse: {to: refused, assign: {why: event.why}}
  declined:
    final: failed
    error:
      type: PaymentDeclined
      message: "'card declined: ' + context.reason"
  refused:
    final: failed
    error: {type: OrderRefused, message: event.why}
  done: {final: true}
"""

SHIPPING = """\
name: shipping
initial: ship
states:
  ship:
    parallel:
      pack: {task: warehouse.pack}
      pay:
        initial: charge
        states:
          charge: {task: payments.charge, on: {done: paid, failed: declined}}
          paid: {final: true}
          declined:
            final: failed
            error: {type: PaymentDeclined, message: "'no funds for ' + str(context.amount)"}
          broken: {final: failed}
        on: {broken: broken}
    on:
      done: shipped
      failed:
        PaymentDeclined: {to: unpaid, assign: {cause: event.error}}
  shipped: {final: true}
  unpaid: {final: failed, error: {type: Unpaid, message: event.error.message}}
"""


def load(text: str) -> statemachines.Definition:
    return statemachines.load(text)


def test_a_named_final_state_is_the_error_the_run_ends_with() -> None:
    run = simulate(load(CHECKOUT), results={"pay": Failure("insufficient funds", "Declined")})
    assert run.status == "failed"
    assert run.error == {
        "type": "PaymentDeclined",
        "message": "card declined: insufficient funds",
        "state": "declined",
        "seq": 2,
    }
    entry = run.history[run.error["seq"] - 1]  # seq counts the history from 1
    assert (entry.event, entry.to_state) == ("failed", "declined")


def test_the_message_sees_the_event_that_entered_the_final_state() -> None:
    run = simulate(load(CHECKOUT), [("refuse", {"why": "out of stock"})])
    assert run.error is not None
    assert (run.error["type"], run.error["message"]) == ("OrderRefused", "out of stock")
    assert run.error["state"] == "refused" and run.error["seq"] == 3


def test_an_unhandled_failure_is_the_error_with_its_own_type_and_where_it_arose() -> None:
    run = simulate(load(CHECKOUT), results={"pay": Failure("upstream down", "ConnectionError")})
    assert run.status == "failed"
    assert run.error == {
        "type": "ConnectionError",
        "message": "upstream down",
        "state": "pay",
        "seq": 2,
    }
    assert run.history[1].event == "failed" and run.history[1].from_state == "pay"


def test_an_unnamed_failed_final_state_is_a_state_failed_error() -> None:
    source = "name: t\ninitial: a\nstates:\n  a: {on: {stop: no}}\n  no: {final: failed}\n"
    run = simulate(load(source), ["stop"])
    assert run.error == {
        "type": "StateFailed",
        "message": "the instance ended in 'no'",
        "state": "no",
        "seq": 2,
    }


def test_a_run_that_succeeds_or_is_still_running_has_no_error() -> None:
    assert simulate(load(CHECKOUT), ["confirm"]).error is None
    assert simulate(load(CHECKOUT)).error is None


def test_the_error_is_kept_while_compensating_and_shown_once_failed() -> None:
    source = CHECKOUT.replace("      confirm: done\n", "      confirm: done\n      fail: boom\n")
    source = source.replace("  done: {final: true}\n", "  done: {final: true}\n  boom:\n")
    source = source.replace("  boom:\n", "  boom: {task: explode, on: {done: done}}\n")
    run = simulate(load(source), ["fail"], results={"explode": Failure("kaput", "Boom")})
    assert run.status == "failed"
    assert run.error is not None and run.error["type"] == "Boom" and run.error["state"] == "boom"
    assert [entry.kind for entry in run.history][-2:] == ["compensate", "compensate"]
    assert run.history[run.error["seq"] - 1].event == "failed"


def test_a_message_that_fails_to_evaluate_keeps_the_type_and_a_plain_message() -> None:
    source = CHECKOUT.replace("message: event.why", "message: event.why.upper")
    run = simulate(load(source), [("refuse", {"why": "late"})])
    assert run.error is not None
    assert (run.error["type"], run.error["message"]) == (
        "OrderRefused",
        "the instance ended in 'refused'",
    )
    assert [entry.kind for entry in run.history][-1] == "error"  # the message's, after
    entry = run.history[run.error["seq"] - 1]  # the transition into `refused`
    assert (entry.event, entry.to_state) == ("refuse", "refused")


def test_a_parallel_state_catches_the_branch_s_own_type() -> None:
    run = simulate(load(SHIPPING), data={"amount": 12}, results={"charge": Failure("no")})
    assert run.state == "unpaid" and run.status == "failed"
    cause = run.context["cause"]
    assert cause == {
        "type": "PaymentDeclined",
        "message": "no funds for 12",
        "state": "ship.pay.declined",
        "branch": "pay",
        "wrapper": "BranchFailed",
    }
    assert run.error is not None
    assert (run.error["type"], run.error["message"]) == ("Unpaid", "no funds for 12")


def test_an_unnamed_failed_branch_is_still_branch_failed() -> None:
    waiting = "pack: {initial: w, states: {w: {on: {go: x}}, x: {final: true}}}"
    source = SHIPPING.replace("pack: {task: warehouse.pack}", waiting)
    run = simulate(load(source), ["broken"], results={"charge": {}})
    assert run.status == "failed"
    assert run.error == {
        "type": "BranchFailed",
        "message": "branch 'pay' ended in 'broken'",
        "state": "ship.pay.broken",
        "seq": 4,
        "details": {"branch": "pay"},
    }
    entry = run.history[run.error["seq"] - 1]
    assert (entry.event, entry.from_state) == ("failed", "ship")
    assert entry.data["error"]["type"] == "BranchFailed"


def test_an_uncaught_named_branch_failure_ends_the_run_with_the_branch_s_error() -> None:
    source = SHIPPING.replace(
        "        PaymentDeclined: {to: unpaid, assign: {cause: event.error}}\n",
        "        Other: unpaid\n",
    )
    run = simulate(load(source), data={"amount": 3}, results={"charge": Failure("no")})
    assert run.error is not None
    assert run.error["type"] == "PaymentDeclined" and run.error["state"] == "ship.pay.declined"
    assert run.error["details"] == {"branch": "pay", "wrapper": "BranchFailed"}
    entry = run.history[run.error["seq"] - 1]
    assert (entry.event, entry.from_state) == ("failed", "ship")


def test_a_compound_state_catches_its_child_s_own_type() -> None:
    source = """\
name: phases
initial: review
states:
  review:
    initial: check
    states:
      check: {on: {reject: rejected}}
      rejected: {final: failed, error: {type: Rejected, message: "'by ' + event.by"}}
    on:
      done: fine
      failed:
        Rejected: {to: appeal, assign: {error: event.error}}
  appeal: {on: {give_up: fine}}
  fine: {final: true}
"""
    run = simulate(load(source), [("reject", {"by": "ana"})])
    assert run.state == "appeal"
    assert run.context["error"] == {
        "type": "Rejected",
        "message": "by ana",
        "state": "review.rejected",
        "wrapper": "StateFailed",
    }


# -- the language ------------------------------------------------------------------------------
def _problems(state: str) -> list[tuple[int, str]]:
    source = f"name: t\ninitial: a\nstates:\n  a: {{on: {{go: end}}}}\n  end:\n{state}"
    with pytest.raises(DefinitionError) as caught:
        statemachines.load(source)
    return [(problem.line, problem.message) for problem in caught.value.problems]


@pytest.mark.parametrize(
    ("state", "line", "message"),
    [
        (
            "    final: true\n    error: {type: Declined}\n",
            7,
            "'error' belongs with 'final: failed'; state 'end' is no failed final state",
        ),
        (
            "    on: {go: a}\n    error: {type: Declined}\n",
            7,
            "'error' belongs with 'final: failed'",
        ),
        ("    final: failed\n    error: {message: \"'x'\"}\n", 7, "error needs 'type'"),
        (
            "    final: failed\n    error:\n      type: Payment Declined\n",
            8,
            "error type 'Payment Declined' must be a name like 'PaymentDeclined'",
        ),
        ("    final: failed\n    error: {type: 12}\n", 7, "error type 12 must be a name"),
        ("    final: failed\n    error: Declined\n", 7, "error must be a mapping, not text"),
        (
            "    final: failed\n    error: {type: Declined, code: 4}\n",
            7,
            "unknown key 'code' in error",
        ),
        (
            "    final: failed\n    error:\n      type: Declined\n      message: card declined\n",
            9,
            "for fixed text, quote it inside: \"'card declined'\"",
        ),
        (
            "    final: failed\n    error:\n      type: Declined\n      message: contxt.why\n",
            9,
            "unknown name 'contxt'",
        ),
    ],
)
def test_a_misplaced_or_malformed_error_is_a_problem_at_its_line(
    state: str, line: int, message: str
) -> None:
    problems = _problems(state)
    assert any(at == line and message in text for at, text in problems), problems


def test_a_message_may_be_fixed_text_quoted_inside_or_a_number() -> None:
    source = CHECKOUT.replace("message: event.why", "message: \"'refused'\"")
    run = simulate(load(source), [("refuse", {"why": "x"})])
    assert run.error is not None and run.error["message"] == "refused"
    source = CHECKOUT.replace("message: event.why", "message: 404")
    run = simulate(load(source), [("refuse", {"why": "x"})])
    assert run.error is not None and run.error["message"] == "404"
    source = CHECKOUT.replace(", message: event.why", "")
    run = simulate(load(source), [("refuse", {"why": "x"})])
    assert run.error is not None and run.error["message"] == "the instance ended in 'refused'"


def test_the_error_is_in_the_schema_and_drawn_with_its_type() -> None:
    schema = statemachines.json_schema()
    jsonschema.validate(parse_yaml(CHECKOUT, "checkout.yaml").data, schema)
    jsonschema.validate(parse_yaml(SHIPPING, "shipping.yaml").data, schema)
    validator = jsonschema.Draft202012Validator(schema)
    base = {"name": "x", "initial": "a", "states": {"a": {"on": {"go": "b"}}}}
    for wrong in (
        {"final": True, "error": {"type": "Declined"}},
        {"on": {"go": "a"}, "error": {"type": "Declined"}},
        {"final": "failed", "error": {"message": "'x'"}},
        {"final": "failed", "error": {"type": "Bad Name"}},
        {"final": "failed", "error": {"type": "Declined", "code": 1}},
    ):
        document = {**base, "states": {**base["states"], "b": wrong}}
        assert not validator.is_valid(document), wrong
    fine = {"final": "failed", "error": {"type": "Declined", "message": "context.why"}}
    assert validator.is_valid({**base, "states": {**base["states"], "b": fine}})
    assert "final, failed (PaymentDeclined)" in diagrams.to_mermaid(load(CHECKOUT))

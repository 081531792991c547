"""Catching a task's failure by its error type on the durable engine (SQLite and
PostgreSQL): a handler's exception class names the type; a timed-out attempt is `Timeout`."""

from __future__ import annotations

from typing import Any

from engine import Engine

CHARGE = """\
name: charge
initial: pay
states:
  pay:
    task: payments.charge
    timeout: 30s
    on:
      done: paid
      failed:
        Timeout: later
        Declined: declined
        "*": broken
  later: {final: true}
  declined: {final: failed}
  broken: {final: failed}
  paid: {final: true}
"""


class Declined(Exception):
    """A refusal from the payment provider."""


def test_each_failure_type_goes_where_it_is_caught(engine: Engine, clock: Any) -> None:
    engine.deploy(CHARGE)
    outcomes: dict[str, Any] = {}

    @engine.task("payments.charge")
    def charge(data: dict[str, Any]) -> Any:
        what = data["how"]
        if what == "refused":
            raise Declined("card refused")
        if what == "slow":
            clock.advance(45)  # past the 30s timeout
            return {"late": True}
        raise KeyError("amount")

    for how in ("refused", "slow", "broken"):
        outcomes[how] = engine.start("charge", {"how": how}).id
        engine.run_until_idle()
    ended = {how: engine.get(instance).active for how, instance in outcomes.items()}
    assert ended == {"refused": ["declined"], "slow": ["later"], "broken": ["broken"]}
    failure = [entry for entry in engine.history(outcomes["refused"]) if entry.event == "failed"]
    assert failure[0].data["error"]["type"] == "Declined"

"""`foreach` with `tolerate` on the durable engine (SQLite and PostgreSQL): failed items up
to the tolerance are recorded and the others go on within `concurrency`; one more fails the
state at once (`ItemsFailed`) and drops the items' remaining work."""

from __future__ import annotations

from typing import Any

from engine import Engine

MAILING = """\
name: tolerant_mailing
initial: send
states:
  send:
    foreach:
      items: context.people
      task: mail.send
      concurrency: 2
      tolerate: {tolerate}
      result: receipts
      retry: {{attempts: 2, delay: 1s}}
    on:
      done: {{to: sent, assign: {{bounced: event.failures}}}}
      failed:
        ItemsFailed: {{to: too_many, assign: {{why: event.error.message, bounced: event.failures}}}}
        "*": broken
  sent: {{final: true}}
  too_many: {{final: failed}}
  broken: {{final: failed}}
"""
BOUNCE = {"type": "Bounce", "message": "no mailbox"}


class Bounce(Exception):
    """The mail server has no such mailbox."""


def _bounced(*indexes: int) -> list[dict[str, Any]]:
    return [{"index": index, "error": BOUNCE} for index in indexes]


def _fail_both_attempts(engine: Engine, task_id: str, clock: Any) -> None:
    """Fail a claimed task's two attempts (`retry: {attempts: 2, delay: 1s}`)."""
    assert engine.fail_task(task_id, "w1", BOUNCE) is True
    clock.advance(1)
    [again] = engine.claim_tasks(["mail.send"], "w1", 60, limit=10)
    assert again.id == task_id
    assert engine.fail_task(again.id, "w1", BOUNCE) is True


def test_tolerated_failures_end_in_done_with_ordered_results_and_the_failures(
    engine: Engine, clock: Any
) -> None:
    engine.deploy(MAILING.format(tolerate=2))
    tried: dict[str, int] = {}

    @engine.task("mail.send")
    def send(person: str) -> Any:
        tried[person] = tried.get(person, 0) + 1
        if person.startswith("bad") or (person == "flaky" and tried[person] == 1):
            raise Bounce("no mailbox")
        return f"sent:{person}"

    people = ["ann", "bad-bo", "flaky", "bad-di", "ed"]
    inst = engine.start("tolerant_mailing", {"people": people})
    for _ in range(10):  # the retries wait a second each
        engine.run_until_idle()
        clock.advance(1)
    done = engine.get(inst.id)
    assert (done.state, done.status) == ("sent", "succeeded")
    assert tried == {"ann": 1, "bad-bo": 2, "flaky": 2, "bad-di": 2, "ed": 1}
    assert done.context["receipts"] == ["sent:ann", None, "sent:flaky", None, "sent:ed"]
    assert done.context["bounced"] == _bounced(1, 3)
    history = engine.history(inst.id)
    tolerated = [e.data for e in history if e.event == "failed" and e.kind == "task"]
    assert [(data["index"], data["tolerated"], data["attempts"]) for data in tolerated] == [
        (1, True, 2),
        (3, True, 2),
    ]
    finished = history[-1]
    assert (finished.event, finished.from_state, finished.to_state) == ("done", "send", "sent")
    assert finished.data == {"results": done.context["receipts"], "failures": _bounced(1, 3)}


def test_one_failure_too_many_fails_at_once_and_drops_the_remaining_items(
    engine: Engine, clock: Any
) -> None:
    engine.deploy(MAILING.format(tolerate='"20%"'))  # 20% of 6 items: 1
    inst = engine.start("tolerant_mailing", {"people": [f"p{n}" for n in range(6)]})
    first, second = engine.claim_tasks(["mail.send"], "w1", 60, limit=10)
    _fail_both_attempts(engine, first.id, clock)
    assert engine.get(inst.id).state == "send"
    [third] = engine.claim_tasks(["mail.send"], "w2", 60, limit=10)  # the next item started
    assert third.input == "p2"
    _fail_both_attempts(engine, second.id, clock)
    failed = engine.get(inst.id)
    assert (failed.state, failed.status) == ("too_many", "failed")
    assert failed.context["why"] == "2 of 6 items failed, more than the 1 tolerated"
    assert failed.context["bounced"] == _bounced(0, 1)
    assert engine.claim_tasks(None, "w3", 60, limit=10) == []  # nothing left to run
    assert engine.complete_task(third.id, "w2", "sent") is False  # its answer is stale
    assert "receipts" not in engine.get(inst.id).context
    last = [e for e in engine.history(inst.id) if e.event == "failed" and e.to_state][-1]
    assert last.data["error"]["type"] == "ItemsFailed"
    assert last.data["index"] == 1


def test_no_more_than_concurrency_items_are_claimable_while_items_fail(
    engine: Engine, clock: Any
) -> None:
    engine.deploy(MAILING.format(tolerate='"50%"'))  # 50% of 8 items: 4
    people = [f"p{n}" for n in range(8)]
    inst = engine.start("tolerant_mailing", {"people": people})
    held = engine.claim_tasks(["mail.send"], "w1", 60, limit=10)
    seen = [task.input for task in held]
    while held:
        assert len(held) <= 2
        task = held.pop(0)
        if people.index(task.input) % 2:
            _fail_both_attempts(engine, task.id, clock)
        else:
            assert engine.complete_task(task.id, "w1", f"sent:{task.input}") is True
        more = engine.claim_tasks(["mail.send"], "w1", 60, limit=10)
        held.extend(more)
        seen += [t.input for t in more]
    assert sorted(seen) == people
    done = engine.get(inst.id)
    assert done.state == "sent"
    assert done.context["receipts"] == [
        f"sent:{person}" if n % 2 == 0 else None for n, person in enumerate(people)
    ]
    assert done.context["bounced"] == _bounced(1, 3, 5, 7)

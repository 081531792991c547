"""`foreach` with `call:` on the durable engine (SQLite and PostgreSQL): one child instance
per item, at most `concurrency` running at once, results in item order whatever order the
children end in; failed children tolerated up to `tolerate` and recorded; one more fails
the foreach at once and cancels the children still running, as leaving the state does; a
child past the per-item timeout is cancelled and its item fails with Timeout."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from engine import Engine, TaskFailure

CHILD = """\
name: each_child
initial: work
states:
  work:
    task: each.work
    compensate: each.undo
    on:
      done:
        - {to: hold, if: context.hold}
        - end
      failed:
        Refused: refused
        "*": broken
  hold:
    on: {finish: end}
  end: {final: true}
  refused:
    final: failed
    error: {type: Refused, message: "'item ' + str(context.n) + ' refused'"}
  broken: {final: failed}
"""
PARENT = """\
name: each_parent
initial: fan
states:
  fan:
    foreach:
      items: context.items
      call: each_child
      {input}
      concurrency: 5
      tolerate: {tolerate}
      result: answers
      timeout: 1h
    on:
      done: {{to: finished, assign: {{failures: event.failures}}}}
      failed:
        ItemsFailed:
          to: too_many
          assign: {{failures: event.failures, why: event.error.message}}
        "*": broken
      stop: stopped
  finished: {{final: true}}
  too_many: {{final: failed}}
  broken: {{final: failed}}
  stopped: {{final: true}}
"""
INPUT = "input: \"{'n': item, 'hold': item in context.holding}\""


@pytest.fixture
def undone(engine: Engine) -> list[int]:
    """Deploys the child; its handlers (`n` in REFUSED fails with Refused); the `n` of
    each child whose work was undone."""
    engine.deploy(CHILD)
    undone: list[int] = []

    @engine.task("each.work")
    def work(data: dict[str, Any]) -> dict[str, Any]:
        if data["n"] in data.get("refused", ()) or data["n"] < 0:
            raise TaskFailure("Refused", "no")
        return {"doubled": data["n"] * 2}

    @engine.task("each.undo")
    def undo(data: dict[str, Any]) -> None:
        undone.append(data["n"])

    return undone


def _parent(engine: Engine, tolerate: Any = 0, input: str = INPUT) -> None:
    engine.deploy(PARENT.format(tolerate=tolerate, input=input))


def _running(engine: Engine, parent: str) -> int:
    return len(engine.instances(parent=parent, status="running", limit=100))


def test_fifty_children_five_at_a_time_give_their_results_in_item_order(
    engine: Engine, undone: list[int]
) -> None:
    _parent(engine)
    parent = engine.start("each_parent", {"items": list(range(50)), "holding": []})
    running = [_running(engine, parent.id)]
    while engine.get(parent.id).status == "running":
        assert engine.run_until_idle(max_rounds=1) > 0
        running.append(_running(engine, parent.id))
    assert max(running) == 5 and running[0] == 5
    finished = engine.get(parent.id)
    assert (finished.status, finished.state) == ("succeeded", "finished")
    answers = finished.context["answers"]
    assert [answer["doubled"] for answer in answers] == [n * 2 for n in range(50)]
    assert [answer["n"] for answer in answers] == list(range(50))
    assert finished.context["failures"] == []
    children = engine.instances(parent=parent.id, limit=100)
    assert len(children) == 50 == len(finished.children)
    assert {child.status for child in children} == {"succeeded"}
    assert all(child.parent == parent.id for child in children)
    calls = [e.data for e in engine.history(parent.id) if e.kind == "call" and e.event is None]
    assert [call["definition"] for call in calls] == ["each_child"] * 50


def test_results_keep_item_order_when_children_end_in_another(
    engine: Engine, undone: list[int]
) -> None:
    _parent(engine)
    parent = engine.start("each_parent", {"items": [0, 1, 2, 3], "holding": [0, 1, 2, 3]})
    engine.run_until_idle()
    children = engine.instances(parent=parent.id)
    by_n = {engine.get(child.id).context["n"]: child.id for child in children}
    for n in (3, 1, 0, 2):
        engine.send(by_n[n], "finish")
        engine.run_until_idle()
    answers = engine.get(parent.id).context["answers"]
    assert [answer["n"] for answer in answers] == [0, 1, 2, 3]


def test_tolerated_failures_end_in_done_with_the_failed_items_named(
    engine: Engine, undone: list[int]
) -> None:
    _parent(engine, tolerate=2, input="input: \"{'n': item, 'refused': [3, 7]}\"")
    parent = engine.start("each_parent", {"items": list(range(10))})
    engine.run_until_idle()
    finished = engine.get(parent.id)
    assert (finished.status, finished.state) == ("succeeded", "finished")
    failures = finished.context["failures"]
    assert [failure["index"] for failure in failures] == [3, 7]
    assert failures[0]["error"] == {"type": "Refused", "message": "item 3 refused"}
    assert engine.get(failures[0]["child"]).status == "failed"
    answers = finished.context["answers"]
    assert answers[3] is None and answers[7] is None
    assert [answer["doubled"] for n, answer in enumerate(answers) if n not in (3, 7)] == [
        n * 2 for n in range(10) if n not in (3, 7)
    ]


def test_one_failure_more_than_tolerated_fails_at_once_and_cancels_the_running_children(
    engine: Engine, undone: list[int]
) -> None:
    _parent(engine, tolerate=1, input="input: \"{'n': item, 'hold': item >= 2}\"")
    parent = engine.start("each_parent", {"items": [-1, -2, *range(2, 10)]})
    engine.run_until_idle()
    failed = engine.get(parent.id)
    assert (failed.status, failed.state) == ("failed", "too_many")
    assert [failure["index"] for failure in failed.context["failures"]] == [0, 1]
    assert failed.context["why"] == "2 of 10 items failed, more than the 1 tolerated"
    children = engine.instances(parent=parent.id)
    statuses = sorted(child.status for child in children)
    assert statuses.count("failed") == 2 and "running" not in statuses
    assert len(children) < 10  # the items after the failure were never started
    assert sorted(undone) == [2, 3, 4]  # the children that had done their work, undone


def test_leaving_the_foreach_cancels_its_running_children(
    engine: Engine, undone: list[int]
) -> None:
    _parent(engine)
    parent = engine.start("each_parent", {"items": list(range(8)), "holding": list(range(8))})
    engine.run_until_idle()
    assert _running(engine, parent.id) == 5
    engine.send(parent.id, "stop")
    engine.run_until_idle()
    assert engine.get(parent.id).state == "stopped"
    children = engine.instances(parent=parent.id)
    assert [child.status for child in children] == ["cancelled"] * 5
    assert sorted(undone) == list(range(5))


def test_a_child_past_the_items_timeout_is_cancelled_and_its_item_fails_with_timeout(
    engine: Engine, undone: list[int], clock: Any
) -> None:
    _parent(engine, tolerate=1)
    parent = engine.start("each_parent", {"items": [1, 2], "holding": [2]})
    engine.run_until_idle()
    assert engine.get(parent.id).status == "running"
    clock.advance(timedelta(hours=1, seconds=1))
    engine.run_until_idle()
    finished = engine.get(parent.id)
    assert (finished.status, finished.state) == ("succeeded", "finished")
    [failure] = finished.context["failures"]
    assert (failure["index"], failure["error"]["type"]) == (1, "Timeout")
    assert finished.context["answers"][0]["doubled"] == 2
    statuses = sorted(child.status for child in engine.instances(parent=parent.id))
    assert statuses == ["cancelled", "succeeded"]
    assert undone == [2]


def test_an_item_that_is_no_json_object_fails_with_call_error(
    engine: Engine, undone: list[int]
) -> None:
    _parent(engine, tolerate=1, input="")
    parent = engine.start("each_parent", {"items": [{"n": 4}, 5]})
    engine.run_until_idle()
    finished = engine.get(parent.id)
    assert finished.state == "finished"
    [failure] = finished.context["failures"]
    assert (failure["index"], failure["error"]["type"]) == (1, "CallError")
    assert finished.context["answers"][0]["doubled"] == 8
    assert len(engine.instances(parent=parent.id)) == 1


def test_cancelling_the_parent_cancels_and_compensates_its_foreachs_children(
    engine: Engine, undone: list[int]
) -> None:
    _parent(engine)
    parent = engine.start("each_parent", {"items": [1, 2, 3], "holding": [1, 2, 3]})
    engine.run_until_idle()
    engine.cancel(parent.id, reason="not needed")
    engine.run_until_idle()
    statuses = [child.status for child in engine.instances(parent=parent.id)]
    assert statuses == ["cancelled"] * 3
    assert sorted(undone) == [1, 2, 3]

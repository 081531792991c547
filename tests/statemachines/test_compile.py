"""SPEC 3 semantics of the compiled machine: guards, internal transitions, rejection, parallel
regions, eventless chains, failures and compensation."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import statemachines
from statemachines import (
    CompiledMachine,
    EventRejected,
    Failure,
    Step,
    compile_definition,
    simulate,
)

VALID = Path(__file__).parent / "valid"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def machine(name: str) -> CompiledMachine:
    return compile_definition(statemachines.load(VALID / f"{name}.yaml"))


def send(compiled: CompiledMachine, step: Step, event: str, payload: Any = None) -> Step:
    return compiled.send(step.snapshot, event, payload, NOW)


# -- point 3: events -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "state", "route"),
    [(5000, "big", "big"), (500, "medium", "medium"), (5, "small", "small")],
)
def test_first_transition_whose_guard_holds_wins_in_file_order(
    amount: int, state: str, route: str
) -> None:
    compiled = machine("guards_in_order")
    step = send(compiled, compiled.start({}, NOW), "decide", {"amount": amount})
    assert (step.state, step.status, step.context["route"]) == (state, "succeeded", route)
    assert step.history[-1].event == "decide"
    assert (step.history[-1].from_state, step.history[-1].to_state) == ("waiting", state)


def test_internal_transition_assigns_without_leaving_the_state() -> None:
    compiled = machine("guards_in_order")
    started = compiled.start({}, NOW)
    assert [t.key for t in started.timers] == ["1h"]
    poked = send(compiled, started, "poke")
    poked = send(compiled, poked, "poke")
    assert poked.context == {"pokes": 2}
    assert poked.state == "waiting"
    assert poked.machine["active"] == started.machine["active"], "same activation: not re-entered"
    assert poked.timers == [] and poked.cancelled == [] and poked.tasks == []
    assert (poked.history[-1].from_state, poked.history[-1].to_state) == ("waiting", "waiting")


def test_rejected_event_names_the_state_and_allowed_events_and_changes_nothing() -> None:
    compiled = machine("guards_in_order")
    step = compiled.start({"a": 1}, NOW)
    before = copy.deepcopy((step.machine, step.context))
    with pytest.raises(EventRejected) as caught:
        send(compiled, step, "approve")
    assert caught.value.state == "waiting"
    assert caught.value.allowed == ["poke", "decide"]
    assert caught.value.event == "approve"
    assert "event 'approve' rejected in state 'waiting'" in str(caught.value)
    assert (step.machine, step.context) == before


@pytest.mark.parametrize("event", ["done", "failed", "always", "after:1h"])
def test_engine_events_cannot_be_sent_from_outside(event: str) -> None:
    compiled = machine("guards_in_order")
    with pytest.raises(EventRejected) as caught:
        send(compiled, compiled.start({}, NOW), event)
    assert caught.value.allowed == ["poke", "decide"]


def test_events_sent_to_a_finished_instance_are_rejected() -> None:
    compiled = machine("guards_in_order")
    finished = send(compiled, compiled.start({}, NOW), "decide", {"amount": 1})
    assert compiled.allowed(finished.snapshot) == []
    with pytest.raises(EventRejected) as caught:
        send(compiled, finished, "poke")
    assert caught.value.state == "small"
    assert caught.value.allowed == []
    assert "the instance is succeeded" in str(caught.value)


def test_a_guard_that_fails_at_run_time_does_not_hold_and_is_recorded_as_an_error() -> None:
    compiled = machine("guard_error")
    step = send(compiled, compiled.start({}, NOW), "go", {"value": "text"})
    assert step.state == "fallback"
    errors = [entry for entry in step.history if entry.kind == "error"]
    assert len(errors) == 1
    assert errors[0].data["expression"] == "event.value > 10"
    assert "TypeError" in errors[0].data["message"]
    assert step.history[-1].to_state == "fallback"


def test_a_guard_comparing_with_a_missing_value_simply_does_not_hold() -> None:
    compiled = machine("guard_error")
    step = send(compiled, compiled.start({}, NOW), "go", {})
    assert step.state == "fallback"
    assert [entry.kind for entry in step.history] == ["event"]


def test_timers_fire_the_after_transition_and_stale_timers_do_nothing() -> None:
    compiled = machine("guards_in_order")
    started = compiled.start({}, NOW)
    timer = started.timers[0]
    assert timer.due == NOW + timedelta(hours=1)
    fired = compiled.timer_fired(
        started.snapshot, (timer.state_path, timer.activation), "1h", timer.due
    )
    assert (fired.state, fired.status) == ("timed_out", "failed")
    assert fired.history[-1].kind == "timer" and fired.history[-1].event == "after 1h"
    left = send(compiled, started, "decide", {"amount": 1})
    stale = compiled.timer_fired(
        left.snapshot, (timer.state_path, timer.activation), "1h", timer.due
    )
    assert stale.changed is False and stale.state == "small"


# -- point 2: eventless chains -------------------------------------------------------------


def test_eventless_internal_steps_reevaluate_after_each_assign() -> None:
    run = simulate(statemachines.load(VALID / "eventless_chain.yaml"))
    assert (run.state, run.status, run.context) == ("enough", "succeeded", {"n": 5})


def test_a_looping_eventless_chain_is_cut_after_100_steps_and_fails() -> None:
    run = simulate(statemachines.load(VALID / "eventless_loop.yaml"))
    assert run.status == "failed"
    steps = [entry for entry in run.history if entry.kind == "always"]
    assert len(steps) == 100
    assert run.history[-1].kind == "error"
    assert "more than 100 eventless steps" in run.history[-1].data["message"]


# -- point 7: parallel ---------------------------------------------------------------------


def test_parallel_fans_out_and_fans_in_when_every_region_finished() -> None:
    definition = statemachines.load(VALID / "parallel_review.yaml")
    compiled = compile_definition(definition)
    started = compiled.start({}, NOW)
    assert started.active == [
        "review",
        "review.scan.scan",
        "review.legal.waiting",
        "review.finance.waiting",
    ]
    assert [task.name for task in started.tasks] == ["docs.scan"]
    run = simulate(
        definition, ["approve"], results={"docs.scan": {"pages": 3}, "legal.check": "clean"}
    )
    assert (run.state, run.status) == ("published", "succeeded")
    assert run.context["outcome"] == {"scan": {"pages": 3}, "legal": "clean", "finance": None}
    assert run.context["scan"] == {"pages": 3}
    assert ("approve", "review.legal.waiting", "review.legal.check") in run.path
    assert ("approve", "review.finance.waiting", "review.finance.approved") in run.path
    assert ("approve", "review", "never") not in run.path, "inner regions take the event first"


def test_parallel_does_not_finish_while_a_region_is_still_running() -> None:
    run = simulate(
        statemachines.load(VALID / "parallel_review.yaml"),
        ["approve"],
        results={"docs.scan": {"pages": 3}, "legal.check": Failure("x")},
    )
    assert (run.state, run.status) == ("rejected", "failed")
    assert run.context["why"] == "x"


def test_a_failing_region_cancels_its_siblings_and_fails_the_parallel_state() -> None:
    definition = statemachines.load(VALID / "parallel_review.yaml")
    compiled = compile_definition(definition)
    started = compiled.start({}, NOW)
    cut = send(compiled, started, "budget_cut")
    assert (cut.state, cut.status) == ("rejected", "failed")
    assert cut.context["why"] == "branch 'finance' ended in 'cut'"
    cancelled = {path for path, _ in cut.cancelled}
    assert {"review.scan.scan", "review.legal.waiting", "review"} <= cancelled
    assert cut.active == ["rejected"]
    late = compiled.task_done(
        cut.snapshot, ("review.scan.scan", started.tasks[0].activation, None), {"pages": 1}, NOW
    )
    assert late.history[-1].kind == "stale"
    assert late.status == "failed"


def test_an_event_the_parallel_state_handles_leaves_every_region() -> None:
    run = simulate(
        statemachines.load(VALID / "parallel_review.yaml"),
        ["withdraw"],
        results={"docs.scan": {"pages": 1}},
    )
    assert (run.state, run.status, run.active) == ("withdrawn", "failed", ["withdrawn"])


def test_allowed_lists_the_events_of_every_active_state() -> None:
    compiled = machine("parallel_review")
    started = compiled.start({}, NOW)
    assert compiled.allowed(started.snapshot) == ["withdraw", "approve", "reject", "budget_cut"]


# -- foreach -------------------------------------------------------------------------------


def test_foreach_runs_items_with_bounded_concurrency_and_keeps_their_order() -> None:
    definition = statemachines.load(VALID / "foreach_items.yaml")
    compiled = compile_definition(definition)
    started = compiled.start({"people": ["a", "b", "c"]}, NOW)
    assert [(t.item, t.input) for t in started.tasks] == [
        (0, {"to": "a", "n": 0}),
        (1, {"to": "b", "n": 1}),
    ]
    first, second = started.tasks
    step = compiled.task_done(started.snapshot, ("send", second.activation, 1), "B", NOW)
    assert [(t.item, t.input["to"]) for t in step.tasks] == [(2, "c")]
    step = compiled.task_done(step.snapshot, ("send", first.activation, 2), "C", NOW)
    step = compiled.task_done(step.snapshot, ("send", first.activation, 0), "A", NOW)
    assert (step.state, step.status) == ("sent", "succeeded")
    assert step.context["count"] == 3
    assert step.history[-1].data == {"results": ["A", "B", "C"]}


def test_foreach_over_an_empty_list_is_done_at_once() -> None:
    run = simulate(statemachines.load(VALID / "foreach_items.yaml"), data={"people": []})
    assert (run.state, run.context["count"]) == ("sent", 0)


def test_foreach_over_something_not_a_list_fails_the_state() -> None:
    run = simulate(statemachines.load(VALID / "foreach_items.yaml"), data={"people": "ana"})
    assert (run.state, run.status) == ("partial", "failed")


# -- points 8 and 9: failure and compensation ----------------------------------------------


def test_unhandled_failure_fails_the_instance_and_compensates_in_reverse_order() -> None:
    run = simulate(
        statemachines.load(VALID / "saga.yaml"), results={"parcel.ship": Failure("no courier")}
    )
    assert run.status == "failed"
    compensations = [
        entry.data["task"]
        for entry in run.history
        if entry.kind == "compensate" and entry.data and "task" in entry.data
    ]
    assert compensations == ["card.refund", "stock.release"]
    assert run.history[-1].data == {"finished": "failed"}


def test_compensating_is_the_status_while_undo_tasks_run() -> None:
    compiled = machine("saga")
    step = compiled.start({}, NOW)
    for _ in range(2):
        task = step.tasks[0]
        step = compiled.task_done(step.snapshot, (task.state_path, task.activation, None), {}, NOW)
    ship = step.tasks[0]
    failed = compiled.task_failed(
        step.snapshot,
        (ship.state_path, ship.activation, None),
        {"type": "E", "message": "lost"},
        1,
        NOW,
    )
    assert failed.status == "compensating"
    assert [(t.name, t.kind, t.retry.attempts) for t in failed.tasks] == [
        ("card.refund", "compensate", 3)
    ]
    undo = failed.tasks[0]
    step = compiled.task_done(failed.snapshot, (undo.state_path, undo.activation, None), None, NOW)
    assert step.status == "compensating"
    assert [t.name for t in step.tasks] == ["stock.release"]
    undo = step.tasks[0]
    step = compiled.task_failed(
        step.snapshot,
        (undo.state_path, undo.activation, None),
        {"type": "E", "message": "gone"},
        3,
        NOW,
    )
    assert step.status == "failed", "a failed undo step is recorded and the rest goes on"
    assert any(e.kind == "error" and "stock.release" in e.data["message"] for e in step.history)


def test_cancel_drops_the_work_compensates_and_ends_cancelled() -> None:
    compiled = machine("saga")
    step = compiled.start({}, NOW)
    task = step.tasks[0]
    step = compiled.task_done(step.snapshot, (task.state_path, task.activation, None), {}, NOW)
    cancelled = compiled.cancel(step.snapshot, "asked", NOW)
    assert cancelled.status == "compensating"
    assert ("charge", step.tasks[0].activation) in cancelled.cancelled
    assert cancelled.history[0].kind == "cancel"
    assert cancelled.history[0].data == {"reason": "asked"}
    undo = cancelled.tasks[0]
    assert undo.name == "stock.release"
    done = compiled.task_done(
        cancelled.snapshot, (undo.state_path, undo.activation, None), None, NOW
    )
    assert done.status == "cancelled"
    with pytest.raises(EventRejected):
        compiled.cancel(done.snapshot, None, NOW)


def test_cancel_without_completed_steps_ends_cancelled_at_once() -> None:
    compiled = machine("saga")
    step = compiled.cancel(compiled.start({}, NOW).snapshot, None, NOW)
    assert step.status == "cancelled" and step.tasks == []


def test_an_explicit_failure_route_triggers_no_automatic_compensation() -> None:
    run = simulate(
        statemachines.load(VALID / "explicit_refund.yaml"), results={"parcel.ship": Failure()}
    )
    assert (run.state, run.status) == ("refunded", "failed")
    assert [e for e in run.history if e.kind == "compensate"] == []
    assert ("done", "refund", "refunded") in run.path


def test_a_done_that_no_transition_accepts_fails_the_instance() -> None:
    run = simulate(statemachines.load(VALID / "picky_done.yaml"), results={"check": {"passed": 0}})
    assert run.status == "failed"
    assert "no 'done' transition of 'check' accepted the result" in run.history[-1].data["message"]


def test_results_are_merged_stored_under_a_key_or_dropped() -> None:
    definition = statemachines.load("""\
name: results
initial: one
states:
  one: {task: t.one, on: {done: two}}
  two: {task: t.two, on: {done: three}}
  three: {task: t.three, result: kept, on: {done: four}}
  four: {task: t.four, result: false, on: {done: end}}
  end: {final: true}
""")
    run = simulate(
        definition,
        results={"t.one": {"a": 1}, "t.two": [[1, 2]], "t.three": "x", "t.four": {"dropped": True}},
    )
    assert run.context == {"a": 1, "two": [1, 2], "kept": "x"}


def test_a_guard_failure_that_leaves_the_event_unaccepted_is_named_in_the_rejection() -> None:
    compiled = compile_definition(
        statemachines.load("""\
name: strict_guard
initial: wait
states:
  wait:
    on: {go: {to: end, if: "event.n > 1"}}
  end: {final: true}
""")
    )
    started = compiled.start({}, NOW)
    with pytest.raises(EventRejected) as caught:
        send(compiled, started, "go", {"n": "x"})
    assert "TypeError" in str(caught.value)
    assert caught.value.allowed == ["go"]


def test_nested_parallel_and_foreach_branches_report_their_results_to_the_fan_in() -> None:
    definition = statemachines.load(VALID / "nested_parallel.yaml")
    run = simulate(
        definition,
        ["after:1m"],
        data={"ok": True, "xs": [1, 2]},
        results={"t.each": lambda item: item * 10, "t.x": "X"},
    )
    assert (run.state, run.status) == ("end", "succeeded")
    assert run.history[-1].data == {"a": {"x": "X", "y": None}, "b": {"results": [10, 20]}}
    assert ("after 1m", "outer.a.inner.y.w", "outer.a.inner.y.f") in run.path
    assert run.path[-2:] == [(None, "outer.a.choose", "outer.a.fin"), ("done", "outer", "end")]


def test_a_nested_branch_failing_fails_the_outer_parallel_state() -> None:
    run = simulate(
        statemachines.load(VALID / "nested_parallel.yaml"), ["go"], data={"ok": False, "xs": [1]}
    )
    assert run.path[-2:] == [(None, "outer.a.choose", "outer.a.bad"), ("failed", "outer", "oops")]
    assert (run.state, run.status, run.active) == ("oops", "failed", ["oops"])


def test_cancel_inside_nested_regions_drops_every_active_state() -> None:
    compiled = machine("nested_parallel")
    started = compiled.start({"xs": [1]}, NOW)
    assert started.active == [
        "outer",
        "outer.a.inner",
        "outer.a.inner.x.x",
        "outer.a.inner.y.w",
        "outer.b.each",
    ]
    cancelled = compiled.cancel(started.snapshot, "stop", NOW)
    assert cancelled.status == "cancelled"
    assert cancelled.active == []
    assert {path for path, _ in cancelled.cancelled} == set(started.active)


def test_a_branch_task_result_that_no_transition_accepts_fails_the_branch() -> None:
    run = simulate(
        statemachines.load(VALID / "branch_done_and_timers.yaml"), results={"t.a": {"ok": False}}
    )
    assert run.path == [(None, None, "both"), ("failed", "both", "bad")]
    assert run.history[-1].data["error"] == {
        "type": "DoneNotAccepted",
        "message": "no 'done' transition of 'both.a.work' accepted the result",
    }
    assert run.status == "failed"


def test_a_branch_task_result_never_finishes_the_parallel_state_early() -> None:
    run = simulate(
        statemachines.load(VALID / "branch_done_and_timers.yaml"),
        ["go"],
        results={"t.a": {"ok": True}},
    )
    assert run.path[-3:] == [
        ("done", "both.a.work", "both.a.fin"),
        ("go", "both.b.wait", "both.b.fin"),
        ("done", "both", "good"),
    ]


def test_a_branch_timer_whose_guard_fails_does_not_fire_the_outer_timer() -> None:
    compiled = machine("branch_done_and_timers")
    started = compiled.start({"give_up": False}, NOW)
    inner = next(t for t in started.timers if t.state_path == "both.b.wait")
    fired = compiled.timer_fired(
        started.snapshot, (inner.state_path, inner.activation), "1h", inner.due
    )
    assert fired.changed is False
    assert fired.state == "both" and fired.status == "running"
    outer = next(t for t in started.timers if t.state_path == "both")
    fired = compiled.timer_fired(
        started.snapshot, (outer.state_path, outer.activation), "1h", outer.due
    )
    assert (fired.state, fired.status) == ("too_late", "failed")


def test_run_time_failures_of_assign_input_and_items_are_recorded_and_routed() -> None:
    definition = statemachines.load(VALID / "runtime_failures.yaml")
    run = simulate(definition, ["go"], data={"total": 10, "count": 0, "people": "ana"})
    errors = [entry.data for entry in run.history if entry.kind == "error"]
    assert [e["expression"] for e in errors] == [
        "context.total / context.count",
        "{'n': context.count + 'x'}",
    ]
    assert "ratio" not in run.context and run.context["label"] == "ok"
    assert run.context["why"] == "InputError"
    assert (run.state, run.status) == ("broken", "failed")
    assert run.context["reason"] == "foreach items is not a list"


def test_a_failing_foreach_item_reports_its_index() -> None:
    definition = statemachines.load(VALID / "runtime_failures.yaml")
    run = simulate(
        definition,
        ["go"],
        data={"total": 10, "count": 2, "people": ["a", "b"]},
        results={"mail.send": [{"ok": 1}, Failure("bounced")]},
    )
    assert run.context["ratio"] == 5.0
    assert (run.context["failed_index"], run.context["reason"]) == (1, "bounced")
    assert run.state == "broken"


def test_foreach_over_an_empty_list_still_stores_its_empty_results() -> None:
    definition = statemachines.load("""\
name: empty_fan
initial: fan
states:
  fan:
    foreach: {items: context.people, task: mail.send, result: receipts}
    on: {done: end}
  end: {final: true}
""")
    run = simulate(definition, data={"people": []})
    assert (run.state, run.context["receipts"]) == ("end", [])


@pytest.mark.parametrize(
    ("events", "last"),
    [
        (["state"], ("state", "initial", "trigger")),
        (["trigger", "add_transition"], ("add_transition", "state", "trigger")),
        (["to_state"], ("done", "models", "trigger")),
        (["may_go"], ("done", "models", "trigger")),
    ],
)
def test_names_the_state_machine_library_reserves_are_ordinary_names(
    events: list[str], last: tuple[str, str, str]
) -> None:
    run = simulate(statemachines.load(VALID / "reserved_words.yaml"), events, data={"x": True})
    assert (run.status, run.path[-1]) == ("succeeded", last)


def test_a_large_densely_connected_definition_loads_compiles_and_runs() -> None:
    # How fast it loads is `make bench`'s figure (a timed test fails on a busy machine).
    count, fan_out = 1500, 30
    lines = ["name: large", "initial: s0", "states:"]
    for index in range(count):
        events = ", ".join(f"e{k}: s{(index * 7 + k) % count}" for k in range(fan_out))
        lines.append(f"  s{index}: {{on: {{{events}, end: s{count}}}}}")
    lines.append(f"  s{count}: {{final: true}}")
    definition = statemachines.load("\n".join(lines))
    compile_definition(definition)
    run = simulate(definition, ["e3", "e5", "end"])
    assert (run.status, run.path[-1]) == ("succeeded", ("end", "s26", f"s{count}"))

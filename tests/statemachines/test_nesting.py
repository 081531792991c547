"""Nested (compound) states, history and leaving a parallel state from inside it, run by
`simulate` and by the compiled machine directly: SCXML's rules where the languages overlap."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import statemachines
from statemachines import simulate
from statemachines.compile import compile_definition
from statemachines.errors import DefinitionError
from statemachines.steps import Snapshot

NOW = datetime(2026, 1, 1, tzinfo=UTC)

ORDER = """\
name: nested_order
initial: shopping
states:
  shopping:
    initial: browsing
    on:
      cancel: cancelled
      done: shipping
      pause: paused
      go: elsewhere
    after:
      1h: expired
    states:
      browsing:
        after: {5m: browsing}
        on: {add: cart, go: cart}
      cart:
        on: {checkout: paying, back: browsing}
      paying:
        task: payments.charge
        input: context
        on: {done: paid, failed: cart}
      paid: {final: true}
      resume: {history: shallow}
  paused:
    on: {resume: shopping.resume, restart: shopping}
  shipping:
    initial: packing
    states:
      packing:
        initial: wrap
        states:
          wrap: {on: {wrapped: boxed}}
          boxed: {final: true}
        on: {done: sent}
      sent: {final: failed}
      again: {history: deep}
    on: {failed: returned, reship: shipping.again}
  returned: {on: {reship: shipping.again}}
  elsewhere: {final: true}
  cancelled: {final: failed}
  expired: {final: failed}
"""


def load(source: str) -> statemachines.Definition:
    return statemachines.load(source)


def test_entering_a_compound_state_enters_its_initial_child_and_full_names_are_used() -> None:
    run = simulate(load(ORDER))
    assert (run.state, run.active) == ("shopping", ["shopping.browsing"])
    moved = simulate(load(ORDER), ["add"])
    assert moved.active == ["shopping.cart"]
    assert moved.path[-1] == ("add", "shopping.browsing", "shopping.cart")


def test_allowed_lists_the_events_of_every_active_state_innermost_first() -> None:
    run = simulate(load(ORDER), ["add"])
    compiled = compile_definition(load(ORDER))
    allowed = compiled.allowed(Snapshot(run.machine, run.context, run.status))
    assert allowed == ["checkout", "back", "cancel", "pause", "go"]


def test_the_innermost_state_with_a_transition_for_the_event_wins() -> None:
    assert simulate(load(ORDER), ["go"]).active == ["shopping.cart"]
    # From `cart`, which has no `go`, the event reaches `shopping`.
    assert simulate(load(ORDER), ["add", "go"]).active == ["elsewhere"]


def test_an_outer_event_and_an_outer_timer_apply_while_any_descendant_is_active() -> None:
    run = simulate(load(ORDER), ["add", "cancel"])
    assert (run.status, run.active) == ("failed", ["cancelled"])
    timed = simulate(load(ORDER), ["add", "after:1h"])
    assert (timed.status, timed.path[-1]) == ("failed", ("after 1h", "shopping", "expired"))


def test_timers_of_exited_states_are_dropped_and_those_of_staying_states_live_on() -> None:
    compiled = compile_definition(load(ORDER))
    started = compiled.start({}, NOW)
    assert [(timer.state_path, timer.key) for timer in started.timers] == [
        ("shopping", "1h"),
        ("shopping.browsing", "5m"),
    ]
    moved = compiled.send(started.snapshot, "add", None, NOW)
    browsing = started.machine["active"]["shopping.browsing"]
    assert moved.cancelled == [("shopping.browsing", browsing)]  # not `shopping`
    outer = started.machine["active"]["shopping"]
    fired = compiled.timer_fired(moved.snapshot, ("shopping", outer), "1h", NOW)
    assert fired.status == "failed"
    left = compiled.send(moved.snapshot, "pause", None, NOW)
    assert {path for path, _ in left.cancelled} == {"shopping", "shopping.cart"}


def test_states_are_exited_innermost_first_then_assign_then_entered_outermost_first() -> None:
    definition = load("""\
name: order_of_things
initial: a
states:
  a:
    initial: a1
    states:
      a1:
        initial: deep
        states:
          deep: {on: {go: {to: b.x, assign: {note: "'assigned'"}}}}
    on: {stop: b}
  b:
    after: {1m: end}
    initial: b1
    states:
      b1:
        after: {2m: end}
        parallel:
          left: {task: left.task, input: context.note}
          right: {task: right.task}
        on: {done: x}
      x: {task: inner.task, input: context, on: {done: end}}
  end: {final: true}
""")
    compiled = compile_definition(definition)
    started = compiled.start({}, NOW)
    moved = compiled.send(started.snapshot, "go", None, NOW)
    # Exited innermost first...
    assert [path for path, _ in moved.cancelled] == ["a.a1.deep", "a.a1", "a"]
    # ...then entered outermost first, each starting its timers and tasks as it is entered;
    # the tasks' inputs see what the transition assigned.
    assert [(timer.state_path, timer.key) for timer in moved.timers] == [("b", "1m")]
    assert [(task.state_path, task.input) for task in moved.tasks] == [
        ("b.x", {"note": "assigned"})
    ]
    assert moved.active == ["b", "b.x"]
    entered = compiled.send(started.snapshot, "stop", None, NOW)
    assert entered.atomic == ["b.b1.left.left", "b.b1.right.right"]
    parallel = load(definition.source.replace("to: b.x", "to: b.b1"))
    into = compile_definition(parallel).send(started.snapshot, "go", None, NOW)
    assert [(timer.state_path, timer.key) for timer in into.timers] == [
        ("b", "1m"),
        ("b.b1", "2m"),
    ]
    assert [(task.state_path, task.input) for task in into.tasks] == [
        ("b.b1.left.left", "assigned"),
        ("b.b1.right.right", {"note": "assigned"}),
    ]


def test_a_compound_state_fires_done_with_its_final_child_and_the_context() -> None:
    run = simulate(load(ORDER), ["add", "checkout"], results={"payments.charge": {"paid": 1}})
    assert run.active == ["shipping.packing.wrap"]
    assert run.path[-2:] == [
        ("done", "shopping.paying", "shopping.paid"),
        ("done", "shopping", "shipping"),
    ]
    done = [entry for entry in run.history if entry.from_state == "shopping"][0]
    assert done.data == {"final": "paid", "context": {"paid": 1}}


def test_a_failed_final_child_fires_failed_on_its_compound_state() -> None:
    events = ["add", "checkout", "wrapped"]
    run = simulate(load(ORDER), events, results={"payments.charge": {}})
    assert run.active == ["returned"]
    failure = [entry for entry in run.history if entry.event == "failed"][0]
    assert failure.from_state == "shipping"
    assert failure.data["error"]["type"] == "StateFailed"


def test_shallow_history_re_enters_the_child_active_when_the_parent_was_left() -> None:
    run = simulate(load(ORDER), ["add", "pause", "resume"])
    assert run.active == ["shopping.cart"]
    assert run.machine["history"] == {"shopping.resume": ["shopping.cart"]}
    first_time = simulate(load(ORDER), ["pause", "restart"])
    assert first_time.active == ["shopping.browsing"]


def test_history_falls_back_to_its_default_then_to_the_parents_initial_child() -> None:
    definition = load("""\
name: history_defaults
initial: off
states:
  off: {on: {on: panel.h, plain: panel.bare}}
  panel:
    initial: one
    states:
      one: {on: {next: two}}
      two: {on: {next: one}}
      h: {history: shallow, default: two}
      bare: {history: deep}
    on: {off: off}
""")
    assert simulate(definition, ["on"]).active == ["panel.two"]
    assert simulate(definition, ["plain"]).active == ["panel.one"]


def test_deep_history_restores_every_active_state_below_its_parent() -> None:
    run = simulate(load(ORDER), ["add", "checkout", "reship"], results={"payments.charge": {}})
    # Deep history of `shipping`, never left before: its initial configuration.
    assert run.active == ["shipping.packing.wrap"]
    definition = load("""\
name: deep_history
initial: work
states:
  work:
    initial: stage
    states:
      stage:
        parallel:
          left:
            initial: l1
            states:
              l1: {on: {step: l2}}
              l2: {on: {step: l3}}
              l3: {final: true}
          right:
            initial: r1
            states:
              r1: {on: {turn: r2}}
              r2: {final: true}
        on: {done: finished}
      finished: {final: true}
      back: {history: deep}
    on: {done: over, pause: paused}
  paused: {on: {resume: work.back, restart: work}}
  over: {final: true}
""")
    run = simulate(definition, ["step", "turn", "pause", "resume"])
    assert sorted(run.active) == ["work.stage.left.l2", "work.stage.right.r2"]
    restarted = simulate(definition, ["step", "turn", "pause", "restart"])
    assert sorted(restarted.active) == ["work.stage.left.l1", "work.stage.right.r1"]


PARALLEL = """\
name: leave_parallel
initial: both
states:
  both:
    parallel:
      first:
        initial: a
        states:
          a: {on: {stop: halted, poke: a2}}
          a2: {on: {stop: other}}
      second:
        initial: b
        states:
          b: {task: long.task, on: {done: b2, stop: other, poke: b2}}
          b2: {final: true}
    on: {done: finished}
  halted: {final: failed}
  other: {final: true}
  finished: {final: true}
"""


def test_a_region_whose_transition_leaves_the_parallel_state_exits_every_region() -> None:
    compiled = compile_definition(load(PARALLEL))
    started = compiled.start({}, NOW)
    assert [task.state_path for task in started.tasks] == ["both.second.b"]
    left = compiled.send(started.snapshot, "stop", None, NOW)
    # The first region in document order wins; the second region's `stop` does not fire.
    assert (left.status, left.active) == ("failed", ["halted"])
    cancelled = {path for path, _ in left.cancelled}
    assert {"both", "both.first.a", "both.second.b"} <= cancelled
    stale = compiled.task_done(left.snapshot, ("both.second.b", 3, None), "late", NOW)
    assert [entry.kind for entry in stale.history] == ["stale"]


def test_every_region_that_accepts_an_event_takes_it_in_document_order() -> None:
    compiled = compile_definition(load(PARALLEL))
    poked = compiled.send(compiled.start({}, NOW).snapshot, "poke", None, NOW)
    assert [(entry.from_state, entry.to_state) for entry in poked.history] == [
        ("both.first.a", "both.first.a2"),
        ("both.second.b", "both.second.b2"),
    ]
    assert poked.atomic == ["both.first.a2", "both.second.b2"]


def test_a_transition_inside_one_region_keeps_a_later_region_from_leaving_it() -> None:
    definition = load(
        PARALLEL.replace("a: {on: {stop: halted, poke: a2}}", "a: {on: {stop: a2, poke: halted}}")
    )
    compiled = compile_definition(definition)
    stopped = compiled.send(compiled.start({}, NOW).snapshot, "stop", None, NOW)
    # `first` moved inside itself; `second`'s `stop` would exit that move: it does not fire.
    assert [(entry.from_state, entry.to_state) for entry in stopped.history] == [
        ("both.first.a", "both.first.a2")
    ]
    assert stopped.atomic == ["both.first.a2", "both.second.b"]


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        (
            "name: t\ninitial: a\nstates:\n  a:\n    initial: x\n    states:\n"
            "      x: {on: {go: nowhere}}\n    on: {stop: b}\n  b: {final: true}\n",
            7,
            "goes to 'nowhere', which is not a state of state 'a'",
        ),
        (
            "name: t\ninitial: a\nstates:\n  a:\n    states:\n      x: {on: {go: x}}\n"
            "    on: {stop: b}\n  b: {final: true}\n",
            4,
            "compound state 'a' needs 'initial'",
        ),
        (
            "name: t\ninitial: a\nstates:\n  a: {on: {go: h}}\n  h: {history: shallow}\n",
            5,
            "history state 'h' is at the top level",
        ),
        (
            "name: t\ninitial: a\nstates:\n  a:\n    initial: x\n    states:\n"
            "      x: {on: {go: y}}\n      y: {on: {go: x}}\n"
            "      h: {history: shallow, default: b}\n    on: {stop: b}\n  b: {final: true}\n",
            9,
            "the default of history state 'h' is 'b', which is not a state inside 'a'",
        ),
        (
            "name: t\ninitial: a\nstates:\n  a:\n    initial: x\n    states:\n"
            "      x: {on: {go: x}}\n      lost: {on: {go: x}}\n    on: {stop: b}\n"
            "  b: {final: true}\n",
            8,
            "state 'lost' cannot be reached from 'x'",
        ),
        (
            "name: t\ninitial: a\nstates:\n  a:\n    initial: x\n    states:\n"
            "      x: {on: {go: b}}\n      b: {on: {go: x}}\n    on: {stop: c}\n"
            "  c:\n    initial: b\n    states:\n      b: {on: {go: b}}\n    on: {go: a}\n"
            "  d: {on: {go: b}}\n",
            15,
            "goes to 'b', which names 2 states: 'a.b', 'c.b'; write the full name",
        ),
    ],
    ids=[
        "unknown nested target",
        "no initial",
        "history at the top",
        "default outside",
        "unreachable nested",
        "ambiguous name",
    ],
)
def test_each_nesting_problem_is_reported_with_its_line(
    source: str, line: int, message: str
) -> None:
    with pytest.raises(DefinitionError) as caught:
        statemachines.load(source)
    found = [(problem.line, problem.message) for problem in caught.value.problems]
    assert any(at == line and message in text for at, text in found), found


def test_a_bare_target_resolves_to_the_nearest_state_of_that_name_looking_outward() -> None:
    definition = load("""\
name: nearest
initial: a
states:
  a:
    initial: x
    states:
      x: {on: {go: b, up: done_here}}
      b: {on: {go: x}}
    on: {stop: b}
  b: {on: {back: a.b}}
  done_here: {final: true}
""")
    assert simulate(definition, ["go"]).active == ["a.b"]  # the sibling, not the top-level b
    assert simulate(definition, ["stop"]).active == ["b"]  # `a`'s sibling
    assert simulate(definition, ["stop", "back"]).active == ["a.b"]
    assert simulate(definition, ["up"]).status == "succeeded"


def test_a_compound_states_always_holds_while_anything_inside_it_is_active() -> None:
    definition = load("""\
name: phase_always
initial: phase
states:
  phase:
    initial: one
    always:
      - {to: enough, if: (context.count or 0) >= 2}
    states:
      one: {on: {tick: {to: two, assign: {count: "(context.count or 0) + 1"}}}}
      two: {on: {tick: {to: one, assign: {count: "(context.count or 0) + 1"}}}}
    on: {stop: enough}
  enough: {final: true}
""")
    assert simulate(definition, ["tick"]).active == ["phase.two"]
    # The second tick moves inside the phase; the phase's own `always` now holds.
    assert simulate(definition, ["tick", "tick"]).active == ["enough"]


def test_a_compound_state_whose_done_enters_it_again_is_cut_after_a_hundred_steps() -> None:
    definition = load("""\
name: done_loop
initial: a
states:
  a: {on: {go: c}}
  c:
    initial: f
    states:
      f: {final: true}
    on: {done: c}
""")
    run = simulate(definition, ["go"])
    assert run.status == "failed"
    assert run.history[-1].data == {
        "message": "more than 100 eventless steps in a row; the chain was cut"
    }

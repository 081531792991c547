"""A diff of two versions of a definition lists exactly the states and transitions added,
removed and changed, each change naming what changed; its JSON and its summary are stable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import statemachines
from statemachines import DefinitionDiff, diff_definitions
from statemachines.diff import StateChange, TransitionChange, TransitionRef

DIFFS = Path(__file__).parent / "diffs"


def _diff(old: str, new: str) -> DefinitionDiff:
    return diff_definitions(statemachines.load(old), statemachines.load(new))


def _shop() -> DefinitionDiff:
    return diff_definitions(
        statemachines.load(DIFFS / "shop_v1.yaml"), statemachines.load(DIFFS / "shop_v2.yaml")
    )


def _ref(source: str, trigger: str, target: str | None, guard: str | None = None) -> TransitionRef:
    return TransitionRef(source, trigger, target, guard)


def test_a_prepared_pair_lists_exactly_its_added_removed_and_changed_elements() -> None:
    diff = _shop()
    assert diff.states_added == ("refund", "shipping.packed")
    assert diff.states_removed == ("shipping.labelled",)
    assert diff.states_changed == (
        StateChange("deliver.notify.notify", ("task",)),
        StateChange("pay", ("retry", "timeout")),
        StateChange("review", ("timers",)),
    )
    assert diff.transitions_added == (
        _ref("refund", "done", "broken"),
        _ref("review", "after 3d", "broken"),
        _ref("shipping.packed", "done", "shipping.sent"),
    )
    assert diff.transitions_removed == (
        _ref("review", "after 2d", "broken"),
        _ref("shipping.labelled", "done", "shipping.sent"),
    )
    track = "deliver.track"
    assert diff.transitions_changed == (
        TransitionChange(
            _ref(f"{track}.waiting", "arrived", f"{track}.arrived"),
            _ref(f"{track}.waiting", "arrived", f"{track}.arrived"),
            ("assign",),
        ),
        TransitionChange(
            _ref("pay", "done", "shipping", "result.ok"),
            _ref("pay", "done", "shipping", "result.ok and context.amount < 100"),
            ("guard",),
        ),
        TransitionChange(
            _ref("pay", "failed", "broken"), _ref("pay", "failed", "refund"), ("target",)
        ),
        TransitionChange(
            _ref("shipping.packing", "done", "shipping.labelled"),
            _ref("shipping.packing", "done", "shipping.packed"),
            ("target",),
        ),
    )
    assert diff.initial is None
    assert not diff.empty


def test_the_summary_counts_then_names_each_element() -> None:
    assert _shop().summary().splitlines() == [
        "states: 2 added, 1 removed, 3 changed",
        "transitions: 3 added, 2 removed, 4 changed",
        "+ state refund",
        "+ state shipping.packed",
        "- state shipping.labelled",
        "~ state deliver.notify.notify: task",
        "~ state pay: retry, timeout",
        "~ state review: timers",
        "+ transition refund --done--> broken",
        "+ transition review --after 3d--> broken",
        "+ transition shipping.packed --done--> shipping.sent",
        "- transition review --after 2d--> broken",
        "- transition shipping.labelled --done--> shipping.sent",
        "~ transition deliver.track.waiting --arrived--> deliver.track.arrived: assign",
        "~ transition pay --done--> shipping: guard",
        "~ transition pay --failed--> refund (was broken): target",
        "~ transition shipping.packing --done--> shipping.packed (was shipping.labelled): target",
    ]


def test_the_json_round_trip_is_stable() -> None:
    diff = _shop()
    text = json.dumps(diff.to_json(), sort_keys=True)
    assert json.dumps(_shop().to_json(), sort_keys=True) == text
    assert DefinitionDiff.from_json(json.loads(text)) == diff
    assert json.dumps(DefinitionDiff.from_json(json.loads(text)).to_json(), sort_keys=True) == text
    reversed_diff = diff_definitions(
        statemachines.load(DIFFS / "shop_v2.yaml"), statemachines.load(DIFFS / "shop_v1.yaml")
    )
    assert reversed_diff.states_added == diff.states_removed
    assert reversed_diff.states_removed == diff.states_added


@pytest.mark.parametrize("path", statemachines.examples(), ids=lambda path: path.stem)
def test_a_definition_against_itself_is_an_empty_diff(path: Path) -> None:
    diff = diff_definitions(statemachines.load(path), statemachines.load(path))
    assert diff.empty
    assert diff == DefinitionDiff()
    assert diff.summary() == "no changes"
    assert DefinitionDiff.from_json(json.loads(json.dumps(diff.to_json()))) == diff


def test_layout_comments_and_descriptions_are_no_change() -> None:
    old = "name: t\ninitial: a\nstates:\n  a: {on: {go: b}}\n  b: {final: true}\n"
    new = (
        "# moved around\nname: t\ninitial: a\nstates:\n"
        "  a:\n    description: waits\n    on:\n      go: {to: b}\n  b: {final: true}\n"
    )
    assert _diff(old, new).empty


def test_a_transition_added_before_another_of_its_trigger_is_an_addition() -> None:
    old = (
        "name: t\ninitial: a\nstates:\n  a: {on: {go: b, stop: c}}\n"
        "  b: {final: true}\n  c: {final: true}\n"
    )
    new = (
        "name: t\ninitial: a\nstates:\n  a:\n    on:\n      go:\n"
        "        - {to: c, if: event.fast}\n        - {to: b}\n      stop: c\n"
        "  b: {final: true}\n  c: {final: true}\n"
    )
    diff = _diff(old, new)
    assert diff.transitions_added == (_ref("a", "go", "c", "event.fast"),)
    assert diff.transitions_removed == ()
    assert diff.transitions_changed == ()


def test_kind_initial_and_parallel_regions_changes_are_named() -> None:
    old = (
        "name: t\ninitial: a\nstates:\n"
        "  a:\n    parallel:\n      x: {task: t.x}\n      y: {task: t.y}\n    on: {done: b}\n"
        "  b: {final: true}\n"
    )
    new = (
        "name: t\ninitial: b\nstates:\n"
        "  a:\n    parallel:\n      x: {task: t.x}\n    on: {done: c}\n"
        "  b: {task: t.b, on: {done: a}}\n  c: {final: true}\n"
    )
    diff = _diff(old, new)
    assert diff.initial == ("a", "b")
    assert diff.states_added == ("c",)
    assert diff.states_removed == ("a.y.finished", "a.y.y")
    assert diff.states_changed == (
        StateChange("a", ("regions",)),
        StateChange("b", ("kind", "task", "final")),
    )
    assert diff.transitions_added == (_ref("b", "done", "a"),)
    assert diff.transitions_removed == (_ref("a.y.y", "done", "a.y.finished"),)
    assert diff.transitions_changed == (
        TransitionChange(_ref("a", "done", "b"), _ref("a", "done", "c"), ("target",)),
    )
    assert "~ initial: a -> b" in diff.summary()


def test_a_caught_error_type_change_is_a_catch_change() -> None:
    template = (
        "name: t\ninitial: a\nstates:\n  a:\n    task: w\n"
        "    on: {{done: ok, failed: {{{error}: bad}}}}\n"
        "  ok: {{final: true}}\n  bad: {{final: failed}}\n"
    )
    diff = _diff(template.format(error="Timeout"), template.format(error="Refused"))
    assert [change.aspects for change in diff.transitions_changed] == [("catch",)]
    assert diff.transitions_changed[0].new.catch == "Refused"
    assert diff.transitions_changed[0].new.guard is None


def test_a_guard_beside_a_caught_error_type_is_compared_as_written() -> None:
    template = (
        "name: t\ninitial: a\nstates:\n  a:\n    task: w\n"
        "    on: {{done: ok, failed: {{Timeout: {{to: bad, if: {guard}}}}}}}\n"
        "  ok: {{final: true}}\n  bad: {{final: failed}}\n"
    )
    diff = _diff(template.format(guard="context.strict"), template.format(guard="context.lax"))
    (change,) = diff.transitions_changed
    assert change.aspects == ("guard",)
    assert (change.old.guard, change.new.guard) == ("context.strict", "context.lax")
    assert change.new.catch == "Timeout"


def test_foreach_call_and_data_timer_changes_are_named() -> None:
    template = (
        "name: t\ninitial: each\nstates:\n"
        "  each:\n    foreach: {{items: context.xs, task: t.x, concurrency: {limit}}}\n"
        "    on: {{done: child}}\n"
        "  child:\n    call: {callee}\n    on: {{done: wait}}\n"
        "  wait:\n    at: {{{due}: end}}\n  end: {{final: true}}\n"
    )
    old = template.format(limit=5, callee="billing", due="context.due")
    new = template.format(limit=8, callee="invoicing", due="context.due - 1d")
    diff = _diff(old, new)
    assert diff.states_changed == (
        StateChange("child", ("call",)),
        StateChange("each", ("foreach",)),
        StateChange("wait", ("timers",)),
    )
    assert diff.transitions_removed == (_ref("wait", "at context.due", "end"),)
    assert diff.transitions_added == (_ref("wait", "at context.due - 1d", "end"),)

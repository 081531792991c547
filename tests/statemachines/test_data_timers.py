"""Timers read from data: `after: {EXPR: ...}` (a delay from the context or the event) and
`at: {INSTANT: ...}` (an ISO-8601 timestamp, with an optional `- DURATION` offset), checked
at load where they can be, evaluated on entry; a past instant fires at once, a missing or
malformed value fails the state with `TimerError`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import diagrams
import statemachines
from statemachines import simulate
from statemachines.deadlines import split_offset
from statemachines.errors import DefinitionError
from statemachines.loader import parse_yaml
from statemachines.simulate import START

SOURCE = (Path(__file__).parent / "valid" / "data_timers.yaml").read_text()
DEFINITION = statemachines.load(SOURCE)
LATER = {"grace_seconds": 86_400 * 365, "trial_ends": "2027-01-01T00:00:00Z"}


def _timer_moves(run: statemachines.Run) -> list[tuple[str | None, str | None, str | None]]:
    return [(e.event, e.from_state, e.to_state) for e in run.history if e.kind == "timer"]


def _failure(run: statemachines.Run) -> dict[str, Any]:
    failed = [entry for entry in run.history if entry.event == "failed"]
    assert len(failed) == 1
    return dict(failed[0].data["error"])


# -- simulate ----------------------------------------------------------------------------------


def test_a_delay_from_the_context_fires_that_many_seconds_after_entry() -> None:
    run = simulate(DEFINITION, ["after:context.grace_seconds"], data={**LATER, "grace_seconds": 90})
    assert (run.state, run.status) == ("grace_over", "failed")
    assert _timer_moves(run) == [("after context.grace_seconds", "trial", "grace_over")]
    [entry] = [entry for entry in run.history if entry.kind == "timer"]
    assert entry.data == {"after": "context.grace_seconds"}


def test_a_delay_from_the_event_that_entered_the_state() -> None:
    run = simulate(DEFINITION, [("extend", {"wait": "90m"}), "after:event.wait"], data=LATER)
    assert run.state == "grace_over"
    assert _timer_moves(run) == [("after event.wait", "extended", "grace_over")]


def test_an_instant_with_an_offset_fires_before_it_then_the_instant_itself() -> None:
    starts = "2026-03-10T09:00:00+01:00"
    events = [("book", None), "at:context.booking.starts - 2d", "at:context.booking.starts"]
    run = simulate(DEFINITION, events, data={**LATER, "booking": {"starts": starts}})
    assert (run.state, run.status) == ("started", "succeeded")
    assert run.context["reminded"] is True
    assert _timer_moves(run) == [
        ("at context.booking.starts - 2d", "booked", "booked"),
        ("at context.booking.starts", "booked", "started"),
    ]


def test_a_past_instant_fires_at_once() -> None:
    past = (START - timedelta(days=3)).isoformat()
    run = simulate(DEFINITION, data={**LATER, "trial_ends": past})
    assert (run.state, run.status) == ("trial_over", "failed")
    assert _timer_moves(run) == [("at context.trial_ends", "trial", "trial_over")]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"trial_ends": "2027-01-01"},
            "timer 'after context.grace_seconds': context.grace_seconds has no value",
        ),
        (
            {"grace_seconds": 90, "trial_ends": "next tuesday"},
            "timer 'at context.trial_ends': context.trial_ends gave 'next tuesday', which is "
            "no ISO-8601 timestamp such as '2026-03-01T09:00:00Z'",
        ),
        (
            {"grace_seconds": "ninety", "trial_ends": "2027-01-01"},
            "context.grace_seconds gave 'ninety', which is no duration such as '90m'",
        ),
        (
            {"grace_seconds": 86_400 * 3651, "trial_ends": "2027-01-01"},
            "context.grace_seconds gave 315446400, which is longer than 10 years",
        ),
        (
            {"grace_seconds": 90, "trial_ends": "2040-01-01"},
            "context.trial_ends gave '2040-01-01', which is more than 10 years away",
        ),
    ],
    ids=["missing", "malformed instant", "malformed delay", "too long", "too far"],
)
def test_a_missing_or_malformed_value_fails_the_state_with_timer_error(
    data: dict[str, Any], message: str
) -> None:
    run = simulate(DEFINITION, data=data)
    assert (run.state, run.status) == ("broken", "failed")
    error = _failure(run)
    assert error["type"] == "TimerError"
    assert message in error["message"]


def test_a_timer_error_nobody_catches_fails_the_instance() -> None:
    run = simulate(DEFINITION, [("extend", {"wait": "soon"})], data=LATER)
    assert run.status == "failed"
    assert run.active == []
    assert _failure(run) == {
        "type": "TimerError",
        "message": "timer 'after event.wait': event.wait gave 'soon', which is no duration "
        "such as '90m', '2d' or 'PT30S'",
    }


@pytest.mark.parametrize(
    ("value", "delay"),
    [(90, 90), (1.5, 1.5), ("90m", 5400), ("PT30S", 30), (0, 0), (-5, 0), ("0s", 0)],
)
def test_a_delay_is_seconds_or_a_duration_and_none_or_less_is_due_at_once(
    value: Any, delay: float
) -> None:
    timer = DEFINITION.state("trial").after[0]
    names = {"context": {"grace_seconds": value}, "event": None, "now": START}
    assert timer.due(names, START) == START + timedelta(seconds=delay)


@pytest.mark.parametrize(
    ("value", "due"),
    [
        ("2026-01-02T00:00:00Z", "2026-01-02T00:00:00+00:00"),
        ("2026-01-02T00:00:00", "2026-01-02T00:00:00+00:00"),  # naive: UTC
        ("2026-01-02T02:00:00+02:00", "2026-01-02T00:00:00+00:00"),
        ("2026-01-02", "2026-01-02T00:00:00+00:00"),
    ],
)
def test_an_instant_is_iso_8601_and_one_without_an_offset_is_utc(value: str, due: str) -> None:
    timer = DEFINITION.state("trial").after[1]
    names = {"context": {"trial_ends": value}, "event": None, "now": START}
    assert timer.due(names, START).isoformat() == due


@pytest.mark.parametrize(
    ("key", "expression", "offset"),
    [
        ("context.booking.starts - 2d", "context.booking.starts", timedelta(days=-2)),
        ("context.ends+1h30m", "context.ends", timedelta(hours=1, minutes=30)),
        ("context.ends - PT12H", "context.ends", timedelta(hours=-12)),
        ("2026-03-01T09:00:00-05:00", "2026-03-01T09:00:00-05:00", timedelta(0)),
        ("2026-03-01", "2026-03-01", timedelta(0)),
        ("context.day - 2", "context.day - 2", timedelta(0)),
    ],
)
def test_an_at_key_ends_with_an_optional_offset(
    key: str, expression: str, offset: timedelta
) -> None:
    assert split_offset(key) == (expression, offset)


# -- the definition ----------------------------------------------------------------------------


def test_a_timer_read_from_data_is_stored_under_a_short_stable_key() -> None:
    trial, booked = DEFINITION.state("trial"), DEFINITION.state("booked")
    assert [(t.key, t.kind, t.name) for t in trial.after] == [
        ("#1", "after", "after context.grace_seconds"),
        ("#2", "at", "at context.trial_ends"),
    ]
    assert [(t.key, t.offset) for t in booked.after] == [
        ("#1", timedelta(days=-2)),
        ("#2", timedelta(0)),
    ]
    assert trial.transitions_for("after:#2")[0].target == "trial_over"


def test_fixed_durations_keep_their_keys_beside_timers_read_from_data() -> None:
    definition = statemachines.load(
        "name: t\ninitial: a\nstates:\n  a:\n    after: {2d: b, context.wait: b}\n"
        "    at: {2026-03-01T09:00:00Z: b}\n  b: {final: true}\n"
    )
    assert [(t.key, t.event, t.name) for t in definition.state("a").after] == [
        ("2d", "after:2d", "after 2d"),
        ("#1", "after:#1", "after context.wait"),
        ("#2", "after:#2", "at 2026-03-01T09:00:00Z"),
    ]
    run = simulate(definition, ["after:2d"], data={"wait": "1w"})
    assert run.path[-1] == ("after 2d", "a", "b")


@pytest.mark.parametrize(
    ("timers", "message"),
    [
        ("after: {soon: b}", "'soon' is not a duration such as 30s or 2d, nor an expression"),
        ("after: {'now': b}", "'now' is not a duration such as 30s or 2d, nor an expression over"),
        ("after: {'30': b}", "'30' is not a duration; write e.g. '500ms'"),
        ("after: {0s: b}", "duration '0s' must be positive"),
        ("after: {'context.wait +': b}", "nor an expression: invalid expression"),
        ("after: {contxt.wait: b}", "unknown name 'contxt' — did you mean 'context'?"),
        ("at: {2026-13-01: b}", "'2026-13-01' is no ISO-8601 timestamp"),
        ("at: {'\"soon\"': b}", "at '\"soon\"': 'soon' is no ISO-8601 timestamp"),
        ("at: {context.ends -: b}", "is not a timestamp, nor an expression: invalid expression"),
        (f"at: {{context.{'x' * 100}: b}}", "an 'at' key is 108 characters, over the limit of 100"),
    ],
)
def test_a_timer_key_that_is_no_duration_instant_or_expression_is_a_problem_at_its_line(
    timers: str, message: str
) -> None:
    source = f"name: t\ninitial: a\nstates:\n  a:\n    {timers}\n  b: {{final: true}}\n"
    with pytest.raises(DefinitionError) as caught:
        statemachines.load(source)
    problems = [(problem.line, problem.message) for problem in caught.value.problems]
    assert any(line == 5 and message in text for line, text in problems), problems


def test_failed_may_be_caught_on_a_state_whose_only_failure_is_a_timer() -> None:
    assert DEFINITION.state("trial").transitions_for("failed")[0].catch == "TimerError"
    with pytest.raises(DefinitionError, match="so 'failed' never fires there"):
        statemachines.load(
            SOURCE.replace("context.trial_ends: trial_over", "2d: trial_over").replace(
                "context.grace_seconds: grace_over", "1d: grace_over"
            )
        )


def test_a_parallel_region_may_have_timers_read_from_data() -> None:
    definition = statemachines.load(
        "name: t\ninitial: p\nstates:\n  p:\n    parallel:\n      one:\n        initial: w\n"
        "        states: {w: {on: {go: e}}, e: {final: true}}\n        at: {context.due: e}\n"
        "    on: {done: b}\n  b: {final: true}\n"
    )
    run = simulate(definition, data={"due": "2025-12-31T00:00:00Z"})
    assert (run.state, run.status) == ("b", "succeeded")
    assert ("at context.due", "p.one", "p.one.e") in run.path


# -- schema and diagrams -----------------------------------------------------------------------


def test_the_schema_accepts_timers_read_from_data_and_refuses_a_word_that_is_neither() -> None:
    schema = statemachines.json_schema()
    jsonschema.validate(parse_yaml(SOURCE, "data_timers.yaml").data, schema)
    state = {"name": "t", "initial": "a", "states": {"a": {"after": {"soon": "a"}}}}
    assert not jsonschema.Draft202012Validator(schema).is_valid(state)
    final = {"name": "t", "initial": "a", "states": {"a": {"final": True, "at": {"x": "a"}}}}
    assert not jsonschema.Draft202012Validator(schema).is_valid(final)


def test_diagrams_label_a_timer_by_what_it_reads() -> None:
    text = diagrams.to_mermaid(DEFINITION)
    assert "trial --> grace_over : after context.grace_seconds" in text
    assert "trial --> trial_over : at context.trial_ends" in text
    assert "booked --> started : at context.booking.starts" in text
    assert "booked --> booked : at context.booking.starts - 2d / set reminded" in text
    dot = diagrams.to_dot(DEFINITION)
    assert "at context.booking.starts - 2d" in dot
    assert "after event.wait" in dot

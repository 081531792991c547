"""Durations of the definition language: compact forms, ISO 8601, and what is refused."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import statemachines
from statemachines import DefinitionError
from statemachines.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
        ("1w", timedelta(weeks=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d12h", timedelta(days=2, hours=12)),
        ("1s500ms", timedelta(seconds=1, milliseconds=500)),
        ("1.5s", timedelta(seconds=1.5)),
        (" 30s ", timedelta(seconds=30)),
        ("PT30S", timedelta(seconds=30)),
        ("PT1H30M", timedelta(hours=1, minutes=30)),
        ("P1DT2H", timedelta(days=1, hours=2)),
        ("P3W", timedelta(weeks=3)),
        ("pt5m", timedelta(minutes=5)),
        ("3650d", timedelta(days=3650)),
    ],
)
def test_durations_are_read(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (30, "needs a unit"),
        (1.5, "needs a unit"),
        ("30", "is not a duration"),
        ("30S", "is not a duration"),
        ("1h 30m", "is not a duration"),
        ("1m30", "is not a duration"),
        ("-5s", "is not a duration"),
        ("soon", "is not a duration"),
        ("", "is not a duration"),
        ("0s", "must be positive"),
        ("PT0S", "must be positive"),
        ("PT", "not a valid ISO 8601 duration"),
        ("P1X", "not a valid ISO 8601 duration"),
        ("3651d", "longer than 10 years"),
        ("9" * 40 + "d", "longer than 10 years"),
        ("9" * 400 + "s", "longer than 10 years"),
        (True, "is not a duration"),
        (None, "a duration is text"),
        ([1], "a duration is text"),
    ],
)
def test_bad_durations_are_refused_with_a_readable_message(value: Any, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(days=2, seconds=1), "2d1s"),
        (timedelta(0), "0s"),
    ],
)
def test_format_duration_gives_the_compact_spelling(delta: timedelta, text: str) -> None:
    assert format_duration(delta) == text
    if delta:
        assert parse_duration(text) == delta


@pytest.mark.parametrize("where", ["timeout: null", "timeout: [1, 2]", "timeout: {a: 1}"])
def test_a_duration_that_is_not_text_is_a_definition_error(where: str) -> None:
    text = f"name: t\ninitial: w\nstates:\n  w:\n    task: x\n    {where}\n    on: {{done: e}}\n"
    with pytest.raises(DefinitionError) as caught:
        statemachines.load(text + "  e: {final: true}\n")
    assert [p.line for p in caught.value.problems] == [6]


def test_retry_durations_and_timeouts_reach_the_model() -> None:
    definition = statemachines.load("""\
name: timing
initial: work
states:
  work:
    task: jobs.run
    timeout: PT45S
    retry: {attempts: 4, delay: 500ms, backoff: 3, max_delay: 1m, jitter: true}
    on: {done: wait}
  wait:
    after: {1h30m: end, P2D: end}
  end: {final: true}
""")
    work = definition.state("work")
    assert work.task is not None
    assert work.task.timeout == timedelta(seconds=45)
    (retry,) = work.task.retry.policies
    expected = (4, timedelta(milliseconds=500), 3.0, timedelta(minutes=1), True)
    assert (retry.attempts, retry.delay, retry.backoff, retry.max_delay, retry.jitter) == expected
    waits = [retry.wait_after(attempt) for attempt in (1, 2, 3, 6)]
    assert waits == [timedelta(milliseconds=millis) for millis in (500, 1500, 4500, 60_000)]
    timers = definition.state("wait").after
    assert [(t.key, t.delay, t.event, t.label) for t in timers] == [
        ("1h30m", timedelta(hours=1, minutes=30), "after:1h30m", "after 1h30m"),
        ("P2D", timedelta(days=2), "after:P2D", "after 2d"),
    ]

"""The tick arithmetic of schedules against a plain walk from tick to tick: the due ticks of
a downtime (the newest, bounded) and the next tick after it, for intervals and for cron
expressions in time zones with daylight saving time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.schedule_times import Ticking, format_seconds, parse_every

START = datetime(2026, 3, 20, tzinfo=UTC)  # a week before Europe's clocks go forward
EXPRESSIONS = ["*/7 * * * *", "30 2 * * *", "0 */3 * * 1-5", "15 1,2,3 * * *", "0 0 1 * *"]
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe"]


def walked(ticking: Ticking, first: datetime, now: datetime) -> list[datetime]:
    ticks, tick = [], first
    while tick <= now:
        ticks.append(tick)
        tick = ticking.after(tick)
    return ticks


@settings(max_examples=60, deadline=None)
@given(
    every=st.integers(1, 86400),
    offset=st.integers(0, 10 * 86400),
    most=st.integers(1, 5),
)
def test_interval_ticks_match_a_walk(every: int, offset: int, most: int) -> None:
    ticking = Ticking(None, every, "UTC")
    now = START + timedelta(seconds=offset)
    expected = [] if now < START else walked(ticking, START, now)
    if len(expected) > 1000:  # a long walk proves nothing more
        expected = expected[-(most + 1) :]
        due, count = ticking.due(expected[0], now, most)
        assert due == expected[-most:]
        return
    due, count = ticking.due(START, now, most)
    assert due == expected[-most:] and count == len(expected)
    assert ticking.next_after(START, now) == START + (len(expected)) * timedelta(seconds=every)


@settings(max_examples=40, deadline=None)
@given(
    expression=st.sampled_from(EXPRESSIONS),
    zone=st.sampled_from(ZONES),
    hours=st.integers(0, 14 * 24),
    most=st.integers(1, 5),
)
def test_cron_ticks_match_a_walk(expression: str, zone: str, hours: int, most: int) -> None:
    ticking = Ticking(expression, None, zone)
    first = ticking.first_at_or_after(START)
    now = START + timedelta(hours=hours, minutes=17)
    expected = walked(ticking, first, now)
    due, count = ticking.due(first, now, most)
    assert due == expected[-most:]
    assert count == min(len(expected), most + 1)  # counted past the bound: "more than most"
    following = ticking.next_after(first, now)
    assert following > now and following == ticking.after(expected[-1] if expected else now)


def test_intervals_read_as_people_write_them() -> None:
    assert [parse_every(text) for text in ("90", "10m", "1h30m", "2d", "1w", " 5 s ")] == [
        90,
        600,
        5400,
        172800,
        604800,
        5,
    ]
    assert parse_every(timedelta(minutes=2)) == 120
    assert [format_seconds(n) for n in (90, 3600, 86400 + 61)] == ["1m30s", "1h", "1d1m1s"]


def test_a_time_the_clocks_repeat_ticks_twice_and_a_time_they_skip_once() -> None:
    nightly = Ticking("30 2 * * *", None, "Europe/Paris")
    autumn = datetime(2026, 10, 24, 12, tzinfo=UTC)
    twice = [datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 25, 1, 30, tzinfo=UTC)]
    assert walked(nightly, nightly.after(autumn), datetime(2026, 10, 25, 12, tzinfo=UTC)) == twice
    assert nightly.due(twice[0], datetime(2026, 10, 25, 12, tzinfo=UTC), 5) == (twice, 2)
    spring = datetime(2026, 3, 28, 12, tzinfo=UTC)
    once = [datetime(2026, 3, 29, 1, 0, tzinfo=UTC)]  # 03:00 summer time, for 02:30
    assert walked(nightly, nightly.after(spring), datetime(2026, 3, 29, 12, tzinfo=UTC)) == once

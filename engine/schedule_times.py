"""What a schedule is and when it ticks: its record (`Schedule`), the checks of what a user
gives (a cron expression, an interval, a time zone, the policies), and the tick arithmetic
the workers use: the ticks due by now, bounded, and the first tick after a moment.

Cron expressions (five fields, or six with seconds as the sixth, as croniter reads them)
are evaluated in the schedule's time zone by croniter, which
handles the days daylight saving time skips or repeats an hour; intervals are plain
arithmetic on UTC times.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from statemachines.errors import Conflict, InvalidInput, NotFound

from .tables import CRON_LENGTH, SCHEDULE_NAME_LENGTH, TIMEZONE_LENGTH

if TYPE_CHECKING:
    from croniter import croniter

OVERLAPS = ("skip", "allow", "buffer_one")
CATCH_UPS = ("none", "last", "all")
# After downtime, catch-up "all" starts at most this many missed ticks (the newest ones);
# older missed ticks are dropped.
MAX_CATCH_UP = 100
# A tick more than this late counts as missed (catch-up "none" drops it).
MISFIRE_SECONDS = 60
MIN_INTERVAL_SECONDS = 1
MAX_INTERVAL_SECONDS = 366 * 24 * 3600
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class ScheduleNotFound(NotFound):
    """No schedule has this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no schedule named {name!r}")
        self.name = name


class ScheduleExists(Conflict):
    """A schedule of this name exists already: delete it first, or pick another name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"a schedule named {name!r} exists already")
        self.name = name


@dataclass(frozen=True)
class Schedule:
    """A schedule as stored: which definition it starts (`version` None: the latest at each
    start) with what data, when (`cron` in `timezone`, or every `every_seconds`), its
    policies, whether it is paused, and where it stands: the next tick, the last tick
    started, the instance that tick started, a tick held back by `buffer_one`, and the
    error of its last failed start (None once a start succeeds)."""

    name: str
    definition: str
    version: int | None
    data: dict[str, Any]
    cron: str | None
    every_seconds: int | None
    timezone: str
    overlap: str
    catch_up: str
    paused: bool
    next_tick_at: datetime
    last_tick_at: datetime | None
    last_instance_id: str | None
    buffered_tick: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def expression(self) -> str:
        """When it ticks, as a person reads it: the cron expression or `every 10m`."""
        if self.cron is not None:
            return self.cron
        return f"every {format_seconds(self.every_seconds or 0)}"

    @property
    def next_run_local(self) -> datetime:
        """The next tick in the schedule's own time zone."""
        return self.next_tick_at.astimezone(ZoneInfo(self.timezone))

    def to_json(self) -> dict[str, Any]:
        """The schedule as JSON: times as ISO 8601 in UTC, the next one also local."""

        def iso(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "name": self.name,
            "definition": self.definition,
            "version": self.version,
            "data": self.data,
            "cron": self.cron,
            "every_seconds": self.every_seconds,
            "expression": self.expression,
            "timezone": self.timezone,
            "overlap": self.overlap,
            "catch_up": self.catch_up,
            "paused": self.paused,
            "next_run_at": iso(self.next_tick_at),
            "next_run_local": self.next_run_local.isoformat(),
            "last_run_at": iso(self.last_tick_at),
            "last_instance_id": self.last_instance_id,
            "buffered_tick": iso(self.buffered_tick),
            "last_error": self.last_error,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


def format_seconds(total: int) -> str:
    """`90` as `1m30s`, `3600` as `1h`."""
    parts = []
    for unit in ("w", "d", "h", "m", "s"):
        size = UNITS[unit]
        if total >= size:
            parts.append(f"{total // size}{unit}")
            total %= size
    return "".join(parts) or "0s"


def parse_every(value: str | int | float | timedelta) -> int:
    """An interval given as seconds, a timedelta or text such as `90`, `10m` or `1h30m`, in
    whole seconds; InvalidInput for anything else or outside 1 s to 366 days."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise InvalidInput("an interval must be seconds or text such as 10m, not a boolean")
    elif isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if text.isdigit():
            seconds = float(text)
        elif text and _DURATION.sub("", text).strip() == "":
            seconds = sum(int(n) * UNITS[unit] for n, unit in _DURATION.findall(text))
        else:
            raise InvalidInput(
                f"{value[:50]!r} is not an interval: give seconds or a duration such as "
                "30s, 10m, 1h30m, 2d, 1w"
            )
    else:
        raise InvalidInput(f"an interval must be seconds or text, not {type(value).__name__}")
    if seconds != int(seconds):
        raise InvalidInput(f"an interval is whole seconds, not {seconds:g}")
    if not MIN_INTERVAL_SECONDS <= seconds <= MAX_INTERVAL_SECONDS:
        raise InvalidInput(
            f"an interval must be between {MIN_INTERVAL_SECONDS} second and 366 days, "
            f"not {seconds:g} seconds"
        )
    return int(seconds)


def check_cron(expression: Any) -> str:
    """The cron expression, stripped; InvalidInput unless croniter reads it (five fields,
    or six with seconds)."""
    if not isinstance(expression, str):
        raise InvalidInput(f"a cron expression must be text, not {type(expression).__name__}")
    text = " ".join(expression.split())
    fields = len(text.split(" ")) if text else 0
    if fields not in (5, 6) or len(text) > CRON_LENGTH:
        raise InvalidInput(
            f"{expression[:CRON_LENGTH]!r} is not a cron expression: it needs five fields "
            "(minute hour day-of-month month day-of-week), or six with seconds last"
        )
    try:
        _cron(text, datetime(2026, 1, 1, tzinfo=UTC)).get_next(datetime)
    except (ValueError, KeyError) as exc:  # croniter's own errors are ValueErrors
        raise InvalidInput(f"{text!r} is not a cron expression: {exc}") from None
    return text


def zone_of(name: Any) -> ZoneInfo:
    """The IANA time zone `name` (Europe/Paris, UTC); InvalidInput for an unknown one."""
    if not isinstance(name, str) or not name or len(name) > TIMEZONE_LENGTH:
        raise InvalidInput(f"{str(name)[:TIMEZONE_LENGTH]!r} is not a time zone name")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"{name!r} is not a known time zone: give an IANA name such as UTC or Europe/Paris"
        ) from None


def check_name(name: Any) -> str:
    """InvalidInput unless `name` can name a schedule: letters, digits, `.`, `_` and `-`,
    at most SCHEDULE_NAME_LENGTH characters."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > SCHEDULE_NAME_LENGTH:
        raise InvalidInput(
            f"{str(name)[:SCHEDULE_NAME_LENGTH]!r} is not a schedule name: letters, digits, "
            f"'.', '_' and '-', starting with a letter or digit, at most "
            f"{SCHEDULE_NAME_LENGTH} characters"
        )
    return name


def check_choice(value: Any, choices: tuple[str, ...], what: str) -> str:
    """InvalidInput unless `value` is one of `choices`."""
    if value not in choices:
        raise InvalidInput(f"{what} must be one of {', '.join(choices)}, not {value!r}")
    return str(value)


def _cron(expression: str, start: datetime) -> croniter:
    # Imported when a cron expression is first read: every `turnout` command imports this
    # module, and most never need croniter (nor the dateutil it loads).
    from croniter import croniter

    return croniter(expression, start)


def tick_key(name: str, tick: datetime) -> str:
    """The business key of the instance a tick starts: the same tick, the same key, so a
    start retried after an unknown outcome cannot start a second instance."""
    return f"schedule:{name}:{tick.astimezone(UTC).isoformat()}"


@dataclass(frozen=True)
class Ticking:
    """When a schedule ticks: a cron expression in a time zone, or every `every` seconds."""

    cron: str | None
    every: int | None
    timezone: str

    def first_at_or_after(self, moment: datetime) -> datetime:
        """The first tick at `moment` or after it (an interval's series starts at `moment`)."""
        if self.cron is None:
            return moment
        return self.after(moment - timedelta(microseconds=1))

    def after(self, moment: datetime) -> datetime:
        """The first tick strictly after `moment` (for an interval, `moment` + the interval)."""
        if self.cron is None:
            return moment + timedelta(seconds=self.every or 1)
        local = moment.astimezone(ZoneInfo(self.timezone))
        found: datetime = _cron(self.cron, local).get_next(datetime)
        return found.astimezone(UTC)

    def next_after(self, anchor: datetime, now: datetime) -> datetime:
        """The first tick after `now` in the series through `anchor` (a tick)."""
        if self.cron is None:
            step = timedelta(seconds=self.every or 1)
            passed = (now - anchor) // step + 1 if now >= anchor else 0
            return anchor + passed * step
        return self.after(now)

    def due(self, first: datetime, now: datetime, most: int) -> tuple[list[datetime], int]:
        """The newest `most` ticks from `first` (a tick) to `now`, oldest first, and how many
        came due in all (ticks older than those returned were missed for good)."""
        if first > now:
            return [], 0
        if self.cron is None:
            step = timedelta(seconds=self.every or 1)
            count = (now - first) // step + 1
            newest = first + (count - 1) * step
            return [newest - k * step for k in reversed(range(min(most, count)))], count
        ticks: list[datetime] = []
        local = (now + timedelta(microseconds=1)).astimezone(ZoneInfo(self.timezone))
        backwards = _cron(self.cron, local)
        while len(ticks) < most + 1:
            tick = backwards.get_prev(datetime).astimezone(UTC)
            if tick < first:
                break
            ticks.append(tick)
        # Counting every missed tick of a long downtime could take long: past the bound, the
        # count says "more than `most`".
        count = len(ticks)
        return list(reversed(ticks[:most])), count

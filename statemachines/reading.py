"""How the values of a definition are read from YAML: names, expressions, durations and
transitions, each checked where it is written, each problem noted with its line and column
instead of stopping. `build.py` reads the definition's structure with it.
"""

from __future__ import annotations

import difflib
import re
from datetime import timedelta
from typing import Any

from .deadlines import DATA_NAMES, EXAMPLE_INSTANT, instant_of, names_read, split_offset
from .durations import parse_duration
from .errors import ExpressionError, Problem
from .expressions import NAMES, Expression, ExpressionSyntaxError
from .loader import Document, PathKey
from .model import (
    MAX_PATH_LENGTH,
    MAX_TIMER_KEY_LENGTH,
    Position,
    Timer,
    TimerKind,
    Transition,
)

TRANSITION_KEYS = ("to", "if", "assign")
CATCH_ALL = "*"
# An error type: an exception's class name (`Timeout`, `ValueError`, `payments.Declined`).
ERROR_TYPE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
EVENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# An `after` key meant as a duration (`30s`, `PT30S`, ` 2d`), not an expression.
DURATION_START = re.compile(r"^\s*(?:[0-9.]|[Pp][0-9Tt])")
TIMESTAMP_START = re.compile(r"^\s*[0-9]{4}-")  # an `at` key meant as a timestamp
# `item` and `index` exist only for the input of a foreach task.
SCOPE_NAMES = tuple(name for name in NAMES if name not in ("item", "index"))


def suggest(word: str, choices: Any) -> str:
    """` — did you mean 'x'?` when a close match exists, else ''."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" — did you mean {match[0]!r}?" if match else ""


class Reader:
    """Reads the values of a definition (names, expressions, durations, transitions) from a
    Document, noting each problem at its line instead of stopping."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Problem] = []
        self.lines: list[str] = []

    # -- reporting -------------------------------------------------------------------------
    def fail(self, path: PathKey, message: str, key: bool = False) -> None:
        self.problems.append(self.doc.problem(path, message, key))

    def too_long(self, text: str, most: int, what: str, path: PathKey, key: bool = False) -> None:
        """Note `what` when `text` is longer than `most` characters, the column it is kept in."""
        if len(text) > most:
            self.fail(path, f"{what} is {len(text)} characters, over the limit of {most}", key)

    def pos(self, path: PathKey, key: bool = False) -> Position:
        line, column = self.doc.where(path, key)
        return Position(line, column, self.doc.file)

    def keys(
        self, data: dict[str, Any], path: PathKey, allowed: tuple[str, ...], what: str
    ) -> None:
        for key in data:
            if key not in allowed:
                self.fail(
                    (*path, key), f"unknown key {key!r} in {what}{suggest(key, allowed)}", key=True
                )

    def mapping(self, value: Any, path: PathKey, what: str) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        self.fail(path, f"{what} must be a mapping, not {kind_of(value)}")
        return None

    # -- scalars ---------------------------------------------------------------------------
    def expression(
        self, value: Any, path: PathKey, names: tuple[str, ...] = SCOPE_NAMES
    ) -> Expression | None:
        if isinstance(value, bool) or value is None:
            text = {True: "True", False: "False", None: "None"}[value]
        elif isinstance(value, int | float | str):
            text = value if isinstance(value, str) else repr(value)
        else:
            self.fail(path, f"an expression must be text, not {kind_of(value)}")
            return None
        try:
            return Expression(text, names)
        except ExpressionSyntaxError as exc:
            line, column = self.doc.where(path)
            column = self.column_within(line, column, text, exc.offset)
            self.problems.append(
                Problem(f"expression {text!r}: {exc}", line, column, self.doc.file)
            )
            return None

    def column_within(self, line: int, column: int, text: str, offset: int) -> int:
        """The column of `offset` inside `text` when the text stands verbatim on its line
        (plain or quoted), else the column where the value starts."""
        source = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        stripped = text.strip()
        lead = len(text) - len(text.lstrip())
        for start in (column - 1, column):  # plain, then after an opening quote
            if stripped and source.startswith(stripped, start + lead):
                return start + lead + offset + 1
        return column

    def duration(self, value: Any, path: PathKey, key: bool = False) -> Any:
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(path, str(exc), key)
            return None

    def optional_duration(self, data: dict[str, Any], key: str, where: PathKey) -> Any:
        """The duration under `key` in `data` (at `where`), None when the key is absent."""
        return self.duration(data[key], (*where, key)) if key in data else None

    def reactions(self, data: dict[str, Any], where: PathKey) -> dict[str, Any]:
        """The `on`, timers (`after` and `at`) and `always` of a state or a region, as the
        model keeps them."""
        return {
            "on": self.on(data.get("on"), (*where, "on")) if "on" in data else (),
            "after": self.timers(data, where),
            "always": self.transitions(data["always"], (*where, "always"))
            if "always" in data
            else (),
        }

    # -- transitions -----------------------------------------------------------------------
    def on(self, raw: Any, where: PathKey) -> tuple[tuple[str, tuple[Transition, ...]], ...]:
        data = self.mapping(raw, where, "on")
        if data is None:
            return ()
        result = []
        for event, body in data.items():
            if not EVENT_RE.match(event):
                self.fail(
                    (*where, event),
                    f"event name {event!r} must be letters, digits, '_', '-' or '.'",
                    key=True,
                )
            self.too_long(event, MAX_PATH_LENGTH, "event name", (*where, event), key=True)
            if event == "failed" and _is_catch(body):
                result.append((event, self.catches(body, (*where, event))))
            else:
                result.append((event, self.transitions(body, (*where, event))))
        return tuple(result)

    def catches(self, data: dict[str, Any], where: PathKey) -> tuple[Transition, ...]:
        """`failed: {TYPE: TRANSITIONS, ...}`: each TYPE's transitions guarded by the
        failure's `error.type`, in file order; `"*"` (last) catches every other type."""
        caught: list[Transition] = []
        last = list(data)[-1]
        for error_type, body in data.items():
            at = (*where, error_type)
            if error_type != CATCH_ALL and not ERROR_TYPE_RE.match(error_type):
                self.fail(at, f"error type {error_type!r} must be a name like 'Timeout'", key=True)
                continue
            if error_type == CATCH_ALL and error_type != last:
                self.fail(at, f"{CATCH_ALL!r} catches every other type: put it last", key=True)
            matches = None
            if error_type != CATCH_ALL:
                matches = Expression(f"event.error.type == {error_type!r}", SCOPE_NAMES)
            for transition in self.transitions(body, at):
                guard = transition.guard
                if matches is not None and guard is not None:
                    guard = Expression(f"({matches.text}) and ({guard.text})", SCOPE_NAMES)
                caught.append(
                    Transition(
                        transition.target,
                        guard or matches,
                        transition.assign,
                        transition.position,
                        catch=error_type,
                    )
                )
        return tuple(caught)

    def timers(self, data: dict[str, Any], where: PathKey) -> tuple[Timer, ...]:
        """The `after` timers of a state or region, then its `at` ones, in file order; the
        N-th one read from data is keyed `#N`."""
        timers: list[Timer] = []
        for kind in ("after", "at"):
            if kind not in data:
                continue
            entries = self.mapping(data[kind], (*where, kind), kind) or {}
            for key, body in entries.items():
                at = (*where, kind, key)
                transitions = self.transitions(body, at)
                data_timers = sum(timer.value is not None for timer in timers)
                timer = self.timer(kind, key, at, transitions, f"#{data_timers + 1}")
                timers.append(timer)
        return tuple(timers)

    def timer(
        self, kind: str, key: Any, at: PathKey, transitions: tuple[Transition, ...], data_key: str
    ) -> Timer:
        """One timer: a fixed `after` duration, or an expression read on entry. An
        unreadable key is reported; its transitions still count for the graph."""
        fixed = Timer(str(key), timedelta(seconds=1), transitions)
        if not isinstance(key, str):
            if kind == "after":
                self.duration(key, at, key=True)
            else:
                self.fail(at, f"an 'at' key is an expression giving a timestamp, not {key!r}", True)
            return fixed
        duration_problem = ""
        if kind == "after":
            try:
                delay = parse_duration(key)
            except ValueError as exc:
                duration_problem = str(exc)
            else:
                self.too_long(key, MAX_TIMER_KEY_LENGTH, "duration", at, key=True)
                return Timer(key, delay, transitions)
        text, offset = split_offset(key) if kind == "at" else (key, timedelta(0))
        written = " ".join(key.split())  # named so in history, whose event column is bounded
        if len(written) > MAX_TIMER_KEY_LENGTH:
            self.too_long(written, MAX_TIMER_KEY_LENGTH, f"an {kind!r} key", at, key=True)
            return fixed
        if kind == "at" and _is_instant(text):  # `at: {2026-03-01T09:00:00Z: ...}`
            value = Expression(repr(text.strip()), ())
            return Timer(data_key, timedelta(0), transitions, value, "at", offset, written)
        meant_as_duration = kind == "after" and DURATION_START.match(key) is not None
        if kind == "at" and TIMESTAMP_START.match(text):
            self.fail(at, f"{key!r} is no ISO-8601 timestamp such as {EXAMPLE_INSTANT!r}", True)
            return fixed
        try:
            value = Expression(text, SCOPE_NAMES)
        except ExpressionSyntaxError as exc:
            what = "a duration such as 30s or 2d, nor" if kind == "after" else "a timestamp, nor"
            problem = f"{key!r} is not {what} an expression: {exc}"
            self.fail(at, duration_problem if meant_as_duration else problem, key=True)
            return fixed
        read = names_read(value)
        if kind == "after" and not read & DATA_NAMES:
            problem = f"{key!r} is not a duration such as 30s or 2d, nor an expression over "
            problem += "context or event"
            self.fail(at, duration_problem if meant_as_duration else problem, key=True)
            return fixed
        if kind == "at" and not read:
            try:  # the same instant for every instance: checked now
                constant = value.evaluate({})
                instant_of(constant)
            except ExpressionError as exc:
                self.fail(at, f"at {key!r}: {exc}", key=True)
                return fixed
            except ValueError as exc:
                self.fail(at, f"at {key!r}: {constant!r} {exc}", key=True)
                return fixed
        timer_kind: TimerKind = "at" if kind == "at" else "after"
        return Timer(data_key, timedelta(0), transitions, value, timer_kind, offset, written)

    def transitions(self, raw: Any, where: PathKey) -> tuple[Transition, ...]:
        if isinstance(raw, list):
            if not raw:
                self.fail(where, "an empty list of transitions")
            read = (self.transition(item, (*where, index)) for index, item in enumerate(raw))
            return tuple(transition for transition in read if transition is not None)
        single = self.transition(raw, where)
        return (single,) if single is not None else ()

    def transition(self, raw: Any, where: PathKey) -> Transition | None:
        if isinstance(raw, str):
            return Transition(raw, position=self.pos(where))
        if not isinstance(raw, dict):
            expected = "a transition is a state name or a mapping with 'to', 'if', 'assign'"
            self.fail(where, f"{expected}, not {kind_of(raw)}")
            return None
        self.keys(raw, where, TRANSITION_KEYS, "a transition")
        target = raw.get("to")
        if target is not None and not isinstance(target, str):
            self.fail((*where, "to"), f"'to' must be a state name, not {kind_of(target)}")
            return Transition(None, position=self.pos((*where, "to")))
        guard = self.expression(raw["if"], (*where, "if")) if "if" in raw else None
        assign: list[tuple[str, Expression]] = []
        if "assign" in raw:
            data = self.mapping(raw["assign"], (*where, "assign"), "assign")
            for key, value in (data or {}).items():
                if not KEY_RE.match(str(key)):
                    self.fail(
                        (*where, "assign", key),
                        f"assign key {key!r} must be a plain identifier",
                        key=True,
                    )
                expression = self.expression(value, (*where, "assign", key))
                if expression is not None:
                    assign.append((str(key), expression))
        if target is None and not assign:
            self.fail(where, "a transition needs 'to' (or, for an internal one, 'assign')")
        position = self.pos((*where, "to")) if "to" in raw else self.pos(where)
        return Transition(target, guard, tuple(assign), position)


def kind_of(value: Any) -> str:
    """How a value is named in a problem: 'a mapping', 'text', 'nothing'."""
    if value is None:
        return "nothing"
    return {
        dict: "a mapping",
        list: "a list",
        str: "text",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


def _is_catch(body: Any) -> bool:
    """Whether a `failed` entry is the by-type form: a mapping none of whose keys is one of
    a transition's (`to`, `if`, `assign`)."""
    return isinstance(body, dict) and bool(body) and not set(body) & set(TRANSITION_KEYS)


def _is_instant(text: str) -> bool:
    """Whether `text` is an ISO-8601 timestamp itself (an `at` key for every instance)."""
    try:
        instant_of(text)
    except ValueError:
        return False
    return True

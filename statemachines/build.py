"""From parsed YAML to the typed model: every shorthand normalised, every local defect noted.

Structural problems (unknown keys, wrong types, bad durations and expressions, conflicting keys)
are found here; rules about the graph as a whole live in `validate.py`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from datetime import timedelta
from typing import Any

import jsonschema

from .durations import parse_duration
from .errors import Problem
from .expressions import NAMES, Expression, ExpressionSyntaxError
from .loader import Document, PathKey
from .model import (
    DEFAULT_RESULT,
    MAX_FOREACH_CONCURRENCY,
    MAX_NAME_LENGTH,
    MAX_PATH_LENGTH,
    MAX_TIMER_KEY_LENGTH,
    MAX_VERSION,
    Definition,
    Foreach,
    Position,
    Region,
    RetryPolicy,
    State,
    StateKind,
    TaskSpec,
    Timer,
    Transition,
    join,
)

TOP_KEYS = ("name", "version", "description", "input", "initial", "states")
TASK_KEYS = ("input", "result", "retry", "timeout", "compensate")
KIND_KEYS = ("task", "parallel", "foreach", "final")  # a state has at most one of them
TRANSITION_KINDS = ("on", "after", "always")  # none of them on a final state
STATE_KEYS = ("description", *KIND_KEYS, *TASK_KEYS, *TRANSITION_KINDS)
REGION_KEYS = ("initial", "states", "description")
SHORTHAND_KEYS = ("task", "input", "result", "retry", "timeout", "compensate", "description")
FOREACH_KEYS = ("items", "task", "input", "concurrency", "result", "retry", "timeout")
RETRY_KEYS = ("attempts", "delay", "backoff", "max_delay", "jitter")
TRANSITION_KEYS = ("to", "if", "assign")
NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]*$")
STATE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
EVENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
TASK_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")
KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_STATES = 5000
# `item` and `index` exist only for the input of a foreach task.
SCOPE_NAMES = tuple(name for name in NAMES if name not in ("item", "index"))
MAX_ATTEMPTS = 100


def suggest(word: str, choices: Any) -> str:
    """` — did you mean 'x'?` when a close match exists, else ''."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" — did you mean {match[0]!r}?" if match else ""


def digest_of(data: Any) -> str:
    """A content hash of the parsed definition, ignoring layout, comments and `version`."""
    content = data
    if isinstance(data, dict):
        content = {key: value for key, value in data.items() if key != "version"}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class DefinitionBuilder:
    """Builds a Definition from a Document, collecting problems instead of stopping."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Problem] = []
        self.state_count = 0
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
        self.fail(path, f"{what} must be a mapping, not {_kind(value)}")
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
            self.fail(path, f"an expression must be text, not {_kind(value)}")
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

    # -- definition ------------------------------------------------------------------------
    def definition(self, source: str) -> Definition | None:
        self.lines = source.splitlines()
        data = self.doc.data
        if not isinstance(data, dict):
            self.fail(
                (),
                f"a definition must be a mapping with name, initial and states, not {_kind(data)}",
            )
            return None
        self.keys(data, (), TOP_KEYS, "the definition")
        for required in ("name", "initial", "states"):
            if required not in data:
                self.fail((), f"missing required key {required!r}")
            elif data[required] is None:
                self.fail((required,), f"required key {required!r} has no value")
        name = data.get("name")
        if name is not None and not (isinstance(name, str) and NAME_RE.match(name)):
            self.fail(("name",), f"name {name!r} must match [a-z][a-z0-9_.-]*")
        elif isinstance(name, str):
            self.too_long(name, MAX_NAME_LENGTH, "name", ("name",))
        version = data.get("version")
        if version is not None and not _whole(version, MAX_VERSION):
            self.fail(("version",), f"version must be an integer from 1 to {MAX_VERSION}")
            version = None
        description = data.get("description")
        if description is not None and not isinstance(description, str):
            self.fail(("description",), "description must be text")
        schema = self.input_schema(data)
        root = self.region("", "", data, ("",), top=True)
        if root is None:
            return None
        return Definition(
            name=name if isinstance(name, str) else "",
            version=version,
            description=description if isinstance(description, str) else None,
            input_schema=schema,
            root=root,
            source=source,
            file=self.doc.file,
            digest=digest_of(data),
            raw=data,
        )

    def input_schema(self, data: dict[str, Any]) -> dict[str, Any] | None:
        schema = data.get("input")
        if schema is None:
            return None
        if not isinstance(schema, dict):
            self.fail(("input",), "input must be a JSON Schema (a mapping)")
            return None
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            where = ("input", *exc.absolute_path) if exc.absolute_path else ("input",)
            self.fail(where, f"input is not a valid JSON Schema: {exc.message}")
            return None
        return schema

    # -- regions and states ----------------------------------------------------------------
    def region(
        self, name: str, path: str, data: dict[str, Any], where: PathKey, top: bool = False
    ) -> Region | None:
        base: PathKey = () if top else where
        states_raw = data.get("states")
        states: list[State] = []
        if (
            states_raw is not None
            and self.mapping(states_raw, (*base, "states"), "states") is not None
        ):
            if not states_raw:
                self.fail((*base, "states"), "states must not be empty")
            for state_name, state_raw in states_raw.items():
                state_where = (*base, "states", state_name)
                state = self.state(state_name, join(path, state_name), state_raw, state_where)
                if state is not None:
                    states.append(state)
        initial = data.get("initial")
        if initial is not None and not (isinstance(initial, str) and initial):
            self.fail((*base, "initial"), "initial must be a state name")
            initial = None
        if not top:
            missing = [key for key in ("initial", "states") if data.get(key) is None]
            if missing:
                needed = " and ".join(map(repr, missing))
                self.fail(base, f"branch {name!r} needs {needed} (or a 'task')")
        return Region(
            name=name,
            path=path,
            initial=initial or "",
            states=tuple(states),
            position=self.pos((*base, "initial") if "initial" in data else base),
        )

    def state(self, name: str, path: str, raw: Any, where: PathKey) -> State | None:
        self.state_count += 1
        if self.state_count == MAX_STATES + 1:
            self.fail(where, f"a definition may have at most {MAX_STATES} states", key=True)
        if not STATE_RE.match(name):
            self.fail(
                where,
                f"state name {name!r} must be letters, digits, '_' or '-', starting with a letter",
                key=True,
            )
        self.too_long(path, MAX_PATH_LENGTH, f"the path of state {name[:40]!r}", where, key=True)
        if raw is None:
            raw = {}
        data = self.mapping(raw, where, f"state {name!r}")
        if data is None:
            # Stand in as a final state so the graph rules still run without echoing this.
            return State(
                name=name,
                path=path,
                kind="final",
                final="succeeded",
                position=self.pos(where, key=True),
            )
        self.keys(data, where, STATE_KEYS, f"state {name!r}")
        kinds = [key for key in KIND_KEYS if data.get(key) not in (None, False)]
        if len(kinds) > 1:
            self.fail(
                (*where, kinds[1]),
                f"state {name!r} has both {kinds[0]!r} and {kinds[1]!r}; "
                "a state has at most one of them",
                key=True,
            )
        kind: StateKind
        task = foreach = final = None
        regions: tuple[Region, ...] = ()
        for key in TASK_KEYS:
            if key in data and "task" not in data:
                self.fail(
                    (*where, key),
                    f"{key!r} belongs with 'task'; state {name!r} has no task",
                    key=True,
                )
        if "task" in data:
            task = self.task_spec(data, where, with_compensate=True)
        if "foreach" in data:
            foreach = self.foreach(data["foreach"], (*where, "foreach"))
        if data.get("parallel") is not None:
            regions = self.parallel(data["parallel"], path, (*where, "parallel"))
        if data.get("final") not in (None, False):
            final = self.final(data["final"], (*where, "final"))
            for key in TRANSITION_KINDS:
                if key in data:
                    self.fail(
                        (*where, key),
                        f"final state {name!r} cannot have outgoing transitions ({key!r})",
                        key=True,
                    )
        events = self.on(data.get("on"), (*where, "on")) if "on" in data else ()
        after = self.after(data.get("after"), (*where, "after")) if "after" in data else ()
        always = self.transitions(data["always"], (*where, "always")) if "always" in data else ()
        if kinds:
            kind = kinds[0]  # type: ignore[assignment]
        elif always and not events and not after:
            kind = "choice"
        else:
            kind = "wait"
        description = data.get("description")
        if description is not None and not isinstance(description, str):
            self.fail((*where, "description"), "description must be text")
        return State(
            name=name,
            path=path,
            kind=kind,
            description=description if isinstance(description, str) else None,
            task=task,
            parallel=regions,
            foreach=foreach,
            final=final,
            on=events if not final else (),
            after=after if not final else (),
            always=always if not final else (),
            position=self.pos(where, key=True),
        )

    def final(self, value: Any, where: PathKey) -> Any:
        if value is True or value == "succeeded":
            return "succeeded"
        if value == "failed":
            return "failed"
        self.fail(where, f"final must be true, 'succeeded' or 'failed', not {value!r}")
        return "succeeded"

    def task_spec(
        self, data: dict[str, Any], where: PathKey, with_compensate: bool, per_item: bool = False
    ) -> TaskSpec:
        name = data.get("task")
        if not (isinstance(name, str) and TASK_RE.match(name)):
            self.fail(
                (*where, "task"),
                f"task must be a task name such as 'payments.validate', not {name!r}",
            )
            name = "invalid"
        self.too_long(name, MAX_NAME_LENGTH, "task name", (*where, "task"))
        compensate = data.get("compensate")
        valid = isinstance(compensate, str) and TASK_RE.match(compensate)
        if compensate is not None and not valid:
            self.fail((*where, "compensate"), f"compensate must be a task name, not {compensate!r}")
            compensate = None
        if compensate is not None:
            self.too_long(compensate, MAX_NAME_LENGTH, "task name", (*where, "compensate"))
        task_input = None
        if "input" in data:
            scope = NAMES if per_item else SCOPE_NAMES
            task_input = self.expression(data["input"], (*where, "input"), scope)
        retry = self.retry(data["retry"], (*where, "retry")) if "retry" in data else RetryPolicy()
        timeout = self.optional_duration(data, "timeout", where)
        return TaskSpec(
            name=name,
            input=task_input,
            result=self.result(data, where),
            retry=retry,
            timeout=timeout,
            compensate=compensate if with_compensate else None,
        )

    def result(self, data: dict[str, Any], where: PathKey) -> str | bool:
        if "result" not in data:
            return DEFAULT_RESULT
        value = data["result"]
        if value is False:
            return False
        if isinstance(value, str) and KEY_RE.match(value):
            return value
        self.fail((*where, "result"), f"result must be a context key or false, not {value!r}")
        return DEFAULT_RESULT

    def retry(self, raw: Any, where: PathKey) -> RetryPolicy:
        data = self.mapping(raw, where, "retry")
        if data is None:
            return RetryPolicy()
        self.keys(data, where, RETRY_KEYS, "retry")
        policy = RetryPolicy()
        attempts = data.get("attempts", 1)
        if not _whole(attempts, MAX_ATTEMPTS):
            self.fail((*where, "attempts"), f"attempts must be an integer from 1 to {MAX_ATTEMPTS}")
            attempts = 1
        backoff = data.get("backoff", 2.0)
        number = isinstance(backoff, int | float) and not isinstance(backoff, bool)
        if not (number and 1 <= backoff <= 100):
            self.fail((*where, "backoff"), "backoff must be a number from 1 to 100")
            backoff = 2.0
        jitter = data.get("jitter", False)
        if not isinstance(jitter, bool):
            self.fail((*where, "jitter"), "jitter must be true or false")
            jitter = False
        delay = self.optional_duration(data, "delay", where)
        max_delay = self.optional_duration(data, "max_delay", where)
        return RetryPolicy(
            attempts=attempts,
            delay=delay or policy.delay,
            backoff=float(backoff),
            max_delay=max_delay,
            jitter=jitter,
        )

    def foreach(self, raw: Any, where: PathKey) -> Foreach | None:
        data = self.mapping(raw, where, "foreach")
        if data is None:
            return None
        self.keys(data, where, FOREACH_KEYS, "foreach")
        for required in ("items", "task"):
            if required not in data:
                self.fail(where, f"foreach needs {required!r}")
        items = self.expression(data["items"], (*where, "items")) if "items" in data else None
        concurrency = data.get("concurrency")
        if concurrency is not None and not _whole(concurrency, MAX_FOREACH_CONCURRENCY):
            limit = MAX_FOREACH_CONCURRENCY
            self.fail((*where, "concurrency"), f"concurrency must be an integer from 1 to {limit}")
            concurrency = None
        if "task" not in data:
            return None
        task = self.task_spec(data, where, with_compensate=False, per_item=True)
        if items is None:
            return None
        return Foreach(items=items, task=task, concurrency=concurrency)

    def parallel(self, raw: Any, path: str, where: PathKey) -> tuple[Region, ...]:
        data = self.mapping(raw, where, "parallel")
        if data is None:
            return ()
        if not data:
            self.fail(where, "parallel needs at least one branch")
        regions = []
        for branch, body in data.items():
            branch_where = (*where, branch)
            if not STATE_RE.match(branch):
                self.fail(
                    branch_where,
                    f"branch name {branch!r} must be letters, digits, '_' or '-'",
                    key=True,
                )
            body = self.mapping(body, branch_where, f"branch {branch!r}")
            if body is None:
                continue
            region_path = join(path, branch)
            if "task" in body:
                self.keys(body, branch_where, SHORTHAND_KEYS, f"one-task branch {branch!r}")
                regions.append(self.shorthand(branch, region_path, body, branch_where))
            else:
                self.keys(body, branch_where, REGION_KEYS, f"branch {branch!r}")
                region = self.region(branch, region_path, body, branch_where)
                if region is not None:
                    regions.append(region)
        return tuple(regions)

    def shorthand(self, branch: str, path: str, body: dict[str, Any], where: PathKey) -> Region:
        spec = self.task_spec(body, where, with_compensate=True)
        position = self.pos(where, key=True)
        work = State(
            name=branch,
            path=join(path, branch),
            kind="task",
            task=spec,
            on=(("done", (Transition("finished", position=position),)),),
            position=position,
        )
        finished = State(
            name="finished",
            path=join(path, "finished"),
            kind="final",
            final="succeeded",
            position=position,
        )
        return Region(branch, path, branch, (work, finished), shorthand=True, position=position)

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
            result.append((event, self.transitions(body, (*where, event))))
        return tuple(result)

    def after(self, raw: Any, where: PathKey) -> tuple[Timer, ...]:
        data = self.mapping(raw, where, "after")
        if data is None:
            return ()
        timers = []
        for key, body in data.items():
            delay = self.duration(key, (*where, key), key=True)
            self.too_long(str(key), MAX_TIMER_KEY_LENGTH, "duration", (*where, key), key=True)
            transitions = self.transitions(body, (*where, key))
            # An unreadable duration is reported; its transitions still count for the graph.
            timers.append(Timer(str(key), delay or timedelta(seconds=1), transitions))
        return tuple(timers)

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
            self.fail(where, f"{expected}, not {_kind(raw)}")
            return None
        self.keys(raw, where, TRANSITION_KEYS, "a transition")
        target = raw.get("to")
        if target is not None and not isinstance(target, str):
            self.fail((*where, "to"), f"'to' must be a state name, not {_kind(target)}")
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


def _kind(value: Any) -> str:
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


def _whole(value: Any, most: int) -> bool:
    """Whether `value` is an integer (not a boolean) from 1 to `most`."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= most

"""From parsed YAML to the typed model: every shorthand normalised, every local defect noted.

Structural problems (unknown keys, wrong types, bad durations and expressions, conflicting keys)
are found here; rules about the graph as a whole live in `validate.py`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any

from .expressions import NAMES
from .loader import Document, PathKey
from .model import (
    DEFAULT_RESULT,
    MAX_FOREACH_CONCURRENCY,
    MAX_NAME_LENGTH,
    MAX_PATH_LENGTH,
    MAX_VERSION,
    SEPARATOR,
    CallSpec,
    Definition,
    Foreach,
    HistoryKind,
    NamedError,
    Region,
    Retry,
    State,
    StateKind,
    TaskSpec,
    Transition,
    join,
)
from .policies import (
    PolicyReader,
    whole,
)
from .reading import ERROR_TYPE_RE, KEY_RE, SCOPE_NAMES, kind_of

TOP_KEYS = (
    "name",
    "version",
    "description",
    "input",
    "retention",
    "deadline",
    "initial",
    "states",
)
TASK_KEYS = ("input", "result", "retry", "timeout", "compensate")
CALL_KEYS = ("input", "result", "timeout", "version")  # with `call`
# A state has at most one of them; `states` (with `initial`) makes it a compound state.
KIND_KEYS = ("task", "call", "parallel", "foreach", "final", "states")
TRANSITION_KINDS = ("on", "after", "at", "always")  # none of them on a final state
STATE_KEYS = (
    "description",
    "initial",
    *KIND_KEYS,
    "error",
    *TASK_KEYS,
    "version",
    *TRANSITION_KINDS,
)
ERROR_KEYS = ("type", "message")  # a `final: failed` state's `error`
HISTORY_KEYS = ("history", "default", "description")
HISTORY_KINDS = ("shallow", "deep")
REGION_KEYS = ("initial", "states", "description", *TRANSITION_KINDS)
SHORTHAND_KEYS = ("task", "input", "result", "retry", "timeout", "compensate", "description")
FOREACH_KEYS = (
    "items",
    "task",
    "call",
    "version",
    "input",
    "concurrency",
    "tolerate",
    "result",
    "retry",
    "timeout",
)
NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]*$")
STATE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
PATH_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$")  # a.b.c
TASK_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")
MAX_STATES = 5000


def digest_of(data: Any) -> str:
    """A content hash of the parsed definition, ignoring layout, comments and `version`."""
    content = data
    if isinstance(data, dict):
        content = {key: value for key, value in data.items() if key != "version"}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class DefinitionBuilder(PolicyReader):
    """Builds a Definition from a Document, collecting problems instead of stopping."""

    def __init__(self, doc: Document) -> None:
        super().__init__(doc)
        self.state_count = 0

    # -- definition ------------------------------------------------------------------------
    def definition(self, source: str) -> Definition | None:
        self.lines = source.splitlines()
        data = self.doc.data
        if not isinstance(data, dict):
            self.fail(
                (),
                "a definition must be a mapping with name, initial and states, "
                f"not {kind_of(data)}",
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
        if version is not None and not whole(version, MAX_VERSION):
            self.fail(("version",), f"version must be an integer from 1 to {MAX_VERSION}")
            version = None
        description = data.get("description")
        if description is not None and not isinstance(description, str):
            self.fail(("description",), "description must be text")
        schema = self.input_schema(data)
        retention = self.optional_duration(data, "retention", ())
        deadline = self.optional_duration(data, "deadline", ())
        root = self.region("", "", data, ("",), top=True)
        if root is None:
            return None
        return Definition(
            name=name if isinstance(name, str) else "",
            version=version,
            description=description if isinstance(description, str) else None,
            input_schema=schema,
            root=root,
            retention=retention,
            deadline=deadline,
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
        import jsonschema  # only for a definition with an input schema: it is slow to import

        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            where = ("input", *exc.absolute_path) if exc.absolute_path else ("input",)
            self.fail(where, f"input is not a valid JSON Schema: {exc.message}")
            return None
        return schema

    # -- regions and states ----------------------------------------------------------------
    def region(
        self,
        name: str,
        path: str,
        data: dict[str, Any],
        where: PathKey,
        top: bool = False,
        compound: bool = False,
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
            if missing and compound:
                needed = " and ".join(map(repr, missing))
                self.fail(base, f"compound state {name!r} needs {needed}", key=True)
            elif missing:
                needed = " and ".join(map(repr, missing))
                self.fail(base, f"branch {name!r} needs {needed} (or a 'task')")
        reactions: dict[str, Any] = {}
        if not top and not compound:  # a compound state's reactions are the state's own
            reactions = self.reactions(data, base)
        return Region(
            name=name,
            path=path,
            initial=initial or "",
            states=tuple(states),
            position=self.pos((*base, "initial") if "initial" in data else base),
            compound=compound,
            **reactions,
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
            if not name or SEPARATOR in name:
                # An empty name is the chart's top, and a dotted one a path into other states:
                # kept, either would stand for a state it is not.
                return None
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
        if "history" in data:
            return self.history(name, path, data, where)
        self.keys(data, where, STATE_KEYS, f"state {name!r}")
        kinds = [key for key in KIND_KEYS if data.get(key) not in (None, False)]
        if "initial" in data and "states" not in kinds and "states" not in data:
            kinds.append("states")  # `initial` alone: reported as a compound without states
        if len(kinds) > 1:
            self.fail(
                (*where, kinds[1]),
                f"state {name!r} has both {kinds[0]!r} and {kinds[1]!r}; "
                "a state has at most one of them",
                key=True,
            )
        kind: StateKind
        task = call = foreach = final = children = None
        regions: tuple[Region, ...] = ()
        self.keys_belong(name, data, where)
        if "task" in data:
            task = self.task_spec(data, where, with_compensate=True)
        elif "call" in data:
            call = self.call_spec(data, where)
        if "foreach" in data:
            foreach = self.foreach(data["foreach"], (*where, "foreach"))
        if data.get("parallel") is not None:
            regions = self.parallel(data["parallel"], path, (*where, "parallel"))
        if "states" in kinds:
            children = self.region(name, path, data, where, compound=True)
        if data.get("final") not in (None, False):
            final = self.final(data["final"], (*where, "final"))
            for key in TRANSITION_KINDS:
                if key in data:
                    self.fail(
                        (*where, key),
                        f"final state {name!r} cannot have outgoing transitions ({key!r})",
                        key=True,
                    )
        error = None
        if "error" in data:
            error = self.named_error(data["error"], (*where, "error"), name, final)
        reactions = self.reactions(data, where)
        events, after, always = reactions["on"], reactions["after"], reactions["always"]
        if kinds:
            kind = "compound" if kinds[0] == "states" else kinds[0]  # type: ignore[assignment]
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
            call=call,
            parallel=regions,
            foreach=foreach,
            final=final,
            on=events if not final else (),
            after=after if not final else (),
            always=always if not final else (),
            region=children,
            position=self.pos(where, key=True),
            error=error,
        )

    def history(self, name: str, path: str, data: dict[str, Any], where: PathKey) -> State:
        """A history pseudo-state: `{history: shallow | deep, default: TARGET}`."""
        self.keys(data, where, HISTORY_KEYS, f"history state {name!r}")
        written = data.get("history")
        if written not in HISTORY_KINDS:
            self.fail((*where, "history"), f"history must be 'shallow' or 'deep', not {written!r}")
        kind: HistoryKind = "deep" if written == "deep" else "shallow"
        default = None
        if "default" in data:
            target = data["default"]
            if isinstance(target, str) and target:
                default = Transition(target, position=self.pos((*where, "default")))
            else:
                self.fail((*where, "default"), "default must be a state name")
        description = data.get("description")
        return State(
            name=name,
            path=path,
            kind="history",
            description=description if isinstance(description, str) else None,
            history=kind,
            default=default,
            position=self.pos(where, key=True),
        )

    def keys_belong(self, name: str, data: dict[str, Any], where: PathKey) -> None:
        """Note a task's key on a state with no task (a call's on one with neither)."""
        for key in (*TASK_KEYS, "version"):
            if key not in data or "task" in data or ("call" in data and key in CALL_KEYS):
                continue
            if key in CALL_KEYS and key not in TASK_KEYS:
                message = f"{key!r} belongs with 'call'; state {name!r} has no call"
            elif key in CALL_KEYS:
                message = f"{key!r} belongs with 'task' or 'call'; state {name!r} has neither"
            elif "call" in data:
                message = f"{key!r} belongs with 'task'; a call state has none"
            else:
                message = f"{key!r} belongs with 'task'; state {name!r} has no task"
            self.fail((*where, key), message, key=True)

    def call_spec(self, data: dict[str, Any], where: PathKey, per_item: bool = False) -> CallSpec:
        """A call state's child (a foreach item's, `per_item`): `call: NAME`, with `version`,
        `input`, `result`, `timeout`."""
        name = data.get("call")
        if not (isinstance(name, str) and NAME_RE.match(name)):
            message = f"call must name a definition ([a-z][a-z0-9_.-]*), not {name!r}"
            self.fail((*where, "call"), message)
            name = "invalid"
        self.too_long(name, MAX_NAME_LENGTH, "definition name", (*where, "call"))
        version = data.get("version")
        if version is not None and not whole(version, MAX_VERSION):
            message = f"version must be an integer from 1 to {MAX_VERSION}"
            self.fail((*where, "version"), message)
            version = None
        call_input = None
        if "input" in data:
            scope = NAMES if per_item else SCOPE_NAMES
            call_input = self.expression(data["input"], (*where, "input"), scope)
        return CallSpec(
            definition=name,
            version=version,
            input=call_input,
            result=self.result(data, where),
            timeout=self.optional_duration(data, "timeout", where),
        )

    def final(self, value: Any, where: PathKey) -> Any:
        if value is True or value == "succeeded":
            return "succeeded"
        if value == "failed":
            return "failed"
        self.fail(where, f"final must be true, 'succeeded' or 'failed', not {value!r}")
        return "succeeded"

    def named_error(
        self, raw: Any, where: PathKey, name: str, final: str | None
    ) -> NamedError | None:
        """`error: {type: NAME, message: EXPRESSION}` of a `final: failed` state."""
        if final != "failed":
            self.fail(
                where,
                f"'error' belongs with 'final: failed'; state {name!r} is no failed final state",
                key=True,
            )
            return None
        data = self.mapping(raw, where, "error")
        if data is None:
            return None
        self.keys(data, where, ERROR_KEYS, "error")
        error_type = data.get("type")
        if "type" not in data:
            self.fail(where, "error needs 'type', the failure's name (like 'PaymentDeclined')")
            return None
        if not (isinstance(error_type, str) and ERROR_TYPE_RE.match(error_type)):
            self.fail(
                (*where, "type"), f"error type {error_type!r} must be a name like 'PaymentDeclined'"
            )
            return None
        self.too_long(error_type, MAX_NAME_LENGTH, "error type", (*where, "type"))
        if "message" not in data:
            return NamedError(error_type)
        written = len(self.problems)
        message = self.expression(data["message"], (*where, "message"))
        if message is None and isinstance(data["message"], str) and len(self.problems) > written:
            problem = self.problems[-1]  # an expression: fixed text is a quoted string in it
            hint = f'; for fixed text, quote it inside: "{_quoted(data["message"])}"'
            self.problems[-1] = dataclasses.replace(problem, message=problem.message + hint)
        return NamedError(error_type, message)

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
        retry = self.retry(data["retry"], (*where, "retry")) if "retry" in data else Retry()
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

    def foreach(self, raw: Any, where: PathKey) -> Foreach | None:
        data = self.mapping(raw, where, "foreach")
        if data is None:
            return None
        self.keys(data, where, FOREACH_KEYS, "foreach")
        if "items" not in data:
            self.fail(where, "foreach needs 'items'")
        work = self.foreach_work(data, where)
        items = self.expression(data["items"], (*where, "items")) if "items" in data else None
        concurrency = data.get("concurrency")
        if concurrency is not None and not whole(concurrency, MAX_FOREACH_CONCURRENCY):
            limit = MAX_FOREACH_CONCURRENCY
            self.fail((*where, "concurrency"), f"concurrency must be an integer from 1 to {limit}")
            concurrency = None
        tolerate = None
        if "tolerate" in data:
            tolerate = self.tolerance(data["tolerate"], (*where, "tolerate"))
        if work is None:
            return None
        task = call = None
        if work == "task":
            task = self.task_spec(data, where, with_compensate=False, per_item=True)
        else:
            call = self.call_spec(data, where, per_item=True)
        if items is None:
            return None
        return Foreach(items, task, concurrency=concurrency, tolerate=tolerate, call=call)

    def foreach_work(self, data: dict[str, Any], where: PathKey) -> str | None:
        """What a foreach runs per item, `task` or `call` (exactly one of them), noting the
        keys that belong with the other; None when neither is written."""
        if "task" in data and "call" in data:
            message = "foreach has both 'task' and 'call'; each item runs one of them"
            self.fail((*where, "call"), message, key=True)
        if "task" not in data and "call" not in data:
            self.fail(where, "foreach needs 'task' (a task per item) or 'call' (a child per item)")
            return None
        work = "task" if "task" in data else "call"
        for key, owner in (("version", "call"), ("retry", "task")):
            if key in data and work != owner:
                hint = "; retry belongs in the called definition" if key == "retry" else ""
                message = f"{key!r} belongs with {owner!r}; this foreach has {work!r}{hint}"
                self.fail((*where, key), message, key=True)
        return work

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


def _quoted(text: str) -> str:
    """`text` as a string literal of the expression language (quoted with ')."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

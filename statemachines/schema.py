"""The JSON Schema of the definition language, for editors (draft 2020-12).

It describes the shape of a definition file; graph rules (targets, reachability) and the
parsing of expressions stay with the loader, which remains the authority.
"""

from __future__ import annotations

import itertools
from typing import Any

from .build import (
    CALL_KEYS,
    KIND_KEYS,
    NAME_RE,
    PATH_RE,
    SHORTHAND_KEYS,
    STATE_RE,
    TASK_KEYS,
    TASK_RE,
)
from .model import (
    DEFAULT_FOREACH_CONCURRENCY,
    MAX_FOREACH_CONCURRENCY,
    MAX_FOREACH_ITEMS,
    MAX_NAME_LENGTH,
    MAX_VERSION,
)
from .policies import MAX_ATTEMPTS, MAX_RETRY_ERRORS, MAX_RETRY_POLICIES, PERCENT_RE
from .reading import CATCH_ALL, ERROR_TYPE_RE, EVENT_RE, KEY_RE, TRANSITION_KEYS

DIALECT = "https://json-schema.org/draft/2020-12/schema"

# Compact durations (`500ms`, `1h30m`) or ISO 8601 ones (`PT30S`, `P1DT2H`).
_COMPACT = r"(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h|d|w))+"
_ISO = (
    r"[Pp](?=[0-9Tt])(?:[0-9]+(?:[.,][0-9]+)?[YyMmWwDd])*"
    r"(?:[Tt](?:[0-9]+(?:[.,][0-9]+)?[HhMmSs])+)?"
)
DURATION = rf"^\s*(?:{_COMPACT}|{_ISO})\s*$"
# An expression that reads the instance's data (a timer's delay read on entry).
DATA_EXPRESSION = r"\b(?:context|event|result)\b"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


def _described(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, **schema}


_TOP = {
    "name": _described(
        "The definition's name, unique among deployed definitions.",
        {"type": "string", "pattern": NAME_RE.pattern, "maxLength": MAX_NAME_LENGTH},
    ),
    "version": _described(
        "Optional version number. Deploying changed content without it creates the next "
        "version; naming a version that exists with other content is refused.",
        {"type": "integer", "minimum": 1, "maximum": MAX_VERSION},
    ),
    "description": _described("What the workflow does, for people.", {"type": "string"}),
    "input": _described(
        "A JSON Schema (draft 2020-12) the data given at start must satisfy.",
        {"type": "object", "$ref": DIALECT},
    ),
    "retention": _described(
        "How long a finished instance is kept (a duration such as 30d); workers then delete "
        "it with its history. Without it, instances are kept until purged.",
        _ref("duration"),
    ),
    "deadline": _described(
        "How long an instance may run from its start (a duration such as 2d): past it, the "
        "instance fails with DeadlineExceeded and its completed steps are compensated. A "
        "start may give its own deadline instead.",
        _ref("duration"),
    ),
    "initial": _described("The state an instance enters first.", _ref("stateName")),
    "states": _described("The states of the workflow, by name, in file order.", _ref("states")),
}

_TASK = {
    "task": _described(
        "On entry, schedule the task of this name. Its result fires 'done'; its failure, "
        "once attempts are exhausted (or timed out), fires 'failed'.",
        _ref("taskName"),
    ),
    "input": _described(
        "Expression: what the task receives (default: the whole context).", _ref("expression")
    ),
    "result": _described(
        "Where the task's result goes: by default a mapping is merged into the context and "
        "anything else is stored under the state's name; a KEY stores it under that key; "
        "false drops it.",
        _ref("result"),
    ),
    "retry": _described("How a failed attempt is retried.", _ref("retry")),
    "timeout": _described(
        "Time allowed per attempt; an attempt past it has failed.", _ref("duration")
    ),
    "compensate": _described(
        "A task that undoes this state's task, run in reverse order of completion when the "
        "instance later fails without a route for it or is cancelled.",
        _ref("taskName"),
    ),
}

_RETRY_POLICY = {
    "attempts": _described(
        "Attempts in total (default 1); in a list, failures this policy takes at most.",
        {"type": "integer", "minimum": 1, "maximum": MAX_ATTEMPTS},
    ),
    "delay": _described("Wait before the second attempt (default 1s).", _ref("duration")),
    "backoff": _described(
        "Multiplier of the wait after each failure (default 2).",
        {"type": "number", "minimum": 1, "maximum": 100},
    ),
    "max_delay": _described("Longest wait between attempts.", _ref("duration")),
    "jitter": _described("Scale each wait by a random factor in [0.5, 1].", {"type": "boolean"}),
}

_CALL = {
    "call": _described(
        "On entry, start an instance of the deployed definition of this name (a child). "
        "Its success fires 'done' with its final context (stored as a task's result is); "
        "its failure or cancellation fires 'failed'. Leaving the state cancels the child.",
        {"type": "string", "pattern": NAME_RE.pattern, "maxLength": MAX_NAME_LENGTH},
    ),
    "version": _described(
        "The version of the called definition (default: the latest deployed when the "
        "state is entered).",
        {"type": "integer", "minimum": 1, "maximum": MAX_VERSION},
    ),
}

_STATE = {
    "description": _described("What the state is for, for people.", {"type": "string"}),
    **_TASK,
    **_CALL,
    "on": _described(
        "Transitions fired by events: EVENT -> TRANSITIONS. 'done' and 'failed' "
        "are fired by the state's task, parallel or foreach.",
        _ref("on"),
    ),
    "after": _described(
        "Timers started on entry and dropped on exit: DURATION -> TRANSITIONS, or "
        "EXPR -> TRANSITIONS where EXPR (over context and event) gives, on entry, a number "
        "of seconds or a duration such as '90m'.",
        _ref("after"),
    ),
    "at": _described(
        "Timers due at an instant, started on entry and dropped on exit: INSTANT -> "
        "TRANSITIONS, where INSTANT is an ISO-8601 timestamp or an expression giving one "
        "(without an offset: UTC), optionally followed by '- DURATION' or '+ DURATION' "
        "(context.starts - 2d). A past instant fires at once.",
        _ref("at"),
    ),
    "always": _described(
        "Eventless transitions, evaluated on entry and after each assign.", _ref("transitions")
    ),
    "parallel": _described(
        "Fan-out into regions that run side by side; 'done' fires when every region has "
        "finished, 'failed' when one fails.",
        _ref("parallel"),
    ),
    "foreach": _described("Dynamic fan-out: one task per item of a list.", _ref("foreach")),
    "initial": _described(
        "A compound state's first child, entered when the state is entered.",
        _ref("stateName"),
    ),
    "states": _described(
        "A compound state's children, with 'initial': the state's own 'on', 'after' and "
        "'always' apply while any of them is active; a final child fires the state's "
        "'done' ('failed' for a failed one).",
        _ref("states"),
    ),
    "final": _described(
        "A final state: true or 'succeeded', or 'failed'. The instance (or region) ends "
        "with that outcome.",
        {"enum": [True, False, "succeeded", "failed"]},
    ),
    "error": _described(
        "Only with final: 'failed': the failure's name and message, which the instance "
        "keeps as its error and a parallel or compound state around it receives with "
        "its 'failed'.",
        _ref("namedError"),
    ),
}

_NOT_FALSE = {"not": {"enum": [None, False]}}


def _one_kind_only() -> dict[str, Any]:
    """Not two of task, parallel, foreach and final (each present and not false)."""
    pairs = []
    for first, second in itertools.combinations(KIND_KEYS, 2):
        present = {first: _NOT_FALSE, second: _NOT_FALSE}
        pairs.append({"type": "object", "properties": present, "required": [first, second]})
    return {"not": {"anyOf": pairs}}


def _defs() -> dict[str, Any]:
    transition = {
        "type": "object",
        "description": "One transition: to 'to' if 'if' holds, after running 'assign'. Without "
        "'to' it is internal: 'assign' runs and the state is not exited.",
        "properties": {
            "to": _described(
                "The target state: a full dotted name, or a bare name (the nearest state "
                "of that name looking outward, else the only one anywhere).",
                {"anyOf": [_ref("target"), {"type": "null"}]},
            ),
            "if": _described(
                "Guard expression; the first transition whose guard holds wins.", _ref("expression")
            ),
            "assign": _described(
                "Context keys to write: KEY -> expression.",
                {
                    "type": "object",
                    "propertyNames": {"pattern": KEY_RE.pattern},
                    "additionalProperties": _ref("expression"),
                },
            ),
        },
        "additionalProperties": False,
        "anyOf": [
            {"required": ["to"], "properties": {"to": {"type": "string"}}},
            {"required": ["assign"]},
        ],
    }
    single = {"anyOf": [_ref("target"), _ref("transition")]}
    return {
        "stateName": {"type": "string", "pattern": STATE_RE.pattern},
        "target": {
            "description": "A state's name, or its full dotted name (`shipping.packing`).",
            "type": "string",
            "pattern": PATH_RE.pattern,
        },
        "taskName": {"type": "string", "pattern": TASK_RE.pattern},
        "expression": {
            "description": "An expression with Python syntax over context, event, result, now "
            "(and item, index in foreach inputs).",
            "type": ["string", "number", "boolean", "null"],
        },
        "duration": {
            "description": "500ms, 30s, 5m, 2h, 7d, 1w, combinations such as 1h30m, or "
            "ISO 8601 such as PT30S.",
            "type": "string",
            "pattern": DURATION,
        },
        "result": {"anyOf": [{"type": "string", "pattern": KEY_RE.pattern}, {"const": False}]},
        "transition": transition,
        "transitions": {
            "description": "A state name, a {to, if, assign} mapping, or a list of those tried "
            "in order.",
            "anyOf": [*single["anyOf"], {"type": "array", "minItems": 1, "items": single}],
        },
        "on": {
            "type": "object",
            "propertyNames": {"pattern": EVENT_RE.pattern},
            "properties": {"failed": {"anyOf": [_ref("transitions"), _ref("catch")]}},
            "additionalProperties": _ref("transitions"),
        },
        "catch": {
            "description": "failed by error type: TYPE -> TRANSITIONS in order, the first "
            "whose type is the failure's error.type; '*' (last) catches every other type.",
            "type": "object",
            "minProperties": 1,
            "propertyNames": {
                "anyOf": [{"pattern": ERROR_TYPE_RE.pattern}, {"const": CATCH_ALL}],
                "not": {"enum": list(TRANSITION_KEYS)},
            },
            "additionalProperties": _ref("transitions"),
        },
        "namedError": {
            "type": "object",
            "required": ["type"],
            "properties": {
                "type": _described(
                    "The error type, a name like PaymentDeclined: what 'failed: {TYPE: ...}' "
                    "catches.",
                    {"type": "string", "pattern": ERROR_TYPE_RE.pattern},
                ),
                "message": _described(
                    "Expression giving the message (fixed text is a quoted string in it: "
                    "\"'card declined'\").",
                    _ref("expression"),
                ),
            },
            "additionalProperties": False,
        },
        "after": {
            "type": "object",
            "propertyNames": {"anyOf": [{"pattern": DURATION}, {"pattern": DATA_EXPRESSION}]},
            "additionalProperties": _ref("transitions"),
        },
        "at": {
            "type": "object",
            "propertyNames": {"minLength": 1},
            "additionalProperties": _ref("transitions"),
        },
        "retry": {
            "description": "One policy for every error type, or a list of policies by error "
            "type: a failure goes to the first policy whose errors name its type (the one "
            "without errors takes every other type but InputMismatch, and comes last); each "
            "policy counts its own failures; a failure no policy takes is not retried.",
            # A mapping is one policy; `properties` and `items` each apply to one form.
            "type": ["object", "array"],
            "properties": _RETRY_POLICY,
            "additionalProperties": False,
            "minItems": 1,
            "maxItems": MAX_RETRY_POLICIES,
            "items": _ref("typedRetryPolicy"),
        },
        "typedRetryPolicy": {
            "type": "object",
            "properties": {
                **_RETRY_POLICY,
                "errors": _described(
                    "The error types (error.type) this policy retries; without it, every "
                    "other type.",
                    {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": MAX_RETRY_ERRORS,
                        "uniqueItems": True,
                        "items": {
                            "type": "string",
                            "pattern": ERROR_TYPE_RE.pattern,
                            "maxLength": MAX_NAME_LENGTH,
                        },
                    },
                ),
            },
            "additionalProperties": False,
        },
        "foreach": {
            "type": "object",
            "required": ["items"],
            "oneOf": [{"required": ["task"]}, {"required": ["call"]}],
            "dependentSchemas": {
                "retry": {"required": ["task"]},
                "version": {"required": ["call"]},
            },
            "properties": {
                "items": _described(
                    f"Expression giving the list to fan out over (at most {MAX_FOREACH_ITEMS} "
                    "items; more fail the state).",
                    _ref("expression"),
                ),
                "task": _TASK["task"],
                "call": _described(
                    "Instead of a task: start a child instance of the deployed definition of "
                    "this name per item (its input must be a JSON object); its final context "
                    "is the item's result, its failure the item's failure. At most "
                    "'concurrency' children run at once; leaving the state cancels them.",
                    {k: v for k, v in _CALL["call"].items() if k != "description"},
                ),
                "version": _CALL["version"],
                "input": _described(
                    "Expression: what each task or child receives (default: the item; "
                    "'item' and 'index' are available).",
                    _ref("expression"),
                ),
                "concurrency": _described(
                    f"At most this many tasks at a time (default {DEFAULT_FOREACH_CONCURRENCY}).",
                    {"type": "integer", "minimum": 1, "maximum": MAX_FOREACH_CONCURRENCY},
                ),
                "tolerate": _described(
                    "Failed items tolerated: a number of items, or a percentage of the items "
                    "('10%', rounded down); the others' results still fire done, with "
                    "'failures' (default: the first failed item fails the state).",
                    {
                        "oneOf": [
                            {"type": "integer", "minimum": 0, "maximum": MAX_FOREACH_ITEMS},
                            {"type": "string", "pattern": PERCENT_RE.pattern},
                        ]
                    },
                ),
                "result": _described(
                    "Store the list of results (in item order) under KEY.", _ref("result")
                ),
                "retry": _TASK["retry"],
                "timeout": _described(
                    "With 'task': each attempt's limit. With 'call': how long each child may "
                    "run; past it the child is cancelled and its item fails with Timeout.",
                    _ref("duration"),
                ),
            },
            "additionalProperties": False,
        },
        "state": {
            "description": "A state. It has at most one of task, parallel, foreach, final.",
            "type": ["object", "null"],
            "properties": _STATE,
            "additionalProperties": False,
            "dependentRequired": {
                **{key: ["task"] for key in TASK_KEYS if key not in CALL_KEYS},
                "version": ["call"],
                "initial": ["states"],
                "states": ["initial"],
            },
            "dependentSchemas": {
                key: {"anyOf": [{"required": ["task"]}, {"required": ["call"]}]}
                for key in TASK_KEYS
                if key in CALL_KEYS
            },
            "allOf": [
                _one_kind_only(),
                {
                    "if": {
                        "type": "object",
                        "required": ["final"],
                        "properties": {"final": _NOT_FALSE},
                    },
                    "then": {
                        "properties": {"on": False, "after": False, "at": False, "always": False}
                    },
                },
                {
                    "if": {"type": "object", "required": ["error"]},
                    "then": {"required": ["final"], "properties": {"final": {"const": "failed"}}},
                },
            ],
        },
        "states": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": STATE_RE.pattern},
            "additionalProperties": {"oneOf": [_ref("state"), _ref("history")]},
        },
        "history": {
            "description": "A history pseudo-state of a compound state (or region): a "
            "transition to it re-enters the child that was active when the parent was last "
            "left (shallow), or every state below it that was (deep); else 'default', else "
            "the parent's initial child.",
            "type": "object",
            "required": ["history"],
            "properties": {
                "history": _described("shallow or deep.", {"enum": ["shallow", "deep"]}),
                "default": _described(
                    "Where to go the first time: a state inside the same parent.",
                    _ref("target"),
                ),
                "description": _STATE["description"],
            },
            "additionalProperties": False,
        },
        "region": {
            "description": "A region of its own: its final states finish it.",
            "type": "object",
            "required": ["initial", "states"],
            "properties": {
                "initial": _TOP["initial"],
                "states": _TOP["states"],
                "description": _STATE["description"],
                "on": _STATE["on"],
                "after": _STATE["after"],
                "at": _STATE["at"],
                "always": _STATE["always"],
            },
            "additionalProperties": False,
        },
        "shorthandRegion": {
            "description": "A one-task branch, finished when its task succeeds.",
            "type": "object",
            "required": ["task"],
            "properties": {key: _STATE[key] for key in SHORTHAND_KEYS},
            "additionalProperties": False,
        },
        "parallel": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": STATE_RE.pattern},
            "additionalProperties": {"oneOf": [_ref("shorthandRegion"), _ref("region")]},
        },
    }


def json_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) that every valid definition satisfies."""
    return {
        "$schema": DIALECT,
        "title": "turnout workflow definition",
        "description": "A state-machine workflow: states with tasks, events, timers, parallel "
        "regions and foreach fan-out.",
        "type": "object",
        "required": ["name", "initial", "states"],
        "properties": _TOP,
        "additionalProperties": False,
        "$defs": _defs(),
    }

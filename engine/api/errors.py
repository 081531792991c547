"""How an error becomes an HTTP answer: JSON `{error, message, ...}` with the status SPEC 6 names.

A turnout error is translated from two tables, looked up along the class's ancestry, so a new
error takes its middle class's status; a user's mistake is never a 500. A request FastAPI
cannot route or parse is answered in the same shape.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from statemachines.errors import (
    Conflict,
    DatabaseUnavailable,
    DefinitionError,
    DiagramTooLarge,
    EventRejected,
    InvalidInput,
    NotFound,
    RedriveRefused,
    RenderError,
    ResetRefused,
    SchemaMismatch,
    TaskNotHeld,
    TurnoutError,
    UnknownState,
)

from ..travel import HistoryNotReplayable

HTTP_STATUS: dict[type[TurnoutError], int] = {
    NotFound: 404,
    Conflict: 409,
    DefinitionError: 422,
    InvalidInput: 422,
    DiagramTooLarge: 422,  # the drawing is refused for its size; its text forms still work
    HistoryNotReplayable: 409,  # the stored history disagrees with its definition's versions
    DatabaseUnavailable: 503,
    SchemaMismatch: 503,  # the database's schema is not this release's: an operator's task
    RenderError: 503,  # Graphviz failed on a drawing it should manage: the server's fault
    TurnoutError: 400,
}
PROBLEM_FIELDS = ("line", "column", "message", "file")  # of a definition's `Problem`


def _rejected(exc: EventRejected) -> dict[str, Any]:
    return {"event": exc.event, "state": exc.state, "allowed": exc.allowed}


def _not_held(exc: TaskNotHeld) -> dict[str, Any]:
    return {"task_id": exc.task_id, "worker": exc.worker}


def _refused(exc: RedriveRefused | ResetRefused) -> dict[str, Any]:
    return {"reason": exc.reason}


def _unknown_state(exc: UnknownState) -> dict[str, Any]:
    return {"problems": exc.problems, "state": exc.state, "known": exc.known}


def _definition_problems(exc: DefinitionError) -> dict[str, Any]:
    problems = [
        {field: getattr(problem, field) for field in PROBLEM_FIELDS} for problem in exc.problems
    ]
    return {"problems": problems}


def _input_problems(exc: InvalidInput) -> dict[str, Any]:
    return {"problems": exc.problems}


def _unavailable(exc: DatabaseUnavailable) -> dict[str, Any]:
    return {"outcome_unknown": exc.outcome_unknown}  # True: the change may have committed


def _diagram_size(exc: DiagramTooLarge) -> dict[str, Any]:
    return {"states": exc.states, "transitions": exc.transitions, "limit": exc.limit}


def _not_replayable(exc: HistoryNotReplayable) -> dict[str, Any]:
    return {"seq": exc.seq}  # the first entry that did not replay


# What an answer carries besides `error` and `message`, for the errors that carry data.
BODY_FIELDS: dict[type[TurnoutError], Callable[[Any], dict[str, Any]]] = {
    EventRejected: _rejected,
    TaskNotHeld: _not_held,
    RedriveRefused: _refused,
    ResetRefused: _refused,
    UnknownState: _unknown_state,
    DefinitionError: _definition_problems,
    InvalidInput: _input_problems,
    DatabaseUnavailable: _unavailable,
    DiagramTooLarge: _diagram_size,
    HistoryNotReplayable: _not_replayable,
}
Entry = TypeVar("Entry")


def _nearest(table: dict[type[TurnoutError], Entry], exc: TurnoutError) -> Entry | None:
    """The entry of `table` for the closest of `exc`'s classes that has one."""
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return None


def error_response(exc: TurnoutError) -> JSONResponse:
    """The HTTP answer for one of turnout's errors."""
    body: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
    if (fields := _nearest(BODY_FIELDS, exc)) is not None:
        body |= fields(exc)
    return JSONResponse(body, status_code=_nearest(HTTP_STATUS, exc) or 400)


async def turnout_error(request: Request, exc: TurnoutError) -> JSONResponse:
    return error_response(exc)


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """An error FastAPI raised itself (no such route, a method not allowed, an unreadable body)."""
    # A body that cannot even be parsed is invalid input like any other (422).
    status = 422 if exc.status_code == 400 else exc.status_code
    name = "InvalidInput" if status == 422 else HTTPStatus(status).phrase.replace(" ", "")
    return JSONResponse(
        {"error": name, "message": str(exc.detail)},
        status_code=status,
        headers=getattr(exc, "headers", None),
    )


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A request whose parameters or JSON body do not fit the route's model."""
    problems = [
        f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg', '')}"
        for error in exc.errors()
    ]
    return JSONResponse(
        {"error": "InvalidInput", "message": "; ".join(problems), "problems": problems},
        status_code=422,
    )


# For FastAPI's `exception_handlers`: each is found along the raised error's classes.
EXCEPTION_HANDLERS: dict[
    int | type[Exception], Callable[[Request, Any], Coroutine[Any, Any, Response]]
] = {
    TurnoutError: turnout_error,
    StarletteHTTPException: http_error,
    RequestValidationError: invalid_request,
}

"""What the commands print and how they answer an error, without typer: the commands `main`
runs without building the typer app (`validate`, `simulate`, `schema`, in `language`) share
them with the others, which import them from `common`.
"""

from __future__ import annotations

import difflib
import functools
import json
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

if TYPE_CHECKING:
    from rich.console import Console

    from engine.ids import AmbiguousId
    from statemachines.errors import DefinitionError


class LazyConsole:
    """A rich Console made on first use (importing rich's console costs more than a command
    that prints one line takes): its attributes are the console's; `real` is the console."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    @property
    def real(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


out = LazyConsole()
err = LazyConsole(stderr=True, soft_wrap=True)


Command = TypeVar("Command", bound=Callable[..., Any])


def _problems(exc: DefinitionError) -> list[str]:
    return [str(problem) for problem in exc.problems]


def _one_line(exc: BaseException) -> list[str]:
    return [f"error: {exc}{suggestion(exc)}"]


def _candidates(exc: AmbiguousId) -> list[str]:
    """An ambiguous id prefix: the error, then each candidate id on a line of its own."""
    more = ["  ..."] if exc.more else []
    return (
        [f"error: instance id prefix {exc.prefix!r} is ambiguous; it starts:"]
        + [f"  {candidate}" for candidate in exc.candidates]
        + more
    )


def did_you_mean(given: str, known: Iterable[str]) -> str:
    """ "; did you mean 'x'?" for the known name nearest `given`, when one is near enough."""
    close = difflib.get_close_matches(given, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close and close[0] != given else ""


def suggestion(exc: BaseException) -> str:
    """What a mistyped name in `exc` may have meant: an event the state accepts, a state of
    the definition, a deployed definition (found by open_engine), or ""."""
    from statemachines.errors import EventRejected, UnknownState

    if isinstance(exc, EventRejected):
        return did_you_mean(exc.event, exc.allowed)
    if isinstance(exc, UnknownState):
        return did_you_mean(exc.state, exc.known)
    return str(getattr(exc, "did_you_mean", ""))


def _unreadable(exc: OSError) -> list[str]:
    """A file or directory the command could not read or write."""
    where = f" ({exc.filename})" if exc.filename else ""
    return [f"error: {exc.strerror or exc}{where}"]


def _interrupted(exc: KeyboardInterrupt) -> list[str]:
    return []


class Answer(NamedTuple):
    """How the command line answers an error: an exit status and the lines said on stderr."""

    status: int
    lines: Callable[[Any], list[str]]


@functools.cache
def answers() -> dict[type[BaseException], Answer]:
    """How each error is answered, by its nearest class listed here: bad input (a definition, a
    payload, an argument) exits 2, anything else that went wrong 1, Ctrl-C 130 as a shell
    would. (A function, so that the error classes are imported once an error is raised.)"""
    from engine.ids import AmbiguousId
    from statemachines.errors import DefinitionError, InvalidInput, TurnoutError

    return {
        DefinitionError: Answer(2, _problems),
        AmbiguousId: Answer(2, _candidates),
        InvalidInput: Answer(2, _one_line),
        TurnoutError: Answer(1, _one_line),
        OSError: Answer(1, _unreadable),
        KeyboardInterrupt: Answer(130, _interrupted),
    }


def answer(exc: BaseException) -> Answer:
    """The answers() entry of the nearest class of `exc` (one of theirs), along its MRO."""
    known = answers()
    return next(known[cls] for cls in type(exc).__mro__ if cls in known)


def usage_error(message: str) -> Exception:
    """A UsageError (bad usage: exit status 2) to raise, imported only when one is."""
    from statemachines.errors import UsageError

    return UsageError(message)


def say(text: str) -> None:
    """One line on stdout, printed as it is (no markup, no highlighting, never wrapped)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def note(text: str) -> None:
    """One line on stderr (a problem, a warning, progress), printed as it is."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def answered(exc: BaseException) -> int | None:
    """The lines that answer `exc` said on stderr, and its exit status; None (nothing said)
    for an error that is not one of answers()'s, which is left to go up."""
    if not any(cls in answers() for cls in type(exc).__mro__):
        return None
    status, lines = answer(exc)
    for line in lines(exc):
        note(line)
    return status


def reporting_errors(
    exit_with: Callable[[int], BaseException],
) -> Callable[[Command], Command]:
    """A decorator turning turnout's exceptions (and an unreadable file, and Ctrl-C) into
    lines on stderr and an exit status (`exit_with(status)`, the exit of the command's own
    framework), never a traceback."""

    def reports_errors(command: Command) -> Command:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return command(*args, **kwargs)
            except (Exception, KeyboardInterrupt) as exc:
                status = answered(exc)
                if status is None:
                    raise
                raise exit_with(status) from None

        return wrapper  # type: ignore[return-value]

    return reports_errors


def parse_json(text: str | None, what: str = "--data") -> Any:
    """The value of a JSON argument (None when it was not given); UsageError if not JSON."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise usage_error(f"{what} is not valid JSON: {exc.msg} at column {exc.colno}") from None


def parse_object(text: str | None, what: str = "--data") -> dict[str, Any]:
    """A JSON argument that must be an object; {} when it was not given."""
    value = parse_json(text, what)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise usage_error(f"{what} must be a JSON object")
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def print_table(table: Any) -> None:
    """A rich table on stdout as wide as its content needs, however narrow the terminal (or
    COLUMNS): no column is cut short with an ellipsis, ids above all; a long line wraps."""
    from rich.measure import Measurement

    console = out.real
    needed = Measurement.get(console, console.options.update_width(10_000), table).maximum
    if needed > console.width:
        from rich.console import Console

        console = Console(width=needed, force_terminal=console.is_terminal)
    console.print(table)

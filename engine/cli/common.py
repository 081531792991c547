"""What every `turnout` command shares: the typer app, the two consoles, the --db and --json
options, opening the Engine, reading JSON arguments, and turning errors into one line on stderr
and an exit status (SPEC 5: 0 success, 1 a rejected or failed operation, 2 bad usage or input).
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple, TypeVar

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from engine import Engine
    from engine.ids import AmbiguousId
    from statemachines.errors import DefinitionError

# Nothing heavy is imported here at module level (the engine, the database layer, the
# definition language): `turnout --help`, `validate` and `simulate` start in a fraction of a
# second, and each command imports what it needs when it runs.


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


# Plain help (rich_markup_mode=None): rendering it with rich costs more start-up time than the
# rest of `turnout --help` together.
app = typer.Typer(
    name="turnout",
    help="turnout: state-machine workflows with durable instances and diagrams.",
    no_args_is_help=True,
    rich_markup_mode=None,
    add_completion=True,
    pretty_exceptions_enable=False,
)
out = LazyConsole()
err = LazyConsole(stderr=True, soft_wrap=True)


def _print_version(asked: bool) -> None:
    """`turnout --version`: the installed distribution's version, from its metadata (the one
    place it is written is pyproject.toml)."""
    if asked:
        from importlib.metadata import PackageNotFoundError, version

        try:
            installed = version("turnout")
        except PackageNotFoundError:
            installed = "unknown (not installed)"
        typer.echo(f"turnout {installed}")
        raise typer.Exit()


@app.callback()
def main_options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print turnout's version and exit.",
        ),
    ] = False,
) -> None:
    """turnout: state-machine workflows with durable instances and diagrams.

    The options --db, --json and -o/--output may come before the command or after it. An
    instance id may be given by a unique prefix of it.
    """


Command = TypeVar("Command", bound=Callable[..., Any])
DbOption = Annotated[
    str | None,
    typer.Option("--db", envvar="TURNOUT_DB", help="Database URL (default sqlite:///turnout.db)."),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON instead of tables (as -o json).")
]
OutputOption = Annotated[
    str | None,
    typer.Option("--output", "-o", metavar="FORMAT", help="table (the default), json or yaml."),
]
FORMATS = ("table", "json", "yaml")
DataOption = Annotated[str | None, typer.Option("--data", "-d", help="JSON data.")]
COMMAND_WAIT_SECONDS = 10

# Copies of the engine's values that options name in their help or take as defaults, so that
# building the command line imports no engine module; tests/surfaces/test_cli_startup.py checks
# each against the engine's own.
FINISHED_STATUSES = ("cancelled", "failed", "succeeded")  # engine.retention
MAX_PURGE_BATCH = 10_000  # engine.retention
OVERLAPS = ("skip", "allow", "buffer_one")  # engine.schedule_times
CATCH_UPS = ("none", "last", "all")  # engine.schedule_times
DEFAULT_BATCH = 64  # engine.batching
DEFAULT_LINGER = 0.002  # engine.batching
DELIVERY_STATUSES = ("pending", "delivered", "failed")  # engine.brokers.delivery_log
MAX_LISTED_DELIVERIES = 10_000  # engine.brokers.webhooks.MAX_LISTED
TRACING_EXTRA = "pip install 'turnout[tracing]'"  # engine.tracing.EXTRA


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


def reports_errors(command: Command) -> Command:
    """Turn turnout's exceptions (and an unreadable file, and Ctrl-C) into lines on stderr
    and the exit status of SPEC 5, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (Exception, KeyboardInterrupt) as exc:
            if not any(cls in answers() for cls in type(exc).__mro__):
                raise
            status, lines = answer(exc)
            for line in lines(exc):
                note(line)
            raise typer.Exit(status) from None

    return wrapper  # type: ignore[return-value]


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


def output_format(json_output: bool, output: str | None) -> str:
    """The format -o/--output names (--json is -o json); UsageError for another."""
    chosen = (output or ("json" if json_output else "table")).lower()
    if chosen not in FORMATS:
        raise usage_error(f"-o {output!r}: choose one of {', '.join(FORMATS)}")
    if json_output and chosen != "json":
        raise usage_error(f"--json and -o {output} name two formats: give one")
    return chosen


def print_value(value: Any, chosen: str) -> None:
    """`value` (what --json prints) as JSON or YAML."""
    if chosen == "yaml":
        import yaml

        plain = json.loads(json.dumps(value, default=str))
        sys.stdout.write(yaml.safe_dump(plain, sort_keys=False, allow_unicode=True))
    else:
        print_json(value)


@contextlib.contextmanager
def open_engine(db: str | None, *, serving: bool = False) -> Iterator[Engine]:
    """The Engine on `db`, closed on leaving. A one-shot command waits at most
    COMMAND_WAIT_SECONDS for a lock another process holds on an SQLite file, then says so; a
    worker or server (`serving`) waits as long as the engine does by default. A definition
    not deployed is answered with the deployed name nearest it, if one is near."""
    from sqlalchemy.exc import ArgumentError

    from engine import Engine
    from statemachines.errors import DefinitionNotFound

    try:
        engine = Engine(db) if serving else Engine(db, busy_timeout=COMMAND_WAIT_SECONDS)
    except ArgumentError as exc:
        # The URL itself is not repeated: it may carry a password.
        raise usage_error(f"the database URL (--db or TURNOUT_DB) is not usable: {exc}") from None
    with engine:
        try:
            yield engine
        except DefinitionNotFound as exc:
            names = [deployment.name for deployment in engine.definitions()]
            exc.did_you_mean = did_you_mean(exc.name, names)  # type: ignore[attr-defined]
            raise


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and Ctrl-C set `stop`: the work in hand is finished, then the command ends."""
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())


def run_until_signalled(
    run: Callable[[threading.Event], None], statistics: Callable[[], str]
) -> None:
    """`run(stop)` of a long-running command (a worker, a relay, a consumer) until SIGTERM
    or Ctrl-C sets `stop`, under a status line of `statistics()` refreshed twice a second;
    the engine's log goes to stderr, above it."""
    from rich.logging import RichHandler

    logging.getLogger("turnout").addHandler(
        RichHandler(console=err.real, show_path=False, markup=False)
    )
    stop = threading.Event()
    stop_on_signals(stop)
    with err.status(statistics(), spinner="dots") as status:

        def tick() -> None:
            while not stop.wait(0.5):
                status.update(statistics())

        threading.Thread(target=tick, daemon=True).start()
        run(stop)

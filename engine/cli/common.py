"""What every `turnout` command shares: the typer app, the --db and --json options, opening
the Engine, and turning errors into one line on stderr and an exit status (SPEC 5: 0 success,
1 a rejected or failed operation, 2 bad usage or input). The consoles, reading JSON arguments
and the answers to errors are `output`'s (typer-free), imported from here by the commands.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .output import answer as answer
from .output import did_you_mean as did_you_mean
from .output import err as err
from .output import note as note
from .output import out as out
from .output import parse_json as parse_json
from .output import parse_object as parse_object
from .output import print_json as print_json
from .output import print_table as print_table
from .output import reporting_errors
from .output import say as say
from .output import usage_error as usage_error

if TYPE_CHECKING:
    from engine import Engine

# Nothing heavy is imported here at module level (the engine, the database layer, the
# definition language): `turnout --help`, `validate` and `simulate` start in a fraction of a
# second, and each command imports what it needs when it runs.


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


# Turnout's exceptions (and an unreadable file, and Ctrl-C) as lines on stderr and the exit
# status of SPEC 5, never a traceback.
reports_errors = reporting_errors(typer.Exit)


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

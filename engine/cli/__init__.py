"""The `turnout` command line: `app` with every command registered, and `main`, the console
script. The commands live by what they act on: `definitions`, `instances`, `migrations`
(moving instances between versions), `repairs` (an operator's redrive and reset),
`histories` (as files), `retention` (purging finished instances), `feed` (the change
feed), `work` (long runs), `brokers` (relaying the change feed to a broker, consuming events
from one), `webhooks` (their delivery log), `database` (`turnout db`: the database's schema)
and `schedules` (instances started on a cron expression or an interval); what they share
(the app, options, error answers) is in `common`, which imports none of them.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from .language_help import LANGUAGE_COMMANDS

if TYPE_CHECKING:
    import typer

__all__ = ["app", "main"]


def __getattr__(name: str) -> Any:
    """`app`, built on first use (PEP 562): `turnout validate` and `simulate` run without it."""
    if name != "app":
        raise AttributeError(f"module 'engine.cli' has no attribute {name!r}")
    return built_app()


# The command modules: importing one registers its commands on `app`, and `turnout --help`
# lists them in the order they were registered.
COMMAND_MODULES = (
    "definitions",
    "feed",
    "histories",
    "instances",
    "migrations",
    "repairs",
    "retention",
    "work",
    "brokers",
    "database",
    "schedules",
    "watch",
    "webhooks",
)


def built_app() -> typer.Typer:
    """The typer app with every command registered."""
    from importlib import import_module

    for module in COMMAND_MODULES:
        import_module(f".{module}", __name__)
    from .common import app

    return app


# The options every command that opens a database or prints a result takes, which a user may
# also give before the command's name (`turnout --json history ID`): those that take a value.
GLOBAL_OPTIONS = {"--db": True, "--output": True, "-o": True, "--json": False}


def global_options_moved(args: list[str]) -> list[str]:
    """`args` with the global options given before the command's name moved after it, where
    the command reads them (before `--`, if there is one)."""
    moved: list[str] = []
    index = 0
    while index < len(args):
        given = args[index]
        joined = given.startswith("-o") and len(given) > 2  # -ojson
        name = "-o" if joined else given.partition("=")[0]
        if name not in GLOBAL_OPTIONS:
            break
        takes_value = GLOBAL_OPTIONS[name] and "=" not in given and not joined
        width = 2 if takes_value else 1
        moved += args[index : index + width]
        index += width
    rest = args[index:]
    if not moved or not rest or rest[0].startswith("-"):
        return args  # no command named after them (--version, --help): left as they are
    end = rest.index("--") if "--" in rest else len(rest)
    return rest[:end] + moved + rest[end:]


def main() -> None:
    """Entry point of the `turnout` console script: `validate`, `simulate` and `schema` run as
    click commands of their own (`language`), without building the typer app."""
    if "_TURNOUT_COMPLETE" in os.environ:  # the shell asks what may come next
        complete()
    args = global_options_moved(sys.argv[1:])
    if args and args[0] in LANGUAGE_COMMANDS:
        from .language import run

        run(args[0], args[1:])
    built_app()(args=args, prog_name="turnout")


def complete() -> None:
    """Shell completion over the whole command line, `validate`, `simulate` and `schema`
    as themselves (the app lists stand-ins for them, whose options it does not know)."""
    import typer.main

    from .language import COMMANDS

    group: Any = typer.main.get_command(built_app())  # a group: the app has many commands
    group.commands.update(COMMANDS)
    group.main(prog_name="turnout")

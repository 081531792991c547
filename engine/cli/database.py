"""The database's schema on the command line: `turnout db current` (the revision it is at,
and how far behind this release's), `turnout db upgrade` (to this release's, or `--to` an
earlier one) and `turnout db history` (the revisions this release knows). They open the
database without checking its schema first, so they work on one an Engine refuses.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from .common import COMMAND_WAIT_SECONDS, DbOption, JsonOption, app, print_json, reports_errors, say

if TYPE_CHECKING:
    from engine import schema
    from engine.store import Store

database = typer.Typer(
    name="db",
    help="The database's schema: its revision, upgrading it to this release's.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(database)


@contextmanager
def _store(db: str | None) -> Iterator[Store]:
    from engine.engine import DEFAULT_URL
    from engine.store import Store

    store = Store(
        db or os.environ.get("TURNOUT_DB") or DEFAULT_URL,
        busy_timeout=COMMAND_WAIT_SECONDS,
        schema="leave",
    )
    try:
        yield store
    finally:
        store.close()


def _described(found: schema.Found) -> str:
    from engine import schema

    if found == schema.EMPTY:
        return "none (an empty database)"
    if found == schema.EARLIER:
        return "none (tables of a release before schema revisions)"
    return found


@database.command()
@reports_errors
def current(db: DbOption = None, json_output: JsonOption = False) -> None:
    """Say the revision the database's schema is at and whether it is this release's."""
    from engine import schema

    with _store(db) as store, store.core() as conn:
        found = schema.read(conn)
    schema.check_known(found)
    behind = schema.behind_by(found)
    if json_output:
        revision = None if found in (schema.EMPTY, schema.EARLIER) else found
        print_json({"current": revision, "head": schema.head(), "behind": behind})
        return
    say(f"current: {_described(found)}")
    say(f"head: {schema.head()}")
    if found == schema.EMPTY:
        say("empty: an Engine opening it creates this release's tables")
    elif behind:
        say(f"{behind} behind: run `{schema.UPGRADE_COMMAND}`")
    else:
        say("up to date")


@database.command()
@reports_errors
def upgrade(
    to: Annotated[
        str | None,
        typer.Option("--to", help="The revision to upgrade to (default: this release's)."),
    ] = None,
    db: DbOption = None,
) -> None:
    """Upgrade the database's schema to this release's (or to the revision --to names),
    by its migrations, in one transaction."""
    from engine import schema

    with _store(db) as store:
        before, after = schema.upgrade_to(store, to)
    if before == after:
        say(f"already at revision {after}")
    else:
        say(f"upgraded from {_described(before)} to revision {after}")


@database.command()
@reports_errors
def history() -> None:
    """List the schema revisions this release knows, oldest first."""
    from engine import schema

    for revision, title in schema.described_revisions():
        say(f"{revision}  {title}")

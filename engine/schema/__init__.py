"""The database schema's revisions, kept with Alembic.

The first revision, "0001", is the schema of the first releases; every later change to
`tables.py` comes with a migration in `versions/` (files `vNNNN_name.py`, revision "NNNN").
The revision a database is at is kept in the table `turnout_schema_version`, in the same
schema as turnout's tables.

When an Engine opens a database (`prepare`):
- an empty database gets this release's tables and is stamped with the newest revision;
- a database of a release before revisions were kept (turnout's tables, no version table) is
  brought to the first revision as those releases did it, stamped "0001", then treated as
  any older revision;
- an older revision is upgraded on SQLite, under its write lock: SQLite lets one writer at a
  time, so the opener that upgrades is the database's only writer while it does. PostgreSQL
  is shared by many processes, possibly of several releases: an older revision is refused
  with SchemaOutdated, naming `turnout db upgrade`, unless the Engine was opened with
  `upgrade=True` (then the upgrade runs under an advisory lock, one opener at a time);
- a revision newer than this release knows, or one it does not know, is refused.

Alembic is imported only when a migration runs or is listed: opening an up-to-date database
costs one look for the version table and one read of it.
"""

from __future__ import annotations

import ast
import functools
import re
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from statemachines.errors import SchemaMismatch, SchemaOutdated, UsageError

from ..tables import METADATA, TABLES

if TYPE_CHECKING:
    from alembic.config import Config

VERSION_TABLE = "turnout_schema_version"
BASELINE = "0001"  # the schema of the releases before revisions were kept
DIRECTORY = Path(__file__).parent
VERSIONS = DIRECTORY / "versions"
UPGRADE_COMMAND = "turnout db upgrade"
_REVISION_FILE = re.compile(r"v(\d{4})_\w+\.py")
# Held (transaction-scoped) by whoever creates or upgrades the tables on PostgreSQL.
SCHEMA_LOCK = 7301

# The version table as Alembic makes it (same name, column and key), so that a database
# stamped here is read by Alembic and the other way round.
version_t = sa.Table(
    VERSION_TABLE,
    sa.MetaData(),
    sa.Column("version_num", sa.String(32), nullable=False),
    sa.PrimaryKeyConstraint("version_num", name=f"{VERSION_TABLE}_pkc"),
)

Found = str | Literal[":empty", ":earlier"]
EMPTY = ":empty"  # none of turnout's tables
EARLIER = ":earlier"  # turnout's tables, no version table: a release before revisions


class Store(Protocol):
    """What is used here of `engine.store.Store` (which calls `prepare` as it opens)."""

    postgres: bool
    sqlite: bool

    def core(self, write: bool = False) -> AbstractContextManager[Connection]:
        """A connection in a transaction: a write (the write lock) or a read."""

    def close(self) -> None:
        """Give back the connections."""


@functools.cache
def revisions() -> tuple[str, ...]:
    """This release's revisions, oldest first (read from the names of the version files)."""
    found = (_REVISION_FILE.fullmatch(path.name) for path in VERSIONS.iterdir())
    return tuple(sorted(match.group(1) for match in found if match))


def described_revisions() -> list[tuple[str, str]]:
    """Each revision with the first line of its file's docstring, oldest first."""
    described = []
    for revision in revisions():
        (path,) = VERSIONS.glob(f"v{revision}_*.py")
        title = (ast.get_docstring(ast.parse(path.read_text())) or path.stem).splitlines()[0]
        described.append((revision, title))
    return described


def head() -> str:
    """The newest revision this release knows: the schema of `tables.py`."""
    return revisions()[-1]


def read(conn: Connection) -> Found:
    """The revision the database of `conn` is at, EMPTY or EARLIER."""
    inspector = sa.inspect(conn)
    if inspector.has_table(VERSION_TABLE):
        revision = conn.execute(sa.select(version_t.c.version_num)).scalar()
        if revision is not None:
            return str(revision)
    if any(inspector.has_table(table.name) for table in TABLES):
        return EARLIER
    return EMPTY


def check_known(found: Found) -> None:
    """Refuse a revision this release does not know (a newer release's, or none's)."""
    if found in (EMPTY, EARLIER) or found in revisions():
        return
    if found.isdigit() and len(found) == len(head()) and found > head():
        raise SchemaMismatch(
            f"the database's schema is at revision {found}, written by a newer release of "
            f"turnout; this release knows revisions up to {head()}: upgrade turnout",
            current=found,
            head=head(),
        )
    raise SchemaMismatch(
        f"the database's schema is at revision {found!r}, which no release of turnout wrote "
        f"(this release knows {', '.join(revisions())})",
        current=found,
        head=head(),
    )


def behind_by(found: Found) -> int:
    """How many revisions a known revision is behind the newest (EMPTY and EARLIER: all)."""
    if found in (EMPTY, EARLIER):
        return len(revisions()) if found == EMPTY else len(revisions()) - 1
    return len(revisions()) - 1 - revisions().index(found)


def outdated(found: str) -> SchemaOutdated:
    """The refusal of a database at an older revision."""
    return SchemaOutdated(
        f"the database's schema is at revision {found}, this release of turnout needs "
        f"{head()}: run `{UPGRADE_COMMAND}` (with the same --db) to upgrade it",
        current=found,
        head=head(),
    )


def prepare(store: Store, mode: str = "check") -> None:
    """Make the database of `store` usable by this release, or refuse it (see the module's
    docstring), closing the store then: called by `Store` when an Engine opens. `mode` is
    "check", "upgrade" (an older revision on PostgreSQL too) or "leave" (nothing done: the
    `turnout db` commands)."""
    if mode not in ("check", "upgrade", "leave"):
        raise ValueError(f"schema must be 'check', 'upgrade' or 'leave', not {mode!r}")
    if mode == "leave":
        return
    try:
        _prepare(store, upgrade=mode == "upgrade")
    except BaseException:
        store.close()
        raise


def _prepare(store: Store, upgrade: bool) -> None:
    with store.core() as conn:
        found = read(conn)
    if found == head():
        return
    check_known(found)
    may_upgrade = store.sqlite or upgrade
    if found != EMPTY and found != EARLIER and not may_upgrade:
        raise outdated(found)
    with store.core(write=True) as conn:
        found = _lock_and_read(store, conn)  # another opener may have done it meanwhile
        if found == EMPTY:
            METADATA.create_all(conn, tables=TABLES)
            _stamp(conn, head())
            return
        found = _from_earlier(store, conn, found)
        if found != head():
            if not may_upgrade:
                raise outdated(found)
            _migrate(conn, head())


def upgrade_to(store: Store, target: str | None = None) -> tuple[Found, str]:
    """Upgrade the database of `store` to revision `target` (the newest: None or "head")
    by its migrations, an empty database included; give (the revision before, after)."""
    wanted = head() if target in (None, "head") else str(target)
    if wanted not in revisions():
        raise UsageError(f"no revision {wanted!r}: this release knows {', '.join(revisions())}")
    with store.core(write=True) as conn:
        before = _lock_and_read(store, conn)
        check_known(before)
        found = _from_earlier(store, conn, before)
        if found != EMPTY and revisions().index(found) > revisions().index(wanted):
            raise UsageError(
                f"the database is at revision {found}, after {wanted}: "
                "turnout does not downgrade a schema"
            )
        if found != wanted:
            _migrate(conn, wanted)
    return before, wanted


def _lock_and_read(store: Store, conn: Connection) -> Found:
    if store.postgres:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": SCHEMA_LOCK})
    return read(conn)


def _from_earlier(store: Store, conn: Connection, found: Found) -> Found:
    """A database of a release before revisions were kept is brought to the first revision
    as those releases brought theirs up to date, and stamped so."""
    if found != EARLIER:
        return found
    from .. import upgrade as earlier_releases  # imports Alembic, with revision 0001

    earlier_releases.bring_up_to_date(conn, store.postgres)
    _stamp(conn, BASELINE)
    return BASELINE


def _stamp(conn: Connection, revision: str) -> None:
    version_t.create(conn, checkfirst=True)
    conn.execute(version_t.delete())
    conn.execute(version_t.insert().values(version_num=revision))


def config(connection: Connection | None = None, **attributes: Any) -> Config:
    """Alembic's configuration for turnout's migrations, built in code (no alembic.ini)."""
    from alembic.config import Config

    settings = Config()
    settings.set_main_option("script_location", str(DIRECTORY))
    settings.set_main_option("path_separator", "os")
    settings.set_main_option("version_locations", str(VERSIONS))
    settings.attributes["connection"] = connection
    settings.attributes.update(attributes)
    return settings


def _migrate(conn: Connection, target: str) -> None:
    """Run the migrations up to `target` on `conn`, inside its write transaction."""
    from alembic import command

    command.upgrade(config(conn), target)

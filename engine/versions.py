"""Two deployed versions of one definition compared: what changed (the statemachines diff) and
where the unfinished instances of the older one are, as data and as one picture.

`VersionCalls` holds the `Engine` calls about versions; the query counting the instances of
one version by state is here too, beside the store's own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from statemachines import Definition, DefinitionDiff, diff_definitions
from statemachines.chart import Chart
from statemachines.errors import DefinitionNotFound

from . import drawing
from .store import Store
from .tables import definitions_t, instances_t

if TYPE_CHECKING:
    from .catalog import Version

UNFINISHED = ("running", "compensating")


@dataclass(frozen=True)
class VersionDiff:
    """What changed from version `from_version` of definition `name` to `to_version`
    (`changes`), and `counts`: how many unfinished instances of `from_version` are in each of
    its states. An instance is counted in every state it is in: its active states and the
    compound and parallel states around them. `definitions` are the two versions compared."""

    name: str
    from_version: int
    to_version: int
    changes: DefinitionDiff
    counts: dict[str, int]
    definitions: tuple[Definition, Definition] = field(repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The diff's own JSON (`DefinitionDiff.to_json`) with the name, both versions and
        the counts."""
        return {
            "name": self.name,
            "from": self.from_version,
            "to": self.to_version,
            **self.changes.to_json(),
            "counts": dict(self.counts),
        }

    @property
    def title(self) -> str:
        """What a picture of the two versions is headed with."""
        return f"{self.name}: version {self.from_version} → version {self.to_version}"


class VersionCalls:
    """The calls of `Engine` about its definitions' versions (a part of `Engine`)."""

    if TYPE_CHECKING:
        store: Store

        def _version(self, name: str, version: int | None) -> Version: ...

    def versions(self, name: str) -> list[int]:
        """The deployed versions of definition `name`, oldest first; DefinitionNotFound
        when none is."""
        found = deployed_versions(self.store, name)
        if not found:
            raise DefinitionNotFound(name)
        return found

    def version_counts(self, name: str, version: int) -> dict[str, int]:
        """How many unfinished instances of version `version` of `name` are in each of its
        states: each instance in its active states and the compound and parallel states
        around them. DefinitionNotFound when that version is not deployed."""
        found = self._version(name, version)
        return instances_by_state(self.store, found.definition, found.number)

    def version_diff(
        self, name: str, from_version: int, to_version: int | None = None
    ) -> VersionDiff:
        """What changed from version `from_version` of definition `name` to `to_version`
        (None: the latest), with where the unfinished instances of `from_version` are."""
        old, new = (
            self._version(name, from_version),
            self._version(name, to_version),
        )
        changes = diff_definitions(old.definition, new.definition)
        counts = instances_by_state(self.store, old.definition, old.number)
        pair = (old.definition, new.definition)
        return VersionDiff(name, old.number, new.number, changes, counts, pair)

    def diff_diagram(
        self,
        name: str,
        from_version: int,
        to_version: int | None = None,
        format: str = "svg",
        *,
        fallback: bool = False,
    ) -> bytes:
        """`version_diff` drawn as one picture: `to_version`'s chart with what
        `from_version` alone has put back, each state and transition styled by its change,
        and the instances of `from_version` on their states (see `diagrams.diff_diagram`,
        also for `format` and `fallback`)."""
        compared = self.version_diff(name, from_version, to_version)
        old, new = compared.definitions
        options = {"changes": compared.changes, "title": compared.title, "fallback": fallback}
        return drawing.diff_picture(old, new, compared.counts, format, **options)


def deployed_versions(store: Store, name: str) -> list[int]:
    """The versions of `name` in the database, oldest first."""
    query = (
        sa.select(definitions_t.c.version)
        .where(definitions_t.c.name == name)
        .order_by(definitions_t.c.version)
    )
    with store.core() as conn:
        return [int(version) for (version,) in conn.execute(query)]


def instances_by_state(store: Store, definition: Definition, version: int) -> dict[str, int]:
    """How many unfinished instances of `version` of `definition` are in each of its states:
    each in its active states and in the compound and parallel states around them."""
    active = sa.cast(instances_t.c.active, sa.Text)
    query = (
        sa.select(active, sa.func.count())
        .where(
            instances_t.c.definition == definition.name,
            instances_t.c.version == version,
            instances_t.c.status.in_(UNFINISHED),
        )
        .group_by(active)
    )
    states = Chart(definition).states
    counts: dict[str, int] = {}
    with store.core() as conn:
        rows = [(text, int(number)) for text, number in conn.execute(query)]
    for text, number in rows:
        inside: set[str] = set()
        for path in json.loads(text or "[]"):
            parts = str(path).split(".")
            inside.update(".".join(parts[:size]) for size in range(1, len(parts) + 1))
        for path in inside & states.keys():  # a parallel state's branches are not states
            counts[path] = counts.get(path, 0) + number
    return counts

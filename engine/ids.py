"""Instance ids given by a unique prefix, as a person types them: `Engine.resolve_id`.

An instance id is 32 hexadecimal digits (a UUIDv7 without its dashes). A shorter text is read
as the start of one: the id it names when exactly one instance's id starts with it,
InstanceNotFound when none does, AmbiguousId (listing the candidates) when several do. Case
and the dashes of the UUID form are ignored. A full id is returned without a read.
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING

from statemachines.errors import InstanceNotFound, InvalidInput

if TYPE_CHECKING:
    from .store import Store

# As engine.tables.ID_LENGTH: this module is light (the command line imports AmbiguousId to
# answer errors), so the database layer is imported when an id is resolved.
ID_LENGTH = 32

# How many candidates an ambiguous prefix's error names.
CANDIDATES_SHOWN = 10
HEX_DIGITS = frozenset(string.hexdigits)


class AmbiguousId(InvalidInput):
    """A prefix that starts the ids of several instances; `candidates` lists some of them
    (CANDIDATES_SHOWN at most, in id order) and `more` says whether there are others."""

    def __init__(self, prefix: str, candidates: list[str], more: bool) -> None:
        self.prefix, self.candidates, self.more = prefix, candidates, more
        others = " and more" if more else ""
        super().__init__(
            f"instance id prefix {prefix!r} is ambiguous: it starts {len(candidates)}"
            f"{others} instance ids ({', '.join(candidates)}{', ...' if more else ''}); "
            "give more of the id"
        )


def resolve_id(store: Store, given: str) -> str:
    """The id of the one instance whose id starts with `given` (see the module's docstring)."""
    if not isinstance(given, str):
        raise InvalidInput(f"an instance id must be text, not {type(given).__name__}")
    prefix = given.replace("-", "").lower()
    if len(prefix) > ID_LENGTH or not prefix or not HEX_DIGITS.issuperset(prefix):
        return given  # text no id starts with: the caller's lookup says so
    if len(prefix) == ID_LENGTH:
        return prefix  # a full id
    import sqlalchemy as sa

    from .tables import instances_t

    column = instances_t.c.id
    with store.core() as conn:
        found = list(
            conn.execute(
                sa.select(column)
                .where(column >= prefix, column < prefix + "g")  # "g" sorts after every digit
                .order_by(column)
                .limit(CANDIDATES_SHOWN + 1)
            ).scalars()
        )
    if not found:
        raise InstanceNotFound(given)
    if len(found) > 1:
        raise AmbiguousId(given, found[:CANDIDATES_SHOWN], len(found) > CANDIDATES_SHOWN)
    return str(found[0])

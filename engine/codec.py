"""The JSON text of the hot path's columns (an instance's active states, context and machine
data, history entries' data, tasks' input and retry): orjson where it can write and read the
value exactly, the standard library's json where it cannot.

The text is the same JSON either way (compact, non-ASCII characters as they are), so rows
written before read as before, and PostgreSQL's jsonb takes it as it took the old text.
orjson refuses integers beyond 64 bits and keys that are not text (json writes both), and
reads a number too large for 64 bits as a float, losing digits: such text goes to json.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from statemachines.values import copy_json

# NaN and infinities are refused as PostgreSQL's jsonb refuses them, so SQLite cannot store
# what PostgreSQL would not. orjson would write them as null: every value is made storable
# before it gets here (`statemachines.values.storable` refuses them), and what is not goes
# through `strict_dumps` (the SQLAlchemy-level writes).
strict_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode

# A run of 19 digits may be an integer beyond 64 bits, which orjson would read as a float.
_LONG_NUMBER = re.compile("[0-9]{19}")


def dumps(value: Any) -> str:
    """`value` as JSON text."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:  # an integer beyond 64 bits, a key that is not text
        return strict_dumps(value)


def loads(text: str | bytes) -> Any:
    """The value of JSON text."""
    if len(text) >= 19 and _LONG_NUMBER.search(text if isinstance(text, str) else text.decode()):
        return json.loads(text)
    return orjson.loads(text)


def copied(value: Any) -> Any:
    """A deep copy of JSON-shaped `value` (as read from a row): written and read again by
    orjson, exact for what it can write (a number it writes it reads back the same), which
    costs less than half of copying it object by object; `copy_json` for what it cannot."""
    try:
        return orjson.loads(orjson.dumps(value))
    except orjson.JSONEncodeError:  # an integer beyond 64 bits, a key that is not text
        return copy_json(value)

"""What the engine refuses before anything is written: payloads that cannot be stored or are
too big, keys and ids no row can hold, versions no definition can have, start data that does
not match a definition's input schema (checked by the catalog's `Version.check_input`).
"""

from __future__ import annotations

import json
from typing import Any

from statemachines import storable
from statemachines.errors import (
    DefinitionNotFound,
    InstanceNotFound,
    InvalidInput,
    ValueNotStorable,
)
from statemachines.model import MAX_VERSION

from .tables import ID_LENGTH, KEY_LENGTH

MAX_PAYLOAD_BYTES = 1_000_000
MAX_LIST_LIMIT = 10_000
MAX_LIST_OFFSET = 10_000_000  # beyond it a listing is a scan, not a page; and SQL ints end


def check_key(value: Any, what: str) -> None:
    """InvalidInput, before anything is written, unless `value` can be kept as a key: text of
    at most KEY_LENGTH characters with no NUL character or lone surrogate."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be text, not {type(value).__name__}")
    if len(value) > KEY_LENGTH:
        raise InvalidInput(f"{what} is {len(value)} characters, over the limit of {KEY_LENGTH}")
    if not _storable_text(value):
        raise InvalidInput(f"{what} holds a NUL character or a lone surrogate")


def check_page(limit: int, offset: int) -> None:
    """InvalidInput unless `limit` and `offset` make a page of a listing."""
    if not 0 < limit <= MAX_LIST_LIMIT or not 0 <= offset <= MAX_LIST_OFFSET:
        raise InvalidInput(
            f"limit must be between 1 and {MAX_LIST_LIMIT} and offset "
            f"between 0 and {MAX_LIST_OFFSET}"
        )


def check_id(instance_id: Any) -> None:
    """InstanceNotFound, without a read, for text no instance id can be (ids are 32 hex
    digits); InvalidInput for an id that is not text."""
    if not isinstance(instance_id, str):
        raise InvalidInput(f"an instance id must be text, not {type(instance_id).__name__}")
    if len(instance_id) > ID_LENGTH or not (
        # letters and digits of ASCII (every id the engine makes) are stored as they are
        (instance_id.isascii() and instance_id.isalnum()) or _storable_text(instance_id)
    ):
        raise InstanceNotFound(instance_id)


def check_version(name: str, version: Any) -> None:
    """DefinitionNotFound for a version no definition can have (1 to MAX_VERSION), without
    a read; InvalidInput for one that is not an integer."""
    if version is None:
        return
    if isinstance(version, bool) or not isinstance(version, int):
        raise InvalidInput(f"a version must be an integer, not {type(version).__name__}")
    if not 1 <= version <= MAX_VERSION:
        raise DefinitionNotFound(name, version)


def _storable_text(text: str) -> bool:
    """Whether both databases keep `text` as it is: PostgreSQL refuses a NUL character, and
    neither driver can encode a lone surrogate."""
    try:
        storable(text)
    except ValueNotStorable:
        return False
    return True


def checked(value: Any, what: str) -> Any:
    """`value` as it will be stored (`storable`'s rule, ValueNotStorable naming `what` and
    the place), or InvalidInput when it is over MAX_PAYLOAD_BYTES; before anything is written."""
    value = storable(value, what)
    size = len(json.dumps(value))
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidInput(f"{what} is {size} bytes, over the limit of {MAX_PAYLOAD_BYTES}")
    return value


def check_start(data: Any, key: str | None) -> tuple[dict[str, Any], str | None]:
    """The data and key of one start as they will be stored, refused before any write."""
    if key is not None:
        check_key(key, "a business key")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise InvalidInput("the data of an instance must be a JSON object")
    return checked(data, "data"), key

"""The JSON Schema of the definition language, for editors (draft 2020-12)."""

from __future__ import annotations

from typing import Any


def json_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) that every valid definition satisfies."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"}

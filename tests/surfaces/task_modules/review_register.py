"""Task handlers registered by a `register(engine)` function, the other form `--tasks` accepts."""

from __future__ import annotations

from typing import Any


def register(engine: Any) -> None:
    """Register `review.check` on the engine the worker runs."""

    @engine.task("review.check")
    def check(request: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "checked_by": "register"}

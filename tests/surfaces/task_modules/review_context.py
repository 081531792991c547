"""A `HANDLERS` mapping whose handler takes its task's context as a second parameter."""

from __future__ import annotations

from typing import Any

from engine import TaskContext


def check(request: dict[str, Any], context: TaskContext) -> dict[str, Any]:
    """Approve amounts under 100, saying which task, key and attempt approved it."""
    return {
        "ok": request.get("amount", 0) < 100,
        "checked_by": "context",
        "checked": {
            "task": context.task_name,
            "key": context.key,
            "definition": context.definition,
            "attempt": context.attempt,
            "idempotency_key": context.idempotency_key,
        },
    }


HANDLERS = {"review.check": check}

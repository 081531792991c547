"""Work a worker takes up (a task's answer, an expiry, a timer), applied so that an instance
that cannot take it is failed alone, in a transaction of its own, and what cannot even be
failed is set aside: no worker trips on the same thing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, TypeVar

from statemachines.errors import DatabaseUnavailable

from . import runtime
from .catalog import Catalog
from .persist import Applied
from .records import error_details

Result = TypeVar("Result")
log = logging.getLogger("turnout.engine")


class Applying(Protocol):
    """What of the `Engine` a guarded application uses."""

    catalog: Catalog

    def clock(self) -> datetime: ...
    def _apply(self, operation: Callable[..., Result], *args: Any) -> Result: ...
    def _publish(self, applied: Applied | None) -> None: ...


def apply_guarded(
    engine: Applying,
    what: str,
    poisoned: runtime.Poisoned,
    operation: Callable[..., Result],
    *args: Any,
) -> Result | None:
    """`Engine._apply`, for work a worker takes up: when `what` cannot be applied for a
    reason of the instance's own (a value that cannot be stored, a corrupt row, a definition
    that no longer loads), that instance alone is failed, in a new transaction, so that no
    worker trips on it again; None then.

    If even that fails, the task or timer is set aside, so no sweep takes it up again.
    """
    try:
        return engine._apply(operation, *args)
    except Exception as exc:
        if not runtime.instance_fault(exc):
            raise
        log.exception("%s could not be applied; its instance is failed", what)
        error = error_details(exc)
    try:
        failed = engine._apply(
            runtime.fail_poisoned, engine.catalog, error, poisoned, engine.clock()
        )
    except DatabaseUnavailable:
        raise
    except Exception:
        log.exception("%s: its instance could not be failed either; set aside", what)
        engine._apply(runtime.drop_item, poisoned.task_id, poisoned.timer_id)
    else:
        engine._publish(failed)
    return None

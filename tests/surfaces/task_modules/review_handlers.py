"""Task handlers offered as a `HANDLERS` mapping, the way `turnout worker --tasks` finds them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def check(request: dict[str, Any]) -> dict[str, Any]:
    """Approve amounts under 100.

    A request with `refuse` raises PermissionError with that message. When the request
    names a `started` file, the handler creates it and then works for
    `seconds` seconds, so a test can interrupt the worker while the task is in hand.
    """
    if request.get("refuse"):
        raise PermissionError(request["refuse"])
    marker = request.get("started")
    if marker:
        Path(marker).write_text("started\n")
        time.sleep(float(request.get("seconds", 0)))
    return {"ok": request.get("amount", 0) < 100, "checked_by": "handlers"}


HANDLERS = {"review.check": check}

"""Waiting on other threads and processes in tests: poll a condition until a deadline.

Timers never need this (the engine's clock is moved instead); a worker running in another
thread or process does, since it answers in its own time.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def until(condition: Callable[[], bool], seconds: float = 30, every: float = 0.02) -> bool:
    """Whether `condition()` held within `seconds`, asked every `every` seconds."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True

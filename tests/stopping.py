"""Stopping a worker in a child process from outside: by a file."""

from __future__ import annotations

import threading
import time
from pathlib import Path


def stop_when_file_exists(stop_file: str, every: float = 0.05) -> threading.Event:
    """An event, for `Engine.work(stop=...)`, set once `stop_file` exists.

    A file, not a shared multiprocessing event: a worker killed by SIGKILL while waiting on a
    shared event would leave its lock held and freeze every other process that touches it.
    """
    stop = threading.Event()

    def follow() -> None:
        while not Path(stop_file).exists():
            time.sleep(every)
        stop.set()

    threading.Thread(target=follow, daemon=True).start()
    return stop

"""The worker process of the flow-control tests: `work()` on the `flow.work` tasks, each
handler noting when it ran (and for which customer), until a stop file exists."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from stopping import stop_when_file_exists

from engine import Engine


def work_flow(url: str, stop_file: str, out: str) -> None:
    """Child process: run `flow.work` tasks, 8 in hand, until `stop_file` exists; then write
    one line per handler run to `out`: [customer, started, ended] in epoch seconds."""
    stop = stop_when_file_exists(stop_file, every=0.02)
    engine = Engine(url)
    runs: list[list[Any]] = []
    lock = threading.Lock()

    @engine.task("flow.work")
    def work(data: dict[str, Any]) -> dict[str, Any]:
        started = time.time()
        time.sleep(data.get("sleep", 0))  # the work of a call to a slow service
        with lock:
            runs.append([data.get("customer"), started, time.time()])
        return {"worked": True}

    try:
        engine.work(concurrency=8, stop=stop, poll_interval=0.05)
    finally:
        engine.close()
        Path(out).write_text("\n".join(json.dumps(run) for run in runs) + "\n")

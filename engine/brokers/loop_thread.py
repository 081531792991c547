"""A private asyncio event loop in a daemon thread, for broker clients that speak only
asyncio (nats-py, aio-pika) while the relay and consumer loops are synchronous: a publisher
or source owns one and runs each of its coroutines there, waiting for the result."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit

Result = TypeVar("Result")


class LoopThread:
    """An event loop running in its own daemon thread until `close`."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coroutine: Coroutine[Any, Any, Result], timeout: float | None = None) -> Result:
        """Run `coroutine` on the loop and return its result (or raise its exception); on
        `timeout` seconds it is cancelled and TimeoutError raised."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def connect(
        self,
        connecting: Coroutine[Any, Any, Result],
        timeout: float,
        broker: str,
        server: str,
        port: int,
    ) -> Result:
        """Run `connecting` (a client's first connection) here. If it fails, the loop is
        closed and a ConnectionError names the broker and where it was looked for; Ctrl-C
        while connecting stays itself."""
        try:
            return self.run(connecting, timeout)
        except BaseException as exc:
            self.close()
            if not isinstance(exc, Exception):
                raise
            where = urlsplit(server)
            why = str(exc) or f"no answer within {timeout:g} s"
            raise ConnectionError(
                f"cannot use {broker} at {where.hostname}:{where.port or port}: {why}"
            ) from exc

    def close(self) -> None:
        """Stop the loop once what runs on it has been cancelled, and end the thread."""
        if self.loop.is_closed():
            return

        async def cancel_the_rest() -> None:
            current = asyncio.current_task()
            pending = [task for task in asyncio.all_tasks() if task is not current]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        if self._thread.is_alive():
            try:
                self.run(cancel_the_rest(), timeout=5)
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()

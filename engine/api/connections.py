"""The HTTP connections `turnout serve` keeps: uvicorn's h11 protocol, with a deadline for each
request to arrive whole.

uvicorn closes a connection left idle after a response, but waits for ever on one that opens
and sends part of a request (or nothing): a few hundred of them would hold the server's sockets.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

REQUEST_SECONDS = 30.0  # for a request's head and body to arrive, from the connection's start
MAX_HEAD_BYTES = 16_384  # a request line and headers past this are refused
MAX_CONNECTIONS = 1000  # past this many at once, uvicorn answers 503
WAITING = (h11.IDLE, h11.SEND_BODY)  # the client's states while its request is incomplete


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol that closes a connection whose request is not whole within
    `request_seconds` of the connection opening (or of the previous response)."""

    request_seconds = REQUEST_SECONDS
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._follow()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _follow(self) -> None:
        """Arm the deadline when a request is awaited or incomplete; disarm it once whole."""
        if self.conn.their_state not in WAITING:
            self._disarm()
        elif self._deadline is None and not self.transport.is_closing():
            self._deadline = self.loop.call_later(self.request_seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.conn.their_state in WAITING and not self.transport.is_closing():
            self.transport.close()


def bounded_protocol(request_seconds: float) -> type[BoundedH11Protocol]:
    """The protocol class for uvicorn's `http` setting, with its deadline."""
    return type("BoundedH11Protocol", (BoundedH11Protocol,), {"request_seconds": request_seconds})

"""Dashboard sign-in: the sessions a server has opened, and the token its forms carry.

A signed-in browser holds a random session id, never the API token; sessions live in this
process's memory only (a restart signs everyone out). Every dashboard form carries a token
derived from the browser's session (or, before sign-in, from nothing) with this server's
secret: a page of another site can neither read it nor make it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

from fastapi import Request

SESSION_COOKIE = "turnout_session"
SESSION_SECONDS = 12 * 3600
MAX_SESSIONS = 1000  # the oldest is dropped past this: signing in is not a way to fill memory


class Sessions:
    """The open sessions of one server: id → when it ends (time.monotonic)."""

    def __init__(self) -> None:
        self.secret = secrets.token_bytes(32)
        self._ends: dict[str, float] = {}
        self._lock = threading.Lock()

    def open(self) -> str:
        """A new session's id."""
        session = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            for old in [s for s, end in self._ends.items() if end <= now]:
                del self._ends[old]
            while len(self._ends) >= MAX_SESSIONS:
                del self._ends[next(iter(self._ends))]  # dicts keep insertion order
            self._ends[session] = now + SESSION_SECONDS
        return session

    def close(self, session: str) -> None:
        with self._lock:
            self._ends.pop(session, None)

    def valid(self, session: str) -> bool:
        with self._lock:
            end = self._ends.get(session)
        return end is not None and time.monotonic() < end

    def form_token(self, session: str) -> str:
        """The token the forms of a page shown to the holder of `session` ("": none) carry."""
        return hmac.new(self.secret, b"form:" + session.encode(), hashlib.sha256).hexdigest()

    def form_token_matches(self, request: Request, given: str) -> bool:
        expected = self.form_token(request.cookies.get(SESSION_COOKIE, ""))
        return hmac.compare_digest(given.encode(), expected.encode())


def signed_in(request: Request) -> bool:
    """Whether the request carries the cookie of an open session."""
    sessions: Sessions = request.app.state.sessions
    session = request.cookies.get(SESSION_COOKIE, "")
    return bool(session) and sessions.valid(session)

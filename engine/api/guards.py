"""What every request passes before a route sees it: the host and origin checks, the body
limits and types, the bearer token; and the headers every answer carries.

With a token set, `/api` and `/metrics` need `Authorization: Bearer <token>` (or, to read,
the cookie of a dashboard session), compared in constant time. Every answer forbids framing
and sniffing; changes sent from another origin are refused.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.middleware.base import BaseHTTPMiddleware

from .sessions import signed_in

MAX_BODY_BYTES = 2_000_000
# A browser names where a request comes from; a page of another site (a link, a form or a
# script there) must not be able to start, send or cancel anything on this server.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
OTHER_SITES = frozenset({"cross-site", "same-site"})
# A definition is YAML (JSON is YAML too); a missing type is taken as YAML. The types a page of
# another site can send without asking first (text/plain, forms) are refused.
DEFINITION_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "application/json")
# The dashboard's own script and style sheet are all it runs; no page may frame it.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def token_matches(expected: str | None, request: Request, cookie: bool = True) -> bool:
    """Whether the request carries the API token (header) or, with `cookie`, the cookie of
    a dashboard session."""
    if not expected:
        return True
    header = request.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else ""
    if given:
        return hmac.compare_digest(given.encode(), expected.encode())
    return cookie and signed_in(request)


def _refusal(
    status: int, error: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A request turned away before any route saw it: `{error, message}` with `status`."""
    return JSONResponse({"error": error, "message": message}, status_code=status, headers=headers)


def _too_large() -> JSONResponse:
    return _refusal(413, "PayloadTooLarge", f"the body is over {MAX_BODY_BYTES} bytes")


class GuardMiddleware(BaseHTTPMiddleware):
    """Refuse oversized bodies, changes sent by pages of other sites (Sec-Fetch-Site or
    Origin), `/api` calls that do not carry the token (with one set), and `/api` bodies of
    a type other than JSON (or YAML, for a definition); mark every answer unframable.
    """

    def __init__(
        self,
        app: Any,
        token: str | None,
        hosts: list[str] | None = None,
        origins: list[str] | None = None,
    ) -> None:
        super().__init__(app)
        self.token = token
        self.hosts = None if hosts is None else {host.lower() for host in hosts}
        self.origins = {origin.lower() for origin in origins or []}

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await self._guarded(request, call_next)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    async def _guarded(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if self.hosts is not None and _host_name(request) not in self.hosts:
            # A name the server was not told about: a page that re-pointed its own domain
            # at this address (DNS rebinding) must not reach a server that has no token.
            return _refusal(
                421,
                "UnknownHost",
                "this server does not answer to that name; add it to TURNOUT_ALLOWED_HOSTS",
            )
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return _too_large()
        unsafe = request.method in UNSAFE_METHODS
        if unsafe and (
            request.headers.get("sec-fetch-site", "").lower() in OTHER_SITES
            or _foreign_origin(request, self.origins)
        ):
            return _refusal(403, "Forbidden", "requests from pages of other sites are refused")
        # The metrics name the definitions and tasks, and count their work: guarded alike.
        api = request.url.path.startswith("/api") or request.url.path == "/metrics"
        # A cookie travels by itself; it lets a browser read, and only the token changes.
        if api and not token_matches(self.token, request, cookie=not unsafe):
            return _refusal(
                401,
                "Unauthorized",
                "this server needs 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if api and unsafe and (refused := _unsupported_type(request)) is not None:
            return _refusal(415, "UnsupportedMediaType", refused)
        return await call_next(request)


def _host_name(request: Request) -> str:
    """The name the request addressed the server by (the Host header without its port)."""
    host = request.headers.get("host", "").lower()
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _foreign_origin(request: Request, origins: set[str]) -> bool:
    """Whether the request names an origin (a browser's page) other than this server, as it
    was addressed, or than a name in `origins` (a proxy's)."""
    origin = request.headers.get("origin")
    if origin is None:
        return False
    try:
        parts = urlsplit(origin.lower())
    except ValueError:  # not even a URL ("http://[::1")
        return True
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return True  # "null": a sandboxed frame, a file, a redirect from elsewhere
    default = ":443" if parts.scheme == "https" else ":80"
    host = request.headers.get("host", "").lower().removesuffix(default)
    return parts.netloc.removesuffix(default) != host and parts.hostname not in origins


def _unsupported_type(request: Request) -> str | None:
    """Why the body of a change to `/api` is refused for its type, or None: definitions are
    YAML or JSON, everything else JSON."""
    length = request.headers.get("content-length")
    if length == "0" or (length is None and "transfer-encoding" not in request.headers):
        return None  # no body
    given = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.url.path == "/api/definitions":
        if not given or given in DEFINITION_TYPES:
            return None
        return f"a definition is sent as application/yaml (or JSON), not {given!r}"
    if given == "application/json" or given.endswith("+json"):
        return None
    return f"this route takes application/json, not {given or 'a body of no type'!r}"


class StreamedBodyLimit:
    """Refuse a body sent without Content-Length (chunked) once it passes the limit.

    Such a body is read here, up to the limit, and handed on whole; a declared length is
    checked by `GuardMiddleware` before anything is read.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = dict(scope.get("headers") or []) if scope["type"] == "http" else {}
        if scope["type"] != "http" or b"content-length" in headers:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away: what arrived is not the whole body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                await _too_large()(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Any:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

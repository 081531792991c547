"""How a webhook is signed, and how its receiver checks it: `Turnout-Signature` is
`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed by the shared secret>` (the
scheme of well-known signed webhooks); a receiver refuses a bad signature or an old `t`.
"""

from __future__ import annotations

import hashlib
import hmac
import time

# How far a signature's timestamp may be from the receiver's clock (`verify_signature`).
TOLERANCE_SECONDS = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256, keyed by `secret`, of `<timestamp>.<body>`."""
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The `Turnout-Signature` header: `t=<unix seconds>,v1=<hex signature>`."""
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify_signature(
    body: bytes,
    header: str,
    secret: str,
    *,
    tolerance: float = TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Whether `header` (a `Turnout-Signature`) signs `body` with `secret` and was made at
    most `tolerance` seconds from `now` (the receiver's clock, `time.time()` by default).
    A receiver checks it against the raw body, before parsing it."""
    parts: dict[str, list[str]] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        parts.setdefault(name, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, given) for given in parts.get("v1", []))

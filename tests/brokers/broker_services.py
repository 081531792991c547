"""The broker servers the tests talk to, on 127.0.0.1: a test goes on only when its server
answers (skipped when it does not, failed when CI=true: `.ci/run` starts every server).

Importable by any broker test module (`from broker_services import require_service`);
`conftest.py` uses it for the Redis fixtures.
"""

from __future__ import annotations

import socket
import uuid

import pytest
from databases import in_ci

CONNECT_SECONDS = 3.0


def require_service(host: str, port: int, name: str) -> None:
    """Go on only if something answers on host:port: else skip the test, or fail it when
    CI=true (a missing server there is a fault of the set-up, not a reason to skip)."""
    try:
        with socket.create_connection((host, port), timeout=CONNECT_SECONDS):
            return
    except OSError as exc:
        message = f"{name} is not answering on {host}:{port} ({exc})"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def unique_name(prefix: str) -> str:
    """A stream, queue or subject name no other test (nor a run beside this one) uses."""
    return f"{prefix}.{uuid.uuid4().hex[:12]}"

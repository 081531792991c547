"""Task handlers for the worker metrics test: `metered.charge` fails for a request that says
`refuse`, and succeeds otherwise."""

from __future__ import annotations

from typing import Any


def charge(request: dict[str, Any]) -> dict[str, Any]:
    """Charge the request, or refuse it with PermissionError."""
    if request.get("refuse"):
        raise PermissionError("refused")
    return {"charged": True}


HANDLERS = {"metered.charge": charge}

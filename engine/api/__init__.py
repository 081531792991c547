"""turnout over HTTP: the JSON API of SPEC 6 and the web dashboard, served by uvicorn."""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]

"""turnout over HTTP: the JSON API of SPEC 6 and the web dashboard, served by uvicorn.

`app` builds the application from `routes` (JSON) and `dashboard` (HTML), which share `guards`
(what every request passes) and `sessions` (dashboard sign-in); `errors` turns an error into
an answer, and `connections` bounds the connections `turnout serve` keeps.
"""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]

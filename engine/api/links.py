"""The one way the dashboard builds a link: path segments and query values percent-encoded.

A business key may hold spaces, `&`, `/`, `#`, `?`, `%` or any Unicode; written into a link as
it is, it would end the path, start a fragment or split into two query values. `href` quotes
every segment as a whole (a `/` inside one stays part of it) and every query value, and leaves
out the query values that are empty, so a page's links carry only the filters in use. The
templates call it as `href(...)`; Jinja escapes the `&` between values for the attribute.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode


def segment(value: object) -> str:
    """One path segment, every character that is not unreserved percent-encoded."""
    return quote(str(value), safe="")


def href(
    base: str, *segments: object, query: Mapping[str, Any] | None = None, **values: Any
) -> str:
    """`base` (a path the dashboard owns, such as "/instances") followed by each of `segments`
    encoded as one segment, then the query of `query` and `values` (None and "" left out).

    >>> href("/instances", "0190ab", query={"q": "a b&c/d#e"})
    '/instances/0190ab?q=a%20b%26c%2Fd%23e'
    """
    path = base.rstrip("/") + "".join("/" + segment(part) for part in segments)
    pairs = [
        (name, str(value))
        for name, value in {**(query or {}), **values}.items()
        if value is not None and value != ""
    ]
    return f"{path}?{urlencode(pairs, quote_via=quote, safe='')}" if pairs else path or "/"

"""A broker URL's options: its query string and the keyword options given beside it, merged
(keywords win) and checked against the options that broker knows, so a misspelt option is a
clear error rather than a default silently taken."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from statemachines.errors import UsageError


def split_url(
    url: str, known: dict[str, Any], options: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """(the URL without its query string, every known option: given or its default)."""
    parts = urlsplit(url)
    given: dict[str, Any] = dict(parse_qsl(parts.query, keep_blank_values=True))
    given.update(options)
    unknown = sorted(set(given) - set(known))
    if unknown:
        names = ", ".join(sorted(known))
        raise UsageError(
            f"unknown option(s) {', '.join(unknown)} for {parts.scheme}:// (known: {names})"
        )
    merged = dict(known)
    for name, value in given.items():
        default = known[name]
        try:
            merged[name] = value if default is None else type(default)(value)
        except (TypeError, ValueError) as exc:
            kind = {int: "a whole number", float: "a number"}.get(type(default), "text")
            raise UsageError(f"option {name}={value!r} must be {kind}") from exc
    bare = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return bare, merged

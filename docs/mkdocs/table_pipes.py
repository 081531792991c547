"""A pipe inside code in a table cell is written `\\|` (GitHub's tables need it, and show `|`);
the site's Markdown splits cells around code by itself and would show the backslash, so the
pages it builds get a plain `|` there."""

from __future__ import annotations

import re
from typing import Any

CODE = re.compile(r"`[^`\n]*`")


def unescaped(match: re.Match[str]) -> str:
    return match.group(0).replace("\\|", "|")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Table rows (lines starting with `|`) lose the backslash before pipes inside code."""
    lines = markdown.split("\n")
    for number, line in enumerate(lines):
        if line.lstrip().startswith("|") and "\\|" in line:
            lines[number] = CODE.sub(unescaped, line)
    return "\n".join(lines)

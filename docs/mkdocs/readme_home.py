"""The site's home page is the repository's README.md, so the two never drift apart: its links
into docs/ are made relative to the site, and the strict build checks that each resolves."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

README = Path(__file__).resolve().parents[2] / "README.md"
# A Markdown link or image target that starts with docs/: `](docs/guide/engine.md#limits)`.
INTO_DOCS = re.compile(r"\]\(docs/")


def on_files(files: Files, config: Any) -> Files:
    """Add index.md, generated from the README."""
    text = INTO_DOCS.sub("](", README.read_text(encoding="utf-8"))
    files.append(File.generated(config, "index.md", content=text))
    return files

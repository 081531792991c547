"""`python -m diagrams.examples OUTDIR`: one SVG per bundled example definition.

Used by `make diagrams` to refresh `docs/diagrams/` for the README.
"""

from __future__ import annotations

import sys
from pathlib import Path

import statemachines

from .render import render


def write_examples(outdir: Path, format: str = "svg") -> list[Path]:
    """Draw every bundled example into `outdir` as NAME.`format`; return the files written."""
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for source in statemachines.examples():
        definition = statemachines.load(source)
        target = outdir / f"{definition.name}.{format}"
        target.write_bytes(render(definition, format))
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        usage = "usage: python -m diagrams.examples OUTDIR [svg|png|pdf|dot|mermaid]"
        print(usage, file=sys.stderr)
        return 2
    for path in write_examples(Path(args[0]), *args[1:]):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

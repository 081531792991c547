"""The picture shown instead of a layout: what the definition holds, why it is not laid out,
and the overlay's states as a list. Plain SVG text, written without Graphviz.
"""

from __future__ import annotations

from html import escape

from statemachines.errors import DiagramTooLarge

from .overlay import HeatOverlay, Overlay
from .shapes import INK, MUTED, css_name

LISTED = 20  # overlay states listed at most, the busiest first
LINE_HEIGHT = 18
CHAR_WIDTH = 7.2  # an average Helvetica character at 12 px, for the picture's width


def too_large_svg(error: DiagramTooLarge, overlay: Overlay | None = None) -> bytes:
    """A small SVG telling that the diagram of `error.definition` is not laid out, and why."""
    command = f"turnout diagram {error.definition} --format mermaid"
    hint = f"Its dot or mermaid text needs no layout: {command}"
    lines: list[tuple[str, str, bool]] = [
        (error.definition, INK, True),
        (f"{error.states:,} states and {error.transitions:,} transitions: not drawn,", INK, False),
        (f"{error.reason}.", INK, False),
        (hint, MUTED, False),
    ]
    lines.extend((text, INK, False) for text in _overlay_lines(overlay))
    width = int(max(len(text) for text, _, _ in lines) * CHAR_WIDTH) + 40
    height = LINE_HEIGHT * len(lines) + 30
    bold_font, plain_font = ' font-weight="bold" font-size="14"', ' font-size="12"'
    texts = [
        f'<text x="{16 + 8 * (len(text) - len(text.lstrip()))}" '
        f'y="{28 + LINE_HEIGHT * number}" fill="{colour}"'
        f"{bold_font if bold else plain_font}>{escape(text.lstrip())}</text>"
        for number, (text, colour, bold) in enumerate(lines)
    ]
    name = escape(css_name(error.definition))
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}pt" height="{height}pt" '
        f'viewBox="0 0 {width} {height}" role="img">\n'
        f'<g id="definition-{name}" class="graph turnout-diagram not-laid-out" '
        f'font-family="Helvetica,Arial,sans-serif">\n'
        f"<title>{escape(str(error))}</title>\n"
        f'<rect width="{width}" height="{height}" fill="white" stroke="{MUTED}"/>\n'
        + "\n".join(texts)
        + "\n</g>\n</svg>\n"
    )
    return svg.encode()


def _overlay_lines(overlay: Overlay | None) -> list[str]:
    if overlay is None:
        return []
    if isinstance(overlay, HeatOverlay):
        busy = sorted(
            ((count, path) for path, count in overlay.counts.items() if count), reverse=True
        )
        if not busy:
            return [f"{overlay.title}; none is in any of its states now."]
        shown = [f"  {path}: {count:,}" for count, path in busy[:LISTED]]
        more = len(busy) - LISTED
        tail = [f"  and {more:,} more states"] if more > 0 else []
        return [f"{overlay.title}; unfinished ones now, by state:", *shown, *tail]
    active = ", ".join(overlay.active) or "none"
    return [f"Instance {overlay.status}; current states: {active}"]

"""Output formats, the limit on what is laid out, and the cache of laid-out pictures.

SVG always renders (in-process WebAssembly when `dot` is missing); PNG and PDF need `dot`.
Layout is the slow part, and on large or tangled definitions the dangerous one: a drawing of
more than MAX_LAID_OUT states and transitions is not laid out, and Graphviz runs within the
time and memory bounds of `layout`.
"""

from __future__ import annotations

import hashlib
import html
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Literal, NamedTuple, get_args

from statemachines import Definition, load
from statemachines.errors import DiagramTooLarge, RenderError

from .dotsource import Styles, label_lines, to_digraph
from .fallback import too_large_svg
from .graph import cached_drawing
from .layout import INSTALL_HINT, LayoutOverrun, dot_program, run_dot, run_wasm
from .mermaid import to_mermaid
from .nesting import checked_depth
from .overlay import Overlay, overlay_styles
from .shapes import INK, Direction, Drawing, Line

Format = Literal["svg", "png", "pdf", "dot", "mermaid"]
FORMATS: tuple[str, ...] = get_args(Format)
DIRECTIONS: tuple[str, ...] = get_args(Direction)
# States plus transitions laid out at most. A chain-like 1,300 (500 states) takes dot under a
# second of CPU; 4,000 with edges between random states took it 120 s and 730 MB. Between the
# two, a tangled drawing is stopped by the time bound.
MAX_LAID_OUT = 1_500
# The same picture asked for again (a dashboard refresh) is reused: outputs by (backend,
# format, digest of the DOT source), so a change of definition or overlay data is a new key;
# a layout that overran its bound is remembered as such for OVERRUN_KEPT seconds, so that
# page views do not try it again while the machine may be just as busy.
OVERRUN_KEPT = 600.0
_OUTPUTS_SIZE = 256
_OUTPUTS_BYTES = 64 << 20
_OUTPUTS_LOCK = threading.Lock()
_DRAWING: dict[tuple[str, str, str], threading.Event] = {}  # layouts under way, by key
_COUNTS = {"hits": 0, "misses": 0}


class _Overrun(NamedTuple):
    """A layout stopped at its bound: why, and until when (time.monotonic) that stands."""

    reason: str
    until: float


_OUTPUTS: OrderedDict[tuple[str, str, str], bytes | _Overrun] = OrderedDict()


class CacheInfo(NamedTuple):
    """`hits`: pictures reused; `misses`: layouts run; `maxsize`/`currsize`: entries kept."""

    hits: int
    misses: int
    maxsize: int
    currsize: int


def render(
    definition: Definition | str | Path,
    format: str = "svg",
    *,
    overlay: Overlay | None = None,
    direction: str = "LR",
    fallback: bool = False,
    depth: int | None = None,
) -> bytes:
    """Draw `definition` (a Definition, a YAML path or YAML text) as `format`.

    `format` is svg, png, pdf, dot (the Graphviz source) or mermaid (a `stateDiagram-v2`);
    dot and mermaid come back as UTF-8 text. `overlay` draws an instance or a heat map over the
    definition; `direction` is LR (left to right, the default) or TB (top to bottom). `depth`
    draws that many levels of nesting: a compound or parallel state inside `depth` others is
    one box, and transitions into and out of the states inside it go to and from the box (0:
    only the top-level states; None, the default: every level).

    A drawing of more than MAX_LAID_OUT states and transitions, or one whose layout overruns
    its time or memory bound, raises DiagramTooLarge; with `fallback`, an SVG comes back
    instead as a small picture that says so (and lists the overlay's states), with no layout.
    """
    if format not in FORMATS:
        raise RenderError(f"unknown diagram format {format!r}; choose one of {', '.join(FORMATS)}")
    if direction not in DIRECTIONS:
        raise RenderError(f"unknown direction {direction!r}; choose one of {', '.join(DIRECTIONS)}")
    depth = checked_depth(depth)
    definition = load(definition)
    if format == "mermaid":
        return to_mermaid(definition, overlay=overlay, direction=direction, depth=depth).encode()
    drawing = cached_drawing(definition, _direction(direction), depth)
    styles = overlay_styles(drawing, overlay)
    return render_drawing(drawing, styles, format, fallback=fallback, overlay=overlay)


def render_drawing(
    drawing: Drawing,
    styles: Styles,
    format: str = "svg",
    *,
    fallback: bool = False,
    overlay: Overlay | None = None,
) -> bytes:
    """A drawing already built, with `styles` over it, as svg, png, pdf or dot: what `render`
    does once it has the drawing (the drawing of two versions builds its own). With
    `fallback`, a drawing too large to lay out is the SVG that says so, listing `overlay`."""
    if format == "dot":
        return str(to_digraph(drawing, styles).source).encode()
    try:
        return _laid_out(drawing, styles, format)
    except DiagramTooLarge as exc:
        if fallback and format == "svg":
            return too_large_svg(exc, overlay)
        raise


def cache_info() -> CacheInfo:
    """How often a picture was reused and how many layouts ran, since the process started."""
    with _OUTPUTS_LOCK:
        return CacheInfo(_COUNTS["hits"], _COUNTS["misses"], _OUTPUTS_SIZE, len(_OUTPUTS))


def drawn_size(drawing: Drawing) -> tuple[int, int]:
    """The states and the transitions (between states, not the start arrows) of `drawing`."""
    states = len(drawing.nodes) + len(drawing.clusters)
    transitions = sum(
        1 for edge in drawing.edges if edge.kind != "initial" and edge.attrs.get("style") != "invis"
    )
    return states, transitions


def _laid_out(drawing: Drawing, styles: Styles, format: str) -> bytes:
    states, transitions = drawn_size(drawing)

    def too_large(reason: str) -> DiagramTooLarge:
        return DiagramTooLarge(drawing.name, states, transitions, MAX_LAID_OUT, reason)

    if states + transitions > MAX_LAID_OUT:
        raise too_large(
            f"over the limit of {MAX_LAID_OUT:,} states and transitions together that are laid out"
        )
    program = dot_program()
    if program is not None:
        source = str(to_digraph(drawing, styles).source)
        return _remembered(
            (program, format, source), lambda: run_dot(program, source, format), too_large
        )
    if format != "svg":
        raise RenderError(
            f"{format.upper()} output needs the Graphviz program `dot`, which is not on PATH: "
            f"{INSTALL_HINT}"
        )
    # This Graphviz build reads no HTML labels: plain ones, styled in the SVG afterwards.
    source = str(to_digraph(drawing, styles, html=False).source)
    lines = label_lines(drawing, styles)
    lines[drawing.graph_attrs["id"]] = [Line("", styles.graph.get("fontcolor", INK), 14, True)]
    return _remembered(
        ("wasm", format, source), lambda: style_label_lines(run_wasm(source), lines), too_large
    )


def _remembered(
    key: tuple[str, str, str],
    draw: Callable[[], bytes],
    too_large: Callable[[str], DiagramTooLarge],
) -> bytes:
    """The output for `key` (backend, format, DOT source): laid out once, then reused.

    Callers asking for a picture being laid out wait for it rather than lay it out again.
    """
    digest = (key[0], key[1], hashlib.sha256(key[2].encode()).hexdigest())
    while True:
        with _OUTPUTS_LOCK:
            found = _OUTPUTS.get(digest)
            if isinstance(found, _Overrun) and found.until <= time.monotonic():
                del _OUTPUTS[digest]
            elif found is not None:
                _OUTPUTS.move_to_end(digest)
                _COUNTS["hits"] += 1
                if isinstance(found, _Overrun):
                    raise too_large(found.reason)
                return found
            under_way = _DRAWING.get(digest)
            if under_way is None:
                _DRAWING[digest] = under_way = threading.Event()
                _COUNTS["misses"] += 1
                break
        under_way.wait()  # then look again: drawn, or failed and to be tried anew
    output: bytes | _Overrun | None = None
    try:
        output = draw()
    except LayoutOverrun as exc:
        output = _Overrun(exc.reason, time.monotonic() + OVERRUN_KEPT)
    finally:
        with _OUTPUTS_LOCK:
            if output is not None:
                _OUTPUTS[digest] = output
                _trim()
            del _DRAWING[digest]
            under_way.set()
    if isinstance(output, _Overrun):
        raise too_large(output.reason)
    return output


def _trim() -> None:
    """Drop the least recently used outputs past the count or the bytes kept (lock held)."""
    total = sum(len(kept) for kept in _OUTPUTS.values() if isinstance(kept, bytes))
    while len(_OUTPUTS) > _OUTPUTS_SIZE or (total > _OUTPUTS_BYTES and len(_OUTPUTS) > 1):
        _, dropped = _OUTPUTS.popitem(last=False)
        total -= len(dropped) if isinstance(dropped, bytes) else 0


def to_dot(
    definition: Definition,
    *,
    overlay: Overlay | None = None,
    direction: str = "LR",
    depth: int | None = None,
) -> str:
    """The Graphviz DOT source of the diagram (reusing the cached drawing of `definition`)."""
    drawing = cached_drawing(definition, _direction(direction), depth)
    return str(to_digraph(drawing, overlay_styles(drawing, overlay)).source)


def style_label_lines(svg: bytes, lines: dict[str, list[Line]]) -> bytes:
    """Give each text line of the labelled groups in `svg` its weight, size and colour.

    Graphviz writes one `<text>` per label line, in order, inside the group of the node or
    cluster; `lines` gives, by group id, the style of each.
    """
    current: list[Line] = []
    position = 0

    def restyle(match: re.Match[str]) -> str:
        nonlocal current, position
        if match.group("group") is not None:
            current, position = lines.get(html.unescape(match.group("id")), []), 0
            return match.group(0)
        tag = match.group(0)
        if position >= len(current):
            return tag
        line = current[position]
        position += 1
        tag = re.sub(r'font-size="[^"]*"', f'font-size="{line.size:.2f}"', tag)
        if line.colour:
            tag = re.sub(r'\sfill="[^"]*"', "", tag)
        extra = (f' fill="{line.colour}"' if line.colour else "") + (
            ' font-weight="bold"' if line.bold else ""
        )
        return tag[:-1] + extra + ">"

    group = r'<g id="(?P<id>[^"]*)" class="(?:node|cluster|graph|edge)[^"]*"[^>]*>'
    pattern = rf"(?P<group>{group})|<text [^>]*>"
    return re.sub(pattern, restyle, svg.decode()).encode()


def _direction(direction: str) -> Direction:
    if direction not in DIRECTIONS:
        raise RenderError(f"unknown direction {direction!r}; choose one of {', '.join(DIRECTIONS)}")
    return direction  # type: ignore[return-value]

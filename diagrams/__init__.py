"""Graphviz and Mermaid drawings of turnout definitions, with optional instance overlays.

`render` draws a definition as svg, png, pdf, dot or mermaid; overlays add an instance or a heat
map; `diff_diagram` draws two versions of one definition as one picture of what changed (styled
as DIFF_STYLES says). A drawing over MAX_LAID_OUT states and transitions is not laid out
(DiagramTooLarge), and Graphviz runs within LAYOUT_SECONDS and LAYOUT_MEMORY. This package
imports `statemachines` only.
"""

from __future__ import annotations

from statemachines.errors import DiagramTooLarge, RenderError

from .graph import build_drawing
from .layout import LAYOUT_MEMORY, LAYOUT_SECONDS, dot_program
from .mermaid import to_mermaid
from .overlay import HeatOverlay, InstanceOverlay, Overlay
from .render import FORMATS, MAX_LAID_OUT, CacheInfo, cache_info, render, to_dot
from .shapes import Drawing
from .versions import DIFF_STYLES, DiffStyle, diff_diagram

__all__ = [
    "DIFF_STYLES",
    "FORMATS",
    "LAYOUT_MEMORY",
    "LAYOUT_SECONDS",
    "MAX_LAID_OUT",
    "CacheInfo",
    "DiagramTooLarge",
    "DiffStyle",
    "Drawing",
    "HeatOverlay",
    "InstanceOverlay",
    "Overlay",
    "RenderError",
    "build_drawing",
    "cache_info",
    "diff_diagram",
    "dot_program",
    "render",
    "to_dot",
    "to_mermaid",
]

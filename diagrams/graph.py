"""From a definition to a drawing, remembered per definition: `builder` draws it, `shapes`
says what a drawing is made of.

Compound and parallel states are clusters around their children, at any depth, unless a
`depth` collapses them into one box each (see `nesting`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from statemachines import Definition

from .builder import DrawingBuilder
from .nesting import checked_depth
from .shapes import Direction, Drawing


def build_drawing(
    definition: Definition, direction: Direction = "LR", depth: int | None = None
) -> Drawing:
    """The drawing of `definition`, laid out `direction` (LR left to right, TB top to bottom);
    with `depth`, compound and parallel states nested that deep are one box each."""
    return DrawingBuilder(definition, direction, checked_depth(depth)).drawing


_CACHE: OrderedDict[tuple[str, str, str, int | None], Drawing] = OrderedDict()
_CACHE_SIZE = 64
_CACHE_LOCK = threading.Lock()


def cached_drawing(
    definition: Definition, direction: Direction = "LR", depth: int | None = None
) -> Drawing:
    """`build_drawing`, remembered per definition content; callers must not change the result."""
    depth = checked_depth(depth)
    if not (definition.digest or definition.source):
        return build_drawing(definition, direction, depth)  # nothing to recognise it by next time
    key = (definition.digest or definition.source, definition.name, direction, depth)
    with _CACHE_LOCK:
        drawing = _CACHE.get(key)
        if drawing is not None:
            _CACHE.move_to_end(key)
            return drawing
    drawing = build_drawing(definition, direction, depth)
    with _CACHE_LOCK:
        _CACHE[key] = drawing
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return drawing

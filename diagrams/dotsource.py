"""The DOT text of a drawing: its nodes, clusters and edges, with an overlay's restyling.

Labels come in two kinds: HTML-like for Graphviz proper, plain for builds that cannot read HTML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

import graphviz

from .shapes import FONT, INK, Cluster, Drawing, Line, Node


@dataclass
class Styles:
    """Overlay changes: attributes and extra label lines per node/cluster name, per edge index."""

    graph: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, dict[str, str]] = field(default_factory=dict)
    lines: dict[str, list[Line]] = field(default_factory=dict)
    replace: dict[str, dict[int, Line]] = field(default_factory=dict)  # name -> index -> line
    edges: dict[int, dict[str, str]] = field(default_factory=dict)


def to_digraph(
    drawing: Drawing, styles: Styles | None = None, html: bool = True
) -> graphviz.Digraph:
    """The graphviz graph of `drawing` with `styles` laid over it (the drawing is unchanged).

    `html` chooses HTML-like labels (bold names, small coloured detail lines); without it the
    labels are plain text, for Graphviz builds that cannot read HTML labels.
    """
    styles = styles or Styles()
    graph_attrs = {**drawing.graph_attrs, **styles.graph}
    if html:
        graph_attrs["label"] = f"<<B>{escape(graph_attrs['label'])}</B>>"
    else:  # room for the bold title the SVG will set at the usual size
        graph_attrs["fontsize"] = str(int(graph_attrs.get("fontsize", "14")) + 2)
    graph = graphviz.Digraph(
        drawing.name,
        graph_attr=graph_attrs,
        node_attr={"fontname": FONT},
        edge_attr={"fontname": FONT},
    )
    for item in drawing.items:
        _emit(graph, item, styles, html)
    for index, edge in enumerate(drawing.edges):
        attrs = {**edge.attrs, **styles.edges.get(index, {})}
        if not html and "label" in attrs:
            attrs["fontsize"] = str(int(attrs.get("fontsize", "10")) + 1)  # as for states
        graph.edge(edge.tail, edge.head, **attrs)
    return graph


def label_lines(drawing: Drawing, styles: Styles) -> dict[str, list[Line]]:
    """By SVG id, the lines of each state's label as drawn: the name (bold) first."""
    found: dict[str, list[Line]] = {}
    items: list[Node | Cluster] = [*drawing.nodes.values(), *drawing.clusters.values()]
    for item in items:
        title = Line(item.title, INK, int(item.attrs.get("fontsize", "12")), bold=True)
        found[item.attrs["id"]] = [title, *_lines(item, styles)]
    for index, edge in enumerate(drawing.edges):
        attrs = {**edge.attrs, **styles.edges.get(index, {})}
        if "label" in attrs and "id" in attrs:
            found[attrs["id"]] = [Line(attrs["label"], "", int(attrs.get("fontsize", "10")))]
    return found


def _lines(item: Node | Cluster, styles: Styles) -> list[Line]:
    changed = styles.replace.get(item.name, {})
    lines = [changed.get(n, line) for n, line in enumerate(item.lines)]
    return lines + styles.lines.get(item.name, [])


def _emit(graph: graphviz.Digraph, item: Node | Cluster, styles: Styles, html: bool) -> None:
    attrs = {**item.attrs, **styles.nodes.get(item.name, {})}
    lines = _lines(item, styles)
    if not html and item.state is not None:
        # Laid out a size up and with room to spare, so that the name still fits once the SVG
        # sets it in bold, whatever sans-serif font the viewer substitutes.
        attrs["fontsize"] = str(int(attrs.get("fontsize", "12")) + 1)
        if isinstance(item, Node) and attrs.get("shape") != "diamond":
            attrs["margin"] = "0.2,0.06"
    if isinstance(item, Node):
        if item.state is not None:
            attrs["label"] = (
                html_label(item.title, lines) if html else plain_label(item.title, lines)
            )
        graph.node(item.name, **attrs)
        return
    with graph.subgraph(name=item.name) as sub:
        bold = item.state is not None
        label = (
            html_label(item.title, lines, bold, left=True)
            if html
            else plain_label(item.title, lines, left=True)
        )
        sub.attr(**{**attrs, "label": label})
        for child in item.items:
            _emit(sub, child, styles, html)


def html_label(title: str, lines: list[Line], bold: bool = True, left: bool = False) -> str:
    """An HTML-like label: the title, then `lines`; `left` aligns every line left (clusters)."""
    head = f"<B>{escape(title)}</B>" if bold else escape(title)
    parts = [head]
    for line in lines:
        text = f"<B>{escape(line.text)}</B>" if line.bold else escape(line.text)
        parts.append(f'<FONT POINT-SIZE="{line.size}" COLOR="{line.colour}">{text}</FONT>')
    if left:
        return "<" + "".join(f'{part}<BR ALIGN="LEFT"/>' for part in parts) + ">"
    return "<" + "<BR/>".join(parts) + ">"


def plain_label(title: str, lines: list[Line], left: bool = False) -> str:
    """The same label as plain text, one line each, for Graphviz builds without HTML labels."""
    texts = [title, *(line.text for line in lines)]
    escaped = [text.replace("\\", "\\\\") for text in texts]
    return "".join(f"{text}\\l" for text in escaped) if left else "\\n".join(escaped)

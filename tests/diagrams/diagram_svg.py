"""Reading the SVG the diagrams package writes: groups by class and id, their texts and fills."""

from __future__ import annotations

from xml.etree import ElementTree

SVG = "{http://www.w3.org/2000/svg}"


def svg_tree(svg: bytes) -> ElementTree.Element:
    return ElementTree.fromstring(svg)


def groups(svg: bytes, kind: str) -> dict[str, ElementTree.Element]:
    """The SVG groups of class `kind` (node, edge, cluster) by id."""
    found = {}
    for group in svg_tree(svg).iter(f"{SVG}g"):
        classes = group.get("class", "").split()
        if kind in classes and group.get("id"):
            found[group.get("id", "")] = group
    return found


def texts(element: ElementTree.Element) -> list[str]:
    return ["".join(text.itertext()) for text in element.iter(f"{SVG}text")]


def fills(element: ElementTree.Element) -> set[str]:
    shapes = [e for tag in ("polygon", "path", "ellipse") for e in element.iter(f"{SVG}{tag}")]
    return {shape.get("fill", "") for shape in shapes} - {"none", ""}

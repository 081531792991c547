"""YAML reading for definitions: safe, YAML 1.2 scalars, positions kept, duplicates refused.

The document is composed into nodes and built into plain values here, so no tag can ever
build a Python object and every value's `line:column` is known by its path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import DefinitionError, Problem

MAX_SOURCE_BYTES = 1_000_000
MAX_NODES = 200_000
MAX_DEPTH = 64

PathKey = tuple[str | int, ...]


class _Resolver(yaml.resolver.BaseResolver):
    """The YAML 1.2 core schema: only true/false are booleans, no sexagesimal numbers."""


_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)


class _Composer(
    yaml.reader.Reader,
    yaml.scanner.Scanner,
    yaml.parser.Parser,
    yaml.composer.Composer,
    _Resolver,
):
    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        _Resolver.__init__(self)


_STANDARD = "tag:yaml.org,2002:"


@dataclass
class Document:
    """A parsed YAML document: plain values plus the position of every path in it."""

    data: Any
    file: str
    positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    # Defects that leave the data usable (a duplicate key keeps its first value), so a load
    # can go on and report the rest of the definition's problems with them.
    problems: list[Problem] = field(default_factory=list)

    def where(self, path: PathKey, key: bool = False) -> tuple[int, int]:
        """(line, column) of the value at `path` (or of its key), else of its nearest parent."""
        table = self.key_positions if key else self.positions
        probe = tuple(path)
        while probe:
            if probe in table:
                return table[probe]
            if probe in self.positions:
                return self.positions[probe]
            probe = probe[:-1]
        return self.positions.get((), (1, 1))

    def problem(self, path: PathKey, message: str, key: bool = False) -> Problem:
        line, column = self.where(path, key)
        return Problem(message, line, column, self.file)


class _ValueBuilder:
    """Builds plain values from composed YAML nodes, noting where each one stands."""

    def __init__(self, document: Document) -> None:
        self.doc = document
        self.problems: list[Problem] = []
        self.count = 0

    def _at(self, node: yaml.Node) -> tuple[int, int]:
        return node.start_mark.line + 1, node.start_mark.column + 1

    def _fail(self, node: yaml.Node, message: str) -> None:
        line, column = self._at(node)
        self.problems.append(Problem(message, line, column, self.doc.file))

    def build(self, node: yaml.Node, path: PathKey, depth: int = 0) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooBig(node)
        if depth > MAX_DEPTH:
            raise _TooBig(node, f"nesting deeper than {MAX_DEPTH} levels")
        self.doc.positions[path] = self._at(node)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _STANDARD + "seq":
                self._fail(node, f"tag {node.tag!r} is not allowed")
            items = enumerate(node.value)
            return [self.build(item, (*path, index), depth + 1) for index, item in items]
        assert isinstance(node, yaml.ScalarNode)
        return self._scalar(node)

    def _mapping(self, node: yaml.MappingNode, path: PathKey, depth: int) -> dict[str, Any]:
        if node.tag != _STANDARD + "map":
            self._fail(node, f"tag {node.tag!r} is not allowed")
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _STANDARD + "merge":
                self._fail(key_node, "merge keys ('<<') are not supported")
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self._fail(key_node, "a key must be a plain scalar, not a mapping or list")
                continue
            key = self._scalar(key_node)
            if not isinstance(key, str):
                key = key_node.value  # `1:` or `true:` as a key keeps its text
            if key in result:
                first = self.doc.key_positions[(*path, key)]
                line, column = self._at(key_node)
                message = f"duplicate key {key!r} (first defined at line {first[0]})"
                self.doc.problems.append(Problem(message, line, column, self.doc.file))
                continue
            self.doc.key_positions[(*path, key)] = self._at(key_node)
            result[key] = self.build(value_node, (*path, key), depth + 1)
        return result

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        tag, text = node.tag, node.value
        if tag == _STANDARD + "str":
            return text
        # Implicit scalars already match these forms; an explicit tag (`!!int x`) may not.
        if tag == _STANDARD + "null":
            if text not in ("", "~", "null", "Null", "NULL"):
                self._fail(node, f"{text!r} is not null")
            return None
        if tag == _STANDARD + "bool":
            if text.lower() not in ("true", "false"):
                self._fail(node, f"{text!r} is not true or false")
            return text.lower() == "true"
        if tag == _STANDARD + "int":
            if len(text) > 40:
                self._fail(node, "integer is too long")
                return 0
            lowered = text.lower()
            try:
                if lowered.startswith("0o"):
                    return int(text[2:], 8)
                if lowered.startswith("0x"):
                    return int(text[2:], 16)
                return int(text)
            except ValueError:
                self._fail(node, f"{text!r} is not an integer")
                return 0
        if tag == _STANDARD + "float":
            lowered = text.lower()
            if lowered.endswith(".inf"):
                return float("-inf") if text.startswith("-") else float("inf")
            if lowered == ".nan":
                return float("nan")
            try:
                return float(text)
            except ValueError:
                self._fail(node, f"{text!r} is not a number")
                return 0.0
        self._fail(node, f"tag {tag!r} is not allowed (definitions are plain data)")
        return None


class _TooBig(Exception):
    def __init__(self, node: yaml.Node, reason: str = "") -> None:
        super().__init__(reason or f"the document expands to more than {MAX_NODES} values")
        self.node = node


def read_source(source: str | Path) -> tuple[str, str]:
    """Return (text, file name) for a path, or for YAML text given directly."""
    if isinstance(source, Path) or (
        isinstance(source, str) and "\n" not in source and source.endswith((".yaml", ".yml"))
    ):
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DefinitionError(
                [Problem(f"cannot read file: {exc.strerror or exc}", 0, 0, str(path))]
            ) from None
        if len(data) > MAX_SOURCE_BYTES:
            raise DefinitionError(
                [Problem(f"file is larger than {MAX_SOURCE_BYTES} bytes", 1, 1, str(path))]
            )
        try:
            return data.decode("utf-8"), str(path)
        except UnicodeDecodeError as exc:
            raise DefinitionError(
                [Problem(f"file is not UTF-8: {exc.reason}", 1, 1, str(path))]
            ) from None
    return source, "<definition>"


def parse_yaml(text: str, file: str = "<definition>") -> Document:
    """Parse one YAML document into plain values with positions; raise DefinitionError."""
    document = compose(text, file)
    if document.problems:
        raise DefinitionError(document.problems)
    return document


def compose(text: str, file: str = "<definition>") -> Document:
    """Like `parse_yaml`, but duplicate keys are left in `Document.problems` (first value kept).

    Anything that makes the data unusable (malformed YAML, a tag, a limit) still raises.
    """
    if len(text) > MAX_SOURCE_BYTES:
        raise DefinitionError(
            [Problem(f"definition is larger than {MAX_SOURCE_BYTES} bytes", 1, 1, file)]
        )
    document = Document(None, file)
    try:
        composer = _Composer(text)
        try:
            root = composer.get_single_node()
        finally:
            composer.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = exc.problem or exc.context or "malformed YAML"
        raise DefinitionError([Problem(f"malformed YAML: {message}", line, column, file)]) from None
    except yaml.YAMLError as exc:
        raise DefinitionError([Problem(f"malformed YAML: {exc}", 1, 1, file)]) from None
    except RecursionError:
        raise DefinitionError([Problem("definition nests too deeply", 1, 1, file)]) from None
    if root is None:
        raise DefinitionError([Problem("the definition is empty", 1, 1, file)])
    builder = _ValueBuilder(document)
    try:
        document.data = builder.build(root, ())
    except _TooBig as exc:
        line, column = exc.node.start_mark.line + 1, exc.node.start_mark.column + 1
        problem = Problem(f"definition too large: {exc}", line, column, file)
        raise DefinitionError([problem]) from None
    except RecursionError:
        raise DefinitionError([Problem("definition nests too deeply", 1, 1, file)]) from None
    if builder.problems:
        raise DefinitionError(builder.problems + document.problems)
    return document

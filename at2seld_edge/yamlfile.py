"""YAML and JSON as the toolkit reads them: every config, spec and record goes through here.

PyYAML alone decodes other encodings silently, lets a repeated key overwrite the first (hiding a
typo), and turns hostile input into a traceback or a hang: a 5,000-digit integer, 10,000 levels of
nesting (RecursionError), a list as a key (TypeError), an alias bomb that expands to billions of
values. Here each is one line naming the file (and the line): integers are 64-bit, numbers finite,
keys plain values, nesting and size bounded (`limits`). YAML merge keys (`<<: *base`) are YAML and
are accepted; the keys written beside them override the merged ones, as the YAML spec says.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

import yaml

from at2seld_edge.errors import EdgeError
from at2seld_edge.io import read_text_file
from at2seld_edge.limits import MAX_INT, MAX_NESTING, MAX_NODES, MAX_TEXT_BYTES

MERGE_TAG = "tag:yaml.org,2002:merge"
MAX_INT_CHARS = 40  # 64-bit integers need 19 digits (64 binary); longer text is refused unread


class Refused(ValueError):
    """Valid syntax, but a value no reader takes (what, and where when known)."""

    def __init__(self, problem: str, line: int | None = None):
        super().__init__(problem)
        self.line = line


def bounded_int(text: str, line: int | None = None) -> int:
    """An integer written as `text`, refused before conversion when it is too long to be 64-bit
    (Python itself refuses to convert over 4,300 digits, with a traceback)."""
    digits = text.lstrip("+-").replace("_", "")
    if len(digits) > MAX_INT_CHARS:
        raise Refused(f"integer with {len(digits)} digits; integers here are 64-bit (at most {MAX_INT})", line)
    return check_int(int(text), line)


def check_int(value: int, line: int | None = None) -> int:
    if abs(value) > MAX_INT:
        raise Refused(f"integer {value} does not fit in 64 bits (at most {MAX_INT})", line)
    return value


def check_float(value: float, line: int | None = None, text: str | None = None) -> float:
    if not math.isfinite(value):
        raise Refused(f"{text or value} is not a finite number", line)
    return value


def check_tree(children_of, root, line_of=lambda node: None) -> None:
    """Refuse a document nested deeper than MAX_NESTING or holding more than MAX_NODES values once
    shared parts (YAML aliases) are counted everywhere they appear, or one that contains itself.
    Iterative, so a deep document cannot exhaust the stack here."""
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if key in size:
            continue
        kids = list(children_of(node))
        if finished:
            path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in kids)
            height[key] = 1 + max((height[id(c)] for c in kids), default=0)
            if height[key] > MAX_NESTING:
                raise Refused(f"nested deeper than {MAX_NESTING} levels", line_of(node))
            if size[key] > MAX_NODES:
                raise Refused(f"more than {MAX_NODES:,} values (YAML aliases counted where they are used)",
                              line_of(node))
            continue
        if key in path:
            raise Refused("a value that contains itself (a recursive alias)", line_of(node))
        path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in kids if id(c) not in size)


# ----------------------------------------------------------------------------- YAML


def _line(node) -> int:
    return node.start_mark.line + 1


def _node_children(node) -> Iterable:
    if isinstance(node, yaml.MappingNode):
        return (n for pair in node.value for n in pair)
    if isinstance(node, yaml.SequenceNode):
        return node.value
    return ()


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader with the bounds above, merge keys, and a key given twice in one mapping refused."""

    _depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                raise Refused(f"nested deeper than {MAX_NESTING} levels", self.peek_event().start_mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            check_tree(_node_children, node, _line)
        return node

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                continue  # merged in by SafeLoader's flatten_mapping; own keys win over merged ones
            if not isinstance(key_node, yaml.ScalarNode):
                kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
                raise Refused(f"a key must be a plain value (a name), not a {kind}", _line(key_node))
            key = self.construct_object(key_node, deep=deep)
            if key in seen:  # YAML itself says keys are unique: a parse error
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (lines {seen[key]} and {_line(key_node)})",
                    key_node.start_mark)
            seen[key] = _line(key_node)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node):
        text = self.construct_scalar(node)
        if len(text.lstrip("+-").replace("_", "")) > MAX_INT_CHARS:
            return bounded_int(text, _line(node))  # refuses it
        return check_int(super().construct_yaml_int(node), _line(node))  # 0x.., 0o.., 1:30 (base 60) too

    def construct_yaml_float(self, node):
        return check_float(super().construct_yaml_float(node), _line(node), self.construct_scalar(node))


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)
_BoundedLoader.add_constructor("tag:yaml.org,2002:float", _BoundedLoader.construct_yaml_float)


def read_text(path: str | Path, kind: str = "file") -> str:
    """A UTF-8 text file of at most MAX_TEXT_BYTES (a regular file: a FIFO is refused, not read)."""
    return read_text_file(path, kind, MAX_TEXT_BYTES)


def yaml_mapping(text: str, source: str, kind: str) -> dict[str, Any]:
    """Parse a YAML document that must be a mapping; errors name `source` and the line."""
    try:
        data = yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass
    except Refused as e:
        raise EdgeError(f"{source}{'' if e.line is None else f':{e.line}'}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise EdgeError(f"{source}{where}: not valid YAML: {problem}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise EdgeError(f"{source}: expected a mapping of {kind} keys at the top level")
    return data


def read_yaml_mapping(path: str | Path, kind: str) -> dict[str, Any]:
    return yaml_mapping(read_text(path, kind), str(path), kind)


# ----------------------------------------------------------------------------- JSON


def _json_constant(name: str):
    raise Refused(f"{name} is not a finite number")


def _json_children(value) -> Iterable:
    if isinstance(value, dict):
        return value.values()
    if isinstance(value, list):
        return value
    return ()


def json_value(text: str, source: str, kind: str) -> Any:
    """Parse a JSON document with the bounds above; errors name `source` (and the line)."""
    try:
        data = json.loads(text, parse_int=bounded_int, parse_float=lambda s: check_float(float(s), text=s),
                          parse_constant=_json_constant)
        check_tree(_json_children, data)
    except RecursionError:
        raise EdgeError(f"{source}: nested deeper than {MAX_NESTING} levels; not a {kind}") from None
    except Refused as e:
        raise EdgeError(f"{source}: {e}") from None
    except json.JSONDecodeError as e:
        raise EdgeError(f"{source}:{e.lineno}: not valid JSON ({e.msg}); not a {kind}") from None
    return data


def read_json(path: str | Path, kind: str) -> Any:
    return json_value(read_text(path, kind), str(path), kind)

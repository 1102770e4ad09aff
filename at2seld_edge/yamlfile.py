"""YAML as a user writes it: UTF-8 text, one value per key. PyYAML alone decodes other encodings
silently and lets a repeated key overwrite the first, which hides a typo; here either is one line
naming the file and the line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from at2seld_edge.errors import EdgeError


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (lines {seen[key]} and {line})", key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_text(path: str | Path, kind: str = "file") -> str:
    """A UTF-8 text file; anything else is one line naming the file and where it went wrong."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise EdgeError(f"{path}: cannot read {kind}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise EdgeError(f"{path}:{line}: not UTF-8 text (byte {e.start}: 0x{data[e.start]:02x}); save the {kind} "
                        "as UTF-8") from None


def yaml_mapping(text: str, source: str, kind: str) -> dict[str, Any]:
    """Parse a YAML document that must be a mapping; errors name `source` and the line."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
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

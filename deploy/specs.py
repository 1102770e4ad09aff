"""Named YAML specs (devices, budgets): a name looks in the shipped folder, a path reads the file;
either way the schema validates it and a mistake is one line naming the file and the key."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from at2seld_edge.errors import EdgeError
from at2seld_edge.schema import format_validation_error
from at2seld_edge.yamlfile import read_text, yaml_mapping

S = TypeVar("S", bound=BaseModel)


def shipped_names(package: str) -> list[str]:
    root = resources.files(package)
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_named_yaml(name_or_path: str | Path, package: str, schema: type[S], kind: str,
                    aliases: dict[str, str] | None = None) -> S:
    name = str(name_or_path)
    name = (aliases or {}).get(name, name)
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise EdgeError(f"{path}: {kind} file not found")  # a folder or FIFO: read_text says which
        text, source = read_text(path, kind), str(path)
    elif name in shipped_names(package):
        text, source = (resources.files(package) / f"{name}.yaml").read_text(encoding="utf-8"), f"{kind} {name}"
    else:
        known = shipped_names(package) + sorted(aliases or {})
        raise EdgeError(f"unknown {kind} {name!r} and no such file (known: {', '.join(sorted(known))})")
    data = yaml_mapping(text, source, kind)
    try:
        return schema.model_validate(data)
    except ValidationError as e:
        raise EdgeError(f"{source}: {format_validation_error(e, schema)}") from None

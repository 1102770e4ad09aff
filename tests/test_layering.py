"""Imports point upstream only: at2seld_edge <- compress <- deploy (the CLI alone sequences the
stages). Checked twice: every module of a layer imported in one fresh interpreter, then the
modules loaded are looked at; and every import statement of every file, lazy ones inside
functions included, read from the source."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"at2seld_edge": "at2seld_edge", "compress": "at2seld_edge.compress", "deploy": "at2seld_edge.deploy"}
DOWNSTREAM = {"at2seld_edge": ("at2seld_edge.compress", "at2seld_edge.deploy"), "compress": ("at2seld_edge.deploy",)}


def module_names(folder: str) -> list[str]:
    out = []
    for p in sorted((ROOT / folder).rglob("*.py")):
        parts = [x for x in p.relative_to(ROOT / folder).with_suffix("").parts if x != "__init__"]
        if parts != ["cli"] and "cpp" not in parts:
            out.append(".".join([LAYERS[folder], *parts]))
    return out


def loaded_after_importing(modules: list[str]) -> set[str]:
    code = f"import sys, json\nimport {', '.join(modules)}\nprint('LOADED=' + json.dumps(sorted(sys.modules)))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("LOADED="))
    return set(json.loads(line.removeprefix("LOADED=")))


@pytest.mark.parametrize("folder", ["at2seld_edge", "compress"])
def test_a_layer_loads_nothing_downstream(folder):
    loaded = loaded_after_importing(module_names(folder))
    assert not sorted(m for m in loaded if m.startswith(DOWNSTREAM[folder]))


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("folder", ["at2seld_edge", "compress"])
def test_no_source_file_imports_downstream_even_lazily(folder):
    problems = [f"{p.relative_to(ROOT)} imports {m}" for p in sorted((ROOT / folder).rglob("*.py"))
                if p.name != "cli.py" or p.parent.name != "at2seld_edge"
                for m in sorted(imports_of(p)) if m.startswith(DOWNSTREAM[folder])]
    assert problems == []


def test_the_check_sees_a_downstream_import():
    assert any(m.startswith("at2seld_edge.deploy") for m in loaded_after_importing(["at2seld_edge.deploy.build"]))
    assert "at2seld_edge.deploy.build" in imports_of(ROOT / "at2seld_edge" / "cli.py")

"""pyproject lists every subpackage (a missing one would be left out of the wheel silently)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(tool["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "at2seld_edge").rglob("__init__.py")}
    for folder in ("compress", "deploy"):  # top-level folders that install as at2seld_edge.<folder>
        found |= {".".join(("at2seld_edge", *p.parent.relative_to(ROOT).parts))
                  for p in (ROOT / folder).rglob("__init__.py") if "cpp" not in p.relative_to(ROOT).parts}
    found |= {"at2seld_edge.devices", "at2seld_edge.profiles"}
    assert found == listed
    assert tool["package-dir"] == {"at2seld_edge": "at2seld_edge", "at2seld_edge.compress": "compress",
                                   "at2seld_edge.deploy": "deploy", "at2seld_edge.devices": "devices",
                                   "at2seld_edge.profiles": "profiles"}


def test_the_embedded_default_checkpoint_ships_as_package_data():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "weights/*.pt" in tool["package-data"]["at2seld_edge"]
    assert (ROOT / "at2seld_edge" / "weights" / "at2seld-nano-synth.pt").stat().st_size < 8_000_000

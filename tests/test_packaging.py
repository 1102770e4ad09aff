"""pyproject lists every subpackage (a missing one would be left out of the wheel silently), and
the sdist holds the whole project."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import tarfile
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


# What a user who builds or tests from the sdist needs, beyond the packages setuptools takes anyway.
SDIST_MUST_HOLD = ["LICENSE", "Makefile", "README.md", "MANIFEST.in", ".ci/run", "deploy/cpp/CMakeLists.txt",
                   "deploy/cpp/src/runtime.cpp", "deploy/cpp/tests/CMakeLists.txt", "deploy/cpp/install_deps.sh",
                   "benchmarks/latency_model.py", "tests/conftest.py", "tests/deploy/conftest.py",
                   "tests/search/install_postgresql.sh", "devices/README.md", "profiles/realtime-100ms.yaml"]
BUILD_OUTPUTS = (".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache", "runs", "bundles", "reports")


def _project_files() -> list[str]:
    """The files a clone has: git's list where this is a checkout, else every file but build outputs."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60).stdout
        return [f for f in out.decode().split("\0") if f and (ROOT / f).is_file()]
    except (OSError, subprocess.CalledProcessError):
        return [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()
                and not any(fnmatch.fnmatch(part, pat) for part in p.relative_to(ROOT).parts for pat in BUILD_OUTPUTS)]


def test_the_sdist_holds_the_whole_project(tmp_path):
    src, dist = tmp_path / "src", tmp_path / "dist"
    files = _project_files()
    for f in files:  # a clean copy, so the build writes its egg-info there and nothing stray goes in
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, src / f)
    subprocess.run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(dist)!r})"],
                   cwd=src, check=True, capture_output=True, timeout=120)  # offline, no build isolation
    (archive,) = dist.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        names = {m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile() and "/" in m.name}
        pkg_info = tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith("/PKG-INFO"))).read().decode()
    assert set(SDIST_MUST_HOLD) <= names, sorted(set(SDIST_MUST_HOLD) - names)
    assert set(files) <= names, sorted(set(files) - names)
    assert not [n for n in names if "__pycache__" in n or n.startswith("deploy/cpp/build/")]
    assert "License-Expression: Apache-2.0" in pkg_info and "License-File: LICENSE" in pkg_info
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:3] == ["Apache", "License", "Version"] and "END OF TERMS AND CONDITIONS" in text

"""The docs hold: the quickstart's shell blocks run as written, the README's quickstart is that
page's, and every relative link and every repository path the docs name points at something that
exists (so a moved module or page fails here, not in a reader's hands)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GETTING_STARTED = ROOT / "docs" / "getting-started.md"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\S*)\s*$")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
# Inline code naming a file of the checkout: it starts at one of the top-level folders.
TOP_LEVEL = ("at2seld_edge/", "compress/", "deploy/", "devices/", "profiles/", "tests/", "benchmarks/", "docs/")
BUILD_OUTPUTS = ("deploy/cpp/build/",)


def fenced_blocks(path: Path, language: str) -> list[str]:
    """The bodies of the ```LANGUAGE blocks of a Markdown file, in order."""
    blocks, body, lang = [], None, None
    for line in path.read_text().splitlines():
        m = FENCE.match(line)
        if m and body is None:
            body, lang = [], m.group(1)
        elif m and not m.group(1):
            if lang == language:
                blocks.append("\n".join(body) + "\n")
            body = None
        elif body is not None:
            body.append(line)
    return blocks


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines outside fenced and indented code blocks."""
    out, fenced = [], False
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and not line.startswith("    "):
            out.append((n, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    for _, line in prose_lines(path):
        if m := re.match(r"^#{1,6}\s+(.*)$", line):
            s = slug(m.group(1))
            seen[s] = seen.get(s, -1) + 1
    return {s if i == 0 else f"{s}-{i}" for s, count in seen.items() for i in range(count + 1)}


@pytest.mark.slow  # 23 s on 2 idle cores, 66 s loaded: mostly edge build and six commands' imports
def test_the_quickstart_runs_as_written(tmp_path):
    blocks = fenced_blocks(GETTING_STARTED, "sh")
    assert len(blocks) >= 4, f"{GETTING_STARTED}: expected the quickstart's ```sh blocks"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "MPLBACKEND": "Agg"}
    for block in blocks:
        r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"this block of {GETTING_STARTED.name} exited {r.returncode}:\n{block}\n" \
                                  f"{(r.stdout + r.stderr)[-3000:]}"


def test_the_readme_quickstart_is_the_getting_started_one():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    page = {line.strip() for b in fenced_blocks(GETTING_STARTED, "sh") for line in b.splitlines()}
    commands = [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 5 and not [c for c in commands if c not in page], commands


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_a_file_and_heading_that_exist(page):
    broken = []
    for n, line in prose_lines(page):
        for target in LINK.findall(CODE_SPAN.sub("", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            if not dest.exists():
                broken.append(f"{page.name}:{n}: {target} (no file {dest})")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{page.name}:{n}: {target} (no heading #{anchor} in {dest.name})")
    assert broken == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_path_named_in_code_exists(page):
    missing = []
    for n, line in prose_lines(page):
        for span in CODE_SPAN.findall(line):
            if " " in span or not span.startswith(TOP_LEVEL) or span.startswith(BUILD_OUTPUTS):
                continue
            if not any(ROOT.glob(span.rstrip("/"))):
                missing.append(f"{page.name}:{n}: `{span}`")
    assert missing == []

"""Two `edge build` runs to one output at once: each finishes with a valid bundle or fails with
one clear line; never exit 0 with a broken bundle, never an earlier valid bundle lost."""

from __future__ import annotations

import shutil
import subprocess
import sys

from at2seld_edge.deploy.bundle import load_bundle
from at2seld_edge.io import output_lock
from at2seld_edge.errors import EdgeError


def test_concurrent_builds_to_one_output(fp32_bundle, tmp_path):
    out = tmp_path / "bundle"
    shutil.copytree(fp32_bundle, out)  # an earlier valid bundle is there
    cmd = [sys.executable, "-m", "at2seld_edge.cli", "build", "--target", "x86-cpu", "--precision", "fp32",
           "--no-engine", "--out", str(out)]
    runs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in runs]
    for code, stderr in results:
        assert "Traceback" not in stderr
        assert code == 0 or (code == 1 and "another edge build is writing it" in stderr), stderr
    assert any(code == 0 for code, _ in results)
    b = load_bundle(out)  # whatever happened, OUT is one complete, valid bundle
    assert b.manifest.target == "x86-cpu"
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name or ".old-" in p.name]


def test_the_lock_names_its_holder_and_is_released(tmp_path):
    out = tmp_path / "x"
    with output_lock(out, "edge build"):
        try:
            with output_lock(out, "edge build"):
                raise AssertionError("a second holder got the lock")
        except EdgeError as e:
            assert "another edge build is writing it" in str(e) and "process" in str(e)
    with output_lock(out, "edge build"):  # released: taken again
        pass

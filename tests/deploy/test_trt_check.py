"""The TensorRT parse-and-build step where no TensorRT-family builder imports: listed as skipped,
with the reason, in the build's output, the manifest and lint.md."""

from __future__ import annotations

import pytest

from at2seld_edge.deploy import trt_check
from at2seld_edge.deploy.build import Builder
from at2seld_edge.deploy.devices import load_device


@pytest.fixture
def no_builder(monkeypatch):
    """Neither TensorRT-RTX nor TensorRT imports here."""
    monkeypatch.setattr(trt_check, "available_builders", lambda: [])


def test_without_a_builder_the_check_is_skipped_with_its_reason(tmp_path, no_builder):
    (tmp_path / "lint.md").write_text("# TensorRT lint\n")
    manifest, skipped = {"precision": "fp32"}, []

    def step(*args):
        raise AssertionError(f"no step may run without a builder: {args[0]}")

    got = trt_check.tensorrt_steps(tmp_path, manifest, load_device("jetson-orin"), step,
                                   lambda name, reason: skipped.append((name, reason)))
    assert got is None and "tensorrt_check" not in manifest
    ((name, reason),) = skipped  # was: nothing, not a word
    assert name == "tensorrt parse and build"
    assert "TensorRT-RTX is not installed (pip install 'at2seld-edge[rtx]')" in reason
    assert "TensorRT is not installed (pip install 'at2seld-edge[trt]'" in reason
    lint = (tmp_path / "lint.md").read_text()
    assert lint.startswith("# TensorRT lint\n") and f"## tensorrt parse and build: skipped\n\n{reason}." in lint


def test_a_builder_without_a_gpu_is_named_as_such(monkeypatch):
    monkeypatch.setattr(trt_check, "available_builders", lambda: ["tensorrt"])
    monkeypatch.setattr(trt_check, "gpu_info", lambda: None)
    assert trt_check.here_builder() is None and "TensorRT sees no CUDA GPU" in trt_check.no_builder_reason()


def test_a_skipped_step_is_listed_in_the_output_the_steps_and_the_notes(tmp_path):
    said = []
    b = Builder(None, tmp_path, said.append)
    b.skip("tensorrt parse and build", "no builder here")
    assert b.steps == [{"step": "tensorrt parse and build", "status": "skipped", "seconds": 0.0,
                        "result": "no builder here"}]
    assert said == ["[1] tensorrt parse and build: skipped: no builder here"]
    assert b.notes == ["tensorrt parse and build skipped: no builder here"]


@pytest.mark.slow
def test_a_build_without_a_builder_records_the_skip(tmp_path, no_builder):
    from at2seld_edge.deploy.build import BuildOptions, build
    from at2seld_edge.deploy.bundle import load_bundle

    said = []
    result = build(BuildOptions(target="jetson-orin", precision="fp32", out=tmp_path / "b"), say=said.append)
    steps = {s["step"]: s for s in load_bundle(tmp_path / "b").manifest.steps}
    skip = steps["tensorrt parse and build"]
    assert skip["status"] == "skipped" and "no TensorRT-family builder here" in skip["result"]
    assert any(line.endswith(f"tensorrt parse and build: skipped: {skip['result']}") for line in said)
    assert f"tensorrt parse and build skipped: {skip['result']}" in result.notes
    assert "## tensorrt parse and build: skipped" in (tmp_path / "b" / "lint.md").read_text()

"""`edge selftest`: every step it can run here runs, the TensorRT ones are listed as skipped with
their reason, measured vs estimate and the fitted constants land in one report."""

from __future__ import annotations

import json

import pytest

from at2seld_edge.deploy import selftest
from at2seld_edge.deploy.selftest import Comparison, SelftestOptions, SelftestReport, Step, run_selftest, write_report
from at2seld_edge.errors import EdgeError, ErrorKind
from tests.test_cli import edge

NO_TRT = selftest.tensorrt_here()


@pytest.fixture(autouse=True)
def user_devices(tmp_path, monkeypatch):
    monkeypatch.setenv("AT2SELD_EDGE_DEVICES", str(tmp_path / "user-devices"))
    return tmp_path / "user-devices"


def test_report_is_markdown_json_and_png_with_skips_and_their_reasons(tmp_path):
    report = SelftestReport("jetson-orin-nano-8gb", tmp_path / "st", [
        Step("build fp16", "ran", "bundle ok", 3.0),
        Step("TensorRT engine build (FP16, INT8)", "skipped", "TensorRT is not importable here"),
    ], [Comparison("fp16", "onnxruntime (CPUExecutionProvider)", "x86-cpu", 3.1, 4.0, 5.0, 4.2, 2.4)])
    md, js, png = write_report(report)
    text = md.read_text()
    assert "| TensorRT engine build (FP16, INT8) | SKIPPED | 0.0 | TensorRT is not importable here |" in text
    # the CPU's figures are not titled with the Jetson's name, and the two measurements are told apart
    assert text.startswith("# Selftest for jetson-orin-nano-8gb, measured on x86-cpu (jetson-orin-nano-8gb: "
                           "estimates only)\n")
    assert "| bench median ms | profiled ms (fit) | estimate ms | estimate / profiled |" in text
    assert "| fp16 | onnxruntime (CPUExecutionProvider) | x86-cpu | 3.10 | 4.00 | 5.00 | 1.25 | 4.20 | 2.40 |" in text
    data = json.loads(js.read_text())
    assert data["passed"] is True and data["comparisons"][0]["ratio"] == pytest.approx(1.25)
    assert data["measured_on"] == "x86-cpu" and data["comparisons"][0]["bench_ms"] == 3.1
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_a_step_that_fails_fails_the_run_and_stops_its_chain(tmp_path, monkeypatch):
    monkeypatch.setattr(selftest, "_build", lambda opts, target, precision, out: (out / precision, "built"))

    def bad_verify(bundle):
        raise EdgeError(f"{bundle}: onnxruntime does not reproduce the golden outputs", ErrorKind.CHECK)

    monkeypatch.setattr(selftest, "_verify", bad_verify)
    report = run_selftest(SelftestOptions(out=tmp_path / "st"), say=lambda m: None)
    assert [s.name for s in report.failed] == ["verify fp16", "verify int8"]
    assert [s.name for s in report.steps if s.status == "ran"] == ["build fp16", "build int8"]  # no bench, no fit
    assert json.loads((tmp_path / "st" / "selftest.json").read_text())["passed"] is False


@pytest.mark.skipif(NO_TRT is None, reason="TensorRT and a GPU are here: the TensorRT steps run instead")
def test_without_tensorrt_the_pipeline_runs_on_onnx_runtime(tmp_path, monkeypatch, fp32_bundle, int8_bundle):
    """The session's bundles stand in for the builds (fp32 and int8 of the same embedded default)."""
    bundles = {"fp32": fp32_bundle, "int8": int8_bundle}
    monkeypatch.setattr(selftest, "PRECISIONS", ("fp32", "int8"))
    monkeypatch.setattr(selftest, "_build", lambda opts, target, precision, out: (_copy(bundles[precision], out,
                                                                                       precision), "session bundle"))
    report = run_selftest(SelftestOptions(out=tmp_path / "st", iterations=5, warmup=1), say=lambda m: None)
    status = {s.name: s.status for s in report.steps}
    assert not report.failed, report.failed
    assert status["verify fp32"] == status["bench int8"] == status["fit the measured device's constants"] == "ran"
    skipped = [s for s in report.steps if s.status == "skipped"]
    assert len(skipped) == 4 and all(s.detail == NO_TRT for s in skipped)
    assert [c.device for c in report.comparisons] == ["x86-cpu", "x86-cpu"]
    assert all(c.profiled_ms > 0 and c.estimate_ms > 0 and c.target_estimate_ms > 0 for c in report.comparisons)
    bench_int8 = json.loads((tmp_path / "st" / "bench-int8.json").read_text())
    assert report.comparisons[1].bench_ms == bench_int8["window"]["median_ms"]  # the figure edge bench reported
    assert report.title() == f"selftest for {report.target}, measured on x86-cpu ({report.target}: estimates only)"
    from at2seld_edge.deploy.bundle import read_manifest
    from at2seld_edge.deploy.devices import load_device
    from at2seld_edge.deploy.latency_model import estimate_onnx

    m = read_manifest(fp32_bundle / "manifest.json")  # the target's estimate is for the benched window
    at_window = estimate_onnx(fp32_bundle / m.model, load_device("jetson-orin"), "fp32", samples=m.window.samples)
    assert report.comparisons[0].target_estimate_ms == pytest.approx(at_window.total_ms)
    assert (tmp_path / "st" / "fitted-x86-cpu.yaml").is_file() and (tmp_path / "st" / "bench-int8.json").is_file()
    assert report.fit["installed"] is None  # written to the report folder only, without --install


def _copy(src, out, precision):
    import shutil

    dst = out / "bundles" / precision
    shutil.copytree(src, dst)
    return dst


@pytest.mark.slow
@pytest.mark.skipif(NO_TRT is None, reason="TensorRT and a GPU are here: the full run builds engines")
def test_edge_selftest_end_to_end(tmp_path):
    r = edge("selftest", "--target", "jetson-orin", "--out", str(tmp_path / "st"), "--iterations", "10")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "skipped" in text and "TensorRT is not importable here" in text and "estimate on jetson-orin-nano-8gb" in text
    data = json.loads((tmp_path / "st" / "selftest.json").read_text())
    assert data["passed"] and {c["precision"] for c in data["comparisons"]} == {"fp16", "int8"}


@pytest.mark.parametrize("clips", [2, 3])
def test_too_few_calibration_clips_is_a_usage_error_not_a_validation_traceback(clips):
    """`edge selftest --target x86-cpu --calib-clips 2` passed its own check (>= 2) and then broke
    in the INT8 build's (>= 4) with pydantic's multi-line ValidationError."""
    with pytest.raises(EdgeError) as e:
        SelftestOptions.from_flags(target="x86-cpu", calib_clips=clips)
    assert e.value.kind == ErrorKind.USAGE and f"--calib-clips {clips}: Input should be greater than or equal to 4" \
        in str(e.value)
    assert SelftestOptions.from_flags(target="x86-cpu").calib_clips == 4  # the default is the build's minimum

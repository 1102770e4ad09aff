"""`edge bench` measurements and the Jetson power reading."""

from __future__ import annotations

from at2seld_edge.deploy.bench import bench, parse_tegrastats, write_bench
from at2seld_edge.deploy.runtime import SeldRuntime

JP6 = ("RAM 2398/7620MB (lfb 4x4MB) CPU [3%@1510,0%@1510] GR3D_FREQ 0% cpu@47.3C VDD_IN 5124mW/5089mW "
       "VDD_CPU_GPU_CV 484mW/470mW VDD_SOC 1452mW/1449mW")
JP4 = "RAM 1900/3964MB CPU [2%@102] GR3D_FREQ 0% POM_5V_IN 2216mW/2216mW POM_5V_GPU 40mW/40mW"


def test_parse_tegrastats_rails():
    assert parse_tegrastats(JP6) == {"VDD_IN": 5.124, "VDD_CPU_GPU_CV": 0.484, "VDD_SOC": 1.452}
    assert parse_tegrastats(JP4)["POM_5V_IN"] == 2.216
    assert parse_tegrastats("RAM 2398/7620MB") == {}


def test_bench_reports_window_and_streaming_latency(causal_bundle, tmp_path):
    rt = SeldRuntime(causal_bundle, "onnxruntime")
    report = bench(rt, iterations=4, warmup=1)
    assert report.window.runs == 4 and report.stream_hop is not None and report.stream_hop.runs == 4
    assert report.window.median_ms <= report.window.p95_ms <= report.window.p99_ms
    assert abs(report.rtf_hop - report.window.median_ms / 100.0) < 1e-9
    assert report.host_peak_rss_mb is None or report.host_peak_rss_mb >= report.host_rss_mb
    json_path, md_path = write_bench(report, tmp_path)
    assert "streaming, one 100 ms hop" in md_path.read_text() and json_path.stat().st_size > 0


def test_a_fit_device_of_another_executor_is_refused_before_timing(fp32_bundle, monkeypatch):
    """ONNX Runtime on the CPU cannot calibrate a TensorRT device's constants: said at once, not
    after the whole benchmark ran."""
    import pytest

    from at2seld_edge.deploy import bench as bench_mod
    from at2seld_edge.errors import EdgeError

    def no_timing(*a, **k):
        raise AssertionError("timed before the --fit-device check")

    monkeypatch.setattr(bench_mod, "time_runs", no_timing)
    with pytest.raises(EdgeError, match="--fit-device jetson-orin-nano-8gb: its estimate models tensorrt layers"):
        bench(SeldRuntime(fp32_bundle, "onnxruntime"), iterations=3, warmup=1, fit_device="jetson-orin")

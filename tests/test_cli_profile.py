"""`edge devices` and `edge profile` as a user runs them."""

from __future__ import annotations

import json

import yaml

from tests.test_cli import assert_user_error, edge
from tests.deploy.test_profiler import TIGHT


def test_devices_list_and_show():
    r = edge("devices")
    assert r.returncode == 0, r.stderr
    assert "jetson-orin-nano-4gb" in r.stdout and "x86-cpu" in r.stdout
    r = edge("devices", "show", "jetson-orin")
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(r.stdout)["name"] == "jetson-orin-nano-8gb"


def test_profile_default_preset_on_jetson_orin(tmp_path):
    r = edge("profile", "--config", "at2seld-nano", "--target", "jetson-orin", "--budget", "realtime-100ms",
             "--iterations", "5", "--warmup", "1", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    for word in ("frontend", "backbone", "spatial_encoder", "cross_stitch", "track_transformer", "smoother", "heads",
                 "PASS", "residue", "roofline"):
        assert word in r.stdout, word
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["passed"] is True and report["profile"]["target"] == "jetson-orin-nano-8gb"
    assert (tmp_path / "report.png").stat().st_size > 0 and "| backbone |" in (tmp_path / "report.md").read_text()


def test_over_budget_exits_3_naming_the_module(tmp_path):
    path = tmp_path / "tight.yaml"
    path.write_text(yaml.safe_dump(TIGHT))
    args = ("profile", "--config", "at2seld-nano", "--target", "jetson-orin", "--budget", str(path),
            "--iterations", "2", "--warmup", "0")
    r = edge(*args, cwd=tmp_path)
    assert r.returncode == 0 and "FAIL" in r.stdout  # reported, not fatal, without the flag
    default = tmp_path / "reports" / "profile-at2seld-nano-jetson-orin-nano-8gb-fp16"
    assert (default / "report.json").is_file() and "reports/profile-at2seld-nano" in r.stdout  # written, and said where
    assert_user_error(edge(*args, "--fail-on-violation", cwd=tmp_path), 3, "over budget tight",
                      "backbone gmacs_per_second", "(+")


def test_unknown_device_and_budget_list_the_known_ones(tmp_path):
    assert_user_error(edge("profile", "--target", "orin-pico", "--budget", "realtime-100ms"), 1,
                      "unknown device 'orin-pico'", "jetson-orin-nx-16gb")
    assert_user_error(edge("profile", "--target", "jetson-orin", "--budget", "fast"), 1,
                      "unknown budget 'fast'", "orin-nano-15w")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "b", "description": "d", "total": {"latency": 3}}))
    assert_user_error(edge("profile", "--target", "jetson-orin", "--budget", str(bad)), 1,
                      "bad.yaml", "total.latency", "unknown key")


def test_profile_of_a_static_length_export_runs_at_its_length(tmp_path):
    onnx_path = tmp_path / "static4s.onnx"
    assert edge("export", "--config", "at2seld-nano", "--seconds", "4", "--out", str(onnx_path)).returncode == 0
    r = edge("profile", "--onnx", str(onnx_path), "--target", "x86-cpu", "--budget", "realtime-100ms",
             "--iterations", "2", "--warmup", "0", "--out", str(tmp_path / "p"))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "profiled at 4 s (the graph's static input)" in " ".join(r.stdout.split())

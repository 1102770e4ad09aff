"""`edge build`, `edge verify`, `edge run` and `edge bench` as a user runs them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from at2seld_edge.deploy.build import default_checkpoint, target_tensorrt
from at2seld_edge.deploy.devices import load_device
from at2seld_edge.deploy.engine import tensorrt_available
from at2seld_edge.evaluation.decode import read_output_csv
from tests.test_cli import assert_user_error, edge

DEFAULT_BUNDLE = "bundles/at2seld-nano-jetson-orin-nano-8gb-fp16"


@pytest.fixture(scope="module")
def default_build(tmp_path_factory):
    """`edge build --target jetson-orin` with no other argument, in a fresh folder."""
    cwd = tmp_path_factory.mktemp("fresh")
    r = edge("build", "--target", "jetson-orin", cwd=cwd)
    return cwd, r


def test_build_with_no_other_argument_writes_a_complete_bundle(default_build):
    cwd, r = default_build
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    bundle = cwd / DEFAULT_BUNDLE
    manifest = json.loads((bundle / "manifest.json").read_text())
    # the lint is for the TensorRT installed here, else the target's newest JetPack's
    linted = target_tensorrt(load_device("jetson-orin"), None)
    assert manifest["target_tensorrt"] == linted
    assert f"TensorRT {linted} lint clean" in text and "golden check PASS" in text
    for step in ("fusion", "export", "tensorrt lint", "golden", "numerical check", "profile"):
        assert f"] {step}:" in r.stderr, step
    if not tensorrt_available():
        assert "TensorRT is not installed here" in r.stderr
    assert manifest["precision"] == "fp16" and manifest["source_checkpoint"].endswith("at2seld-nano-synth.pt")
    for name in ("model.fp32.onnx", "golden.npz", "trtexec.sh", "lint.json", "profile/report.md",
                 "profile/report.png"):
        assert name in manifest["files"], name


def test_verify_and_bench_on_the_default_bundle(default_build, tmp_path):
    cwd, _ = default_build
    r = edge("verify", "--bundle", DEFAULT_BUNDLE, "--backend", "onnxruntime", cwd=cwd)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("PASS") and r.stdout.count("PASS") == 4
    r = edge("bench", "--bundle", DEFAULT_BUNDLE, "--backend", "onnxruntime", "--iterations", "5", "--warmup", "1",
             "--out", str(tmp_path), cwd=cwd)
    assert r.returncode == 0, r.stderr
    for word in ("median ms", "p95 ms", "p99 ms", "real-time factor", "throughput", "host memory", "power"):
        assert word in r.stdout, word
    report = json.loads((tmp_path / "bench-onnxruntime.json").read_text())
    assert report["window"]["runs"] == 5 and 0 < report["rtf_window"] < report["rtf_hop"]
    assert "| latency |" in (tmp_path / "bench-onnxruntime.md").read_text()


def test_tampered_bundle_fails_verify(default_build, tmp_path):
    cwd, _ = default_build
    b = tmp_path / "b"
    shutil.copytree(cwd / DEFAULT_BUNDLE, b)
    with open(b / "model.fp32.onnx", "ab") as f:
        f.write(b"\0")
    assert_user_error(edge("verify", "--bundle", str(b)), 1, "model.fp32.onnx: sha256 differs from the manifest")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    r = edge("data", "synth", "--out", str(root), "--clips", "8", "--seconds", "4", "--seed", "5")
    assert r.returncode == 0, r.stderr
    return root


def test_run_gives_the_same_events_as_evaluate(synth, tmp_path):
    ev = tmp_path / "eval"
    r = edge("evaluate", "--checkpoint", str(default_checkpoint()), "--data", str(synth / "dataset.yaml"),
             "--split", "test", "--out", str(ev))
    assert r.returncode == 0, r.stderr
    bundle = tmp_path / "bundle"
    r = edge("build", "--target", "x86-cpu", "--precision", "fp32", "--out", str(bundle))
    assert r.returncode == 0, r.stderr
    (ref_csv,) = sorted((ev / "output").glob("*.csv"))
    wav = next(synth.rglob(ref_csv.stem + ".wav"))
    out_csv = tmp_path / "run" / "events.csv"
    r = edge("run", str(wav), "--bundle", str(bundle), "--out", str(out_csv))
    assert r.returncode == 0, r.stderr
    assert out_csv.with_suffix(".png").stat().st_size > 0
    got, ref = read_output_csv(out_csv, 8), read_output_csv(ref_csv, 8)
    assert sum(len(v) for v in ref.values()) > 10  # the trained default finds the synthetic events
    assert sorted(got) == sorted(ref)
    for f in ref:
        assert [(d.cls, d.track) for d in got[f]] == [(d.cls, d.track) for d in ref[f]]
        np.testing.assert_allclose([d.xyz for d in got[f]], [d.xyz for d in ref[f]], atol=1e-3)


def test_wav_with_wrong_channels_or_rate(synth, tmp_path, default_build):
    cwd, _ = default_build
    bundle = str(cwd / DEFAULT_BUNDLE)
    wav = next(synth.rglob("*.wav"))
    audio, sr = sf.read(str(wav), dtype="float32")
    stereo = tmp_path / "stereo.wav"
    sf.write(str(stereo), audio[:, :2], sr)
    assert_user_error(edge("run", str(stereo), "--bundle", bundle), 1, "stereo.wav: 2 channels", "4-channel FOA")
    hi = tmp_path / "hi.wav"
    sf.write(str(hi), np.repeat(audio, 2, axis=0), 48000)
    assert_user_error(edge("run", str(hi), "--bundle", bundle), 1, "hi.wav: sample rate 48000 Hz", "--resample")
    r = edge("run", str(hi), "--bundle", bundle, "--resample", "--out", str(tmp_path / "hi.csv"), "--no-plot")
    assert r.returncode == 0, r.stderr
    assert "40 frames" in " ".join(r.stdout.split())


def test_build_refusals_name_the_problem(tmp_path):
    assert_user_error(edge("build", "--target", "jetson-orin", "--dla", "--seconds", "1", "--out", str(tmp_path / "a")),
                      2, "jetson-orin-nano-8gb has no DLA cores")
    assert_user_error(edge("build", "--target", "jetson-orin-agx-64gb", "--dla", "--out", str(tmp_path / "b")), 2,
                      "DLA needs static shapes")
    assert_user_error(edge("build", "--target", "jetson-orin", "--tensorrt", "8.5", "--opset", "17",
                           "--out", str(tmp_path / "c")), 1, "not buildable with TensorRT 8.5",
                      "(LayerNormalization, module cross_stitch)", "opset 16")
    assert not (tmp_path / "c").exists() and not (tmp_path / "c.partial").exists()
    assert_user_error(edge("build", "--target", "jetson-orin", "--precision", "int4"), 2, "--precision 'int4'")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert_user_error(edge("build", "--target", "jetson-orin", "--out", str(mine)), 1, "is not a bundle")
    assert (mine / "notes.txt").read_text() == "keep"


@pytest.mark.slow  # a whole build for one TensorRT version; the lint tables are tested in tests/deploy/test_lint.py
def test_tensorrt_8_5_target_exports_opset_16(tmp_path):
    out = tmp_path / "jp5"
    r = edge("build", "--target", "jetson-orin", "--tensorrt", "8.5", "--no-engine", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "opset 16" in r.stderr and "TensorRT 8.5 lint clean" in " ".join(r.stdout.split())


@pytest.mark.slow  # INT8 builds and their golden check run by default in tests/deploy (int8_bundle, test_build_int8)
def test_int8_bundle_calibrated_on_a_dataset_verifies(synth, tmp_path):
    out = tmp_path / "int8"
    r = edge("build", "--target", "jetson-orin", "--precision", "int8", "--data", str(synth / "dataset.yaml"),
             "--calib-clips", "4", "--no-engine", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "4 training clips of synth-seld-seed5" in " ".join(r.stderr.split())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"] == "model.int8.onnx" and manifest["calibration_cache"] == "calibration.cache"
    assert (out / "calibration.cache").read_text().startswith("TRT-")
    r = edge("verify", "--bundle", str(out), "--backend", "onnxruntime")
    assert r.returncode == 0, r.stderr


def test_build_from_a_compression_folder_keeps_its_float_modules(tmp_path):
    from at2seld_edge.checkpoint import load_checkpoint, model_from_checkpoint, provenance, save_checkpoint
    from at2seld_edge.compress.artifact import CompressionManifest, write_compression_manifest
    from at2seld_edge.onnx_export import module_of_node

    comp = tmp_path / "comp"
    comp.mkdir()
    ckpt = load_checkpoint(default_checkpoint())
    save_checkpoint(comp / "pruned_finetuned.pt", model_from_checkpoint(ckpt), ckpt.classes, ckpt.thresholds)
    (comp / "model.fp32.onnx").write_bytes(b"not read by build")
    prov = provenance()
    write_compression_manifest(comp, CompressionManifest(
        toolkit_version=prov["toolkit_version"], created_utc=prov["created_utc"],
        source_checkpoint=str(default_checkpoint()), source_checkpoint_sha256=None, data=str(tmp_path / "gone.yaml"),
        classes=ckpt.classes, options={"int8": True, "calib_method": "minmax"}, checkpoint="pruned_finetuned.pt",
        fp32_model="model.fp32.onnx", float_modules=["frontend", "track_transformer"]))
    out = tmp_path / "bundle"
    r = edge("build", "--target", "jetson-orin", "--compressed", str(comp), "--precision", "int8", "--calib-clips", "4",
             "--no-engine", "--out", str(out))
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stderr.split())
    assert "float: frontend, track_transformer" in text and "ranges (minmax)" in text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source_checkpoint"] == str(comp / "pruned_finetuned.pt")
    import onnx

    quantized = {module_of_node(n.name) for n in onnx.load(str(out / "model.int8.onnx")).graph.node
                 if n.op_type == "QuantizeLinear"}
    assert "backbone" in quantized and not quantized & {"frontend", "track_transformer"}
    assert_user_error(edge("build", "--target", "jetson-orin", "--compressed", str(tmp_path)), 1,
                      "not an edge compress output")

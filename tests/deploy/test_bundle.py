"""The bundle manifest: what it records, its round trip, and tamper detection."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import at2seld_edge
from at2seld_edge.checkpoint import load_checkpoint
from at2seld_edge.deploy.build import default_checkpoint
from at2seld_edge.deploy.bundle import MANIFEST, BundleManifest, load_bundle, publish, write_manifest
from at2seld_edge.deploy.trt_check import here_builder
from at2seld_edge.errors import EdgeError, ErrorKind
from at2seld_edge.io import sha256_file


def test_manifest_round_trip_records_the_contract(fp32_bundle):
    b = load_bundle(fp32_bundle)
    m = b.manifest
    again = BundleManifest.model_validate(json.loads((fp32_bundle / MANIFEST).read_text()))
    assert again == m
    ckpt = load_checkpoint(default_checkpoint())
    assert m.class_names == ckpt.classes and m.thresholds == pytest.approx(ckpt.thresholds)
    assert m.source_checkpoint_sha256 == sha256_file(default_checkpoint())
    assert m.target == "jetson-orin-nano-8gb" and m.target_tensorrt == "10.3" and m.precision == "fp32"
    assert m.sample_rate == 24000 and m.label_hop_samples == 2400 and m.channel_order.startswith("ACN")
    assert [t.name for t in m.inputs] == ["audio"] and [t.name for t in m.outputs] == ["sed_logits", "doa"]
    assert m.outputs[1].shape == [1, "frames", 3, 8, 3] and m.window.dynamic_time
    assert m.toolkit_version == at2seld_edge.__version__ and m.engine is None
    on_disk = {p.relative_to(fp32_bundle).as_posix() for p in fp32_bundle.rglob("*") if p.is_file()} - {MANIFEST}
    on_disk = {p for p in on_disk if not p.startswith("bench/")}
    assert set(m.files) == on_disk  # every file, hashed
    assert {"model.fp32.onnx", "golden.npz", "trtexec.sh", "lint.json", "profile/report.md"} <= set(m.files)
    assert [s["step"] for s in m.steps] == ["load", "fusion", "export", "tensorrt lint", "golden", "numerical check",
                                            "tensorrt parse and build", "profile"]
    # ran where TensorRT-RTX (or TensorRT + GPU) is, else listed as skipped with the reason
    assert m.steps[6]["status"] == ("ran" if here_builder() else "skipped")


def _copy(bundle, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(bundle, dst)
    return dst


@pytest.mark.parametrize("damage", ["changed", "missing"])
def test_a_changed_or_missing_file_is_refused(fp32_bundle, tmp_path, damage):
    b = _copy(fp32_bundle, tmp_path)
    if damage == "changed":
        with open(b / "golden.npz", "r+b") as f:
            f.seek(200)
            byte = f.read(1)
            f.seek(200)
            f.write(bytes([byte[0] ^ 0xFF]))
    else:
        (b / "golden.npz").unlink()
    with pytest.raises(EdgeError) as e:
        load_bundle(b)
    assert e.value.kind == ErrorKind.CHECK
    assert "golden.npz" in str(e.value) and ("sha256 differs" in str(e.value) or "missing" in str(e.value))


def test_manifest_problems_name_the_file(fp32_bundle, tmp_path):
    b = _copy(fp32_bundle, tmp_path)
    data = json.loads((b / MANIFEST).read_text())
    (b / MANIFEST).write_text(json.dumps({**data, "format": "at2seld-edge.bundle/9"}))
    with pytest.raises(EdgeError, match="bundle format 'at2seld-edge.bundle/9'"):
        load_bundle(b)
    (b / MANIFEST).write_text(json.dumps({**data, "toolkit_version": "7.0.0"}))
    with pytest.raises(EdgeError, match="different major version"):
        load_bundle(b)
    del data["thresholds"]
    (b / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(EdgeError, match="manifest.json.*thresholds"):
        load_bundle(b)
    (b / MANIFEST).write_text("{not json")
    with pytest.raises(EdgeError, match="not readable JSON"):
        load_bundle(b)
    with pytest.raises(EdgeError, match="not a bundle"):
        load_bundle(tmp_path)


def test_rewritten_manifest_covers_new_files(fp32_bundle, tmp_path):
    b = _copy(fp32_bundle, tmp_path)
    data = json.loads((b / MANIFEST).read_text())
    (b / "notes.txt").write_text("hello")
    m = write_manifest(b, {k: v for k, v in data.items() if k != "files"})
    assert "notes.txt" in m.files and load_bundle(b).manifest.files["notes.txt"].bytes == 5


def test_publish_replaces_a_bundle_but_not_other_folders(tmp_path):
    out = tmp_path / "out"
    for text in ("old", "new"):
        work = tmp_path / "work"
        work.mkdir()
        (work / MANIFEST).write_text(text)
        publish(work, out)
        assert (out / MANIFEST).read_text() == text and not work.exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.txt").write_text("mine")
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(EdgeError, match="not a bundle"):
        publish(work, other)
    assert (other / "data.txt").read_text() == "mine"


def test_golden_holds_inputs_and_reference_outputs(fp32_bundle):
    with np.load(fp32_bundle / "golden.npz") as z:
        assert z["audio"].shape == (3, 4, 24000) and z["sed_logits"].shape == (3, 10, 3, 8)
        assert z["doa"].shape == (3, 10, 3, 8, 3) and np.abs(z["audio"]).max() > 0.01

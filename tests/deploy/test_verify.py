"""Golden verification: FP32 number for number, INT8 on decisions and angles; a wrong model fails."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from at2seld_edge.deploy.bundle import MANIFEST, write_manifest
from at2seld_edge.deploy.runtime import SeldRuntime
from at2seld_edge.deploy.verify import TOLERANCES, compare, verify


@pytest.mark.parametrize("which", ["fp32_bundle", "int8_bundle"])
def test_verify_passes_with_onnxruntime(which, request):
    bundle = request.getfixturevalue(which)
    report = verify(SeldRuntime(bundle, "onnxruntime"))
    assert report.passed, report.failures
    assert len(report.rows) == 3 and report.backend.startswith("onnxruntime")
    worst_logit = max(r.max_abs_logit for r in report.rows)
    if which == "fp32_bundle":
        assert report.precision == "fp32" and worst_logit < 1e-4
    else:  # INT8 moves numbers but keeps decisions and directions
        assert report.precision == "int8" and worst_logit > 1e-3
        assert min(r.decision_agreement for r in report.rows) >= 0.95
        assert max(r.mean_doa_error_deg for r in report.rows) < 5


def test_verify_fails_when_the_golden_outputs_do_not_match(fp32_bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(fp32_bundle, b)
    with np.load(b / "golden.npz") as z:
        golden = {k: z[k] for k in z.files}
    golden["doa"] = golden["doa"][..., [1, 0, 2]]  # swap x and y: every direction moves
    with open(b / "golden.npz", "wb") as f:
        np.savez(f, **golden)
    data = json.loads((b / MANIFEST).read_text())
    write_manifest(b, {k: v for k, v in data.items() if k != "files"})
    report = verify(SeldRuntime(b, "onnxruntime"))
    assert not report.passed and any("abs_doa" in f for f in report.failures)


def test_compare_on_hand_cases():
    logits = np.full((2, 1, 2), -5.0, np.float32)
    logits[0, 0, 0] = 5.0  # one active track, class 0, frame 0
    doa = np.zeros((2, 1, 2, 3), np.float32)
    doa[..., 0] = 1.0
    ref = {"sed_logits": logits, "doa": doa}
    turned = doa.copy()
    turned[0, 0, 0] = [0.0, 1.0, 0.0]  # 90 degrees off on the active track
    flipped = logits.copy()
    flipped[1, 0, 1] = 5.0  # one false alarm of four decisions
    thr = np.array([0.5, 0.5], np.float32)
    c = compare(ref, {"sed_logits": flipped, "doa": turned}, thr, TOLERANCES["int8"])
    assert c.decision_agreement == pytest.approx(0.75) and c.mean_doa_error_deg == pytest.approx(90.0, abs=1e-3)
    assert len(c.failures) == 3  # agreement, mean and p95 angle
    assert not compare(ref, ref, thr, TOLERANCES["fp32"]).failures

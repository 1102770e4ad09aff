"""`edge build` judges INT8 as `edge compress` does, takes the compression run's calibration, and
says which modules a failed golden check comes from and what to try."""

from __future__ import annotations

import json

import pytest

from at2seld_edge.deploy.build import BuildOptions, build
from at2seld_edge.deploy.build_plan import with_compression
from at2seld_edge.errors import EdgeError, ErrorKind


def test_a_failed_int8_golden_check_names_the_modules_and_what_to_try(tmp_path):
    opts = BuildOptions(target="x86-cpu", precision="int8", calib_clips=4, out=tmp_path / "b", build_engine=False,
                        int8_max_doa_mean=0.01, int8_max_doa_p95=0.02)
    with pytest.raises(EdgeError) as e:
        build(opts, say=lambda m: None)
    text = str(e.value)
    assert e.value.kind == ErrorKind.CHECK and "mean_doa_error_deg" in text and "(must be <= 0.01)" in text
    assert "modules most responsible: " in text and "try --keep-float " in text
    assert not (tmp_path / "b").exists()


def test_the_bundle_records_the_int8_limits_it_was_judged_by(int8_bundle):
    tol = json.loads((int8_bundle / "manifest.json").read_text())["tolerances"]
    assert tol == {"min_decision_agreement": 0.95, "max_mean_doa_error_deg": 5.0, "max_p95_doa_error_deg": 15.0,
                   "max_abs_logit": None, "max_abs_doa": None}


def test_a_compression_folder_lends_its_calibration(tmp_path):
    from at2seld_edge.compress.artifact import CompressionManifest, write_compression_manifest

    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "pruned.pt").write_bytes(b"")
    (folder / "model.fp32.onnx").write_bytes(b"")
    spec = tmp_path / "dataset.yaml"
    spec.write_text("name: x\n")
    write_compression_manifest(folder, CompressionManifest(
        toolkit_version="0.1.0", created_utc="now", source_checkpoint="gone.pt", source_checkpoint_sha256=None,
        data=str(spec), classes=["a"], options={"int8": True, "calib_method": "minmax", "calib_clips": 8},
        checkpoint="pruned.pt", fp32_model="model.fp32.onnx", float_modules=["frontend", "smoother"]))
    keep = {"frontend"}
    opts = with_compression(BuildOptions(target="x86-cpu", precision="int8", compressed=folder), keep, lambda m: None)
    assert (opts.data, opts.calib_clips, opts.calib_method) == (spec, 8, "minmax")
    assert keep == {"frontend", "smoother"} and opts.checkpoint == folder / "pruned.pt"
    mine = with_compression(BuildOptions(target="x86-cpu", precision="int8", compressed=folder, calib_clips=4,
                                          calib_method="entropy"), set(), lambda m: None)
    assert (mine.calib_clips, mine.calib_method) == (4, "entropy")  # what the user gave wins


@pytest.mark.parametrize("flags, fragment", [
    ({"int8_min_agreement": 0.1}, "--int8-min-agreement 0.1"),
    ({"keep_float": ("backbone", "gru")}, "unknown module(s) gru"),
    ({"calib_clips": 2}, "--calib-clips 2"),
])
def test_build_options_name_the_flag(flags, fragment):
    with pytest.raises(EdgeError) as e:
        BuildOptions.from_flags(target="x86-cpu", **flags)
    assert e.value.kind == ErrorKind.USAGE and fragment in str(e.value)

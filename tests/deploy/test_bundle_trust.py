"""A bundle is untrusted input: every way its files or manifest can lie is refused at load, with
one line naming the file and the problem, before anything in it runs."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from at2seld_edge.deploy.bundle import MANIFEST, load_bundle, write_manifest
from at2seld_edge.errors import EdgeError
from at2seld_edge.io import sha256_file
from tests.test_cli import assert_user_error, edge


@pytest.fixture
def bundle(fp32_bundle, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(fp32_bundle, dst)
    return dst


def manifest(b) -> dict:
    return json.loads((b / MANIFEST).read_text())


def rewrite(b, **changes):
    """Edit manifest fields and re-hash the files: what someone who edits a bundle would do."""
    data = {k: v for k, v in manifest(b).items() if k != "files"}
    data.update(changes)
    (b / MANIFEST).write_text(json.dumps({**data, "files": {}}))
    files = {}
    for p in sorted(b.rglob("*")):
        rel = p.relative_to(b).as_posix()
        if rel != MANIFEST and (p.is_file() or p.is_symlink()):
            files[rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    (b / MANIFEST).write_text(json.dumps({**data, "files": files}))


def refused(b, *fragments):
    with pytest.raises(EdgeError) as e:
        load_bundle(b)
    for f in fragments:
        assert f in str(e.value), str(e.value)
    return e.value


@pytest.mark.parametrize("name", ["../outside.txt", "/etc/passwd", "a/../../x", "./golden.npz", "c:\\\\x", ""])
def test_file_names_must_be_plain_relative_names_inside(bundle, name):
    data = manifest(bundle)
    data["files"][name] = {"sha256": "0" * 64, "bytes": 1}
    (bundle / MANIFEST).write_text(json.dumps(data))
    refused(bundle, "not a plain relative file name inside the bundle")
    data = manifest(bundle)


def test_a_referenced_file_outside_is_refused(bundle):
    data = manifest(bundle)
    (bundle / MANIFEST).write_text(json.dumps({**data, "golden": "../golden.npz"}))
    refused(bundle, "golden", "not a plain relative file name")


def test_a_symlink_leaving_the_bundle_is_refused(bundle, tmp_path):
    secret = tmp_path / "secret.npz"
    shutil.copy(bundle / "golden.npz", secret)
    (bundle / "golden.npz").unlink()
    os.symlink(secret, bundle / "golden.npz")
    rewrite(bundle)
    refused(bundle, "golden.npz: a symlink out of the bundle")


def test_a_file_present_but_not_listed_is_refused(bundle):
    (bundle / "extra.onnx").write_bytes(b"\0" * 10)
    refused(bundle, "extra.onnx: present but not listed in the manifest")
    (bundle / "extra.onnx").unlink()
    (bundle / "profile" / ".hidden").write_text("x")
    refused(bundle, "profile/.hidden: present but not listed")


@pytest.mark.parametrize("changes, fragment", [
    ({"label_hop_samples": 0}, "label_hop_samples"),
    ({"label_hop_samples": -2400}, "label_hop_samples"),
    ({"label_hop_samples": 2000}, "is not label_hop_s"),
    ({"window": {"dynamic_time": True, "samples": 24000, "min_samples": 48000, "max_samples": 24000}},
     "min_samples 48000 <= samples 24000 <= max_samples 24000 does not hold"),
    ({"window": {"dynamic_time": True, "samples": 24100, "min_samples": 2400, "max_samples": 1440000}},
     "not whole label hops"),
    ({"thresholds": [0.5] * 7}, "7 thresholds for 8 classes"),
    ({"thresholds": [1.5] * 8}, "thresholds"),
    ({"class_names": ["a"] * 8}, "class_names repeats a name"),
    ({"sample_rate": 1}, "sample_rate"),
    ({"tolerances": {"max_abs_logit": 1e9, "max_abs_doa": 1e-3}}, "tolerances.max_abs_logit"),
    ({"tolerances": {"min_decision_agreement": 0.1}}, "tolerances.min_decision_agreement"),
])
def test_manifest_numbers_are_checked(bundle, changes, fragment):
    rewrite(bundle, **changes)
    refused(bundle, "manifest.json", fragment)


def test_class_count_must_match_the_outputs(bundle):
    data = manifest(bundle)
    outs = data["outputs"]
    outs[0]["shape"][3] = outs[1]["shape"][3] = 9
    rewrite(bundle, outputs=outs, class_names=[f"c{i}" for i in range(9)], thresholds=[0.5] * 9)
    refused(bundle, "the manifest does not describe its files", "sed_logits axis 3 is 8 in the graph, 9 in the manifest")


@pytest.mark.parametrize("field, value, fragment", [
    ("inputs", [{"name": "wave", "shape": [1, 4, "samples"], "dtype": "float32"}], "inputs ['audio'], the manifest says ['wave']"),
    ("inputs", [{"name": "audio", "shape": [1, 4], "dtype": "float32"}], "input audio has rank 3, the manifest says 2"),
    ("inputs", [{"name": "audio", "shape": [1, 4, "samples"], "dtype": "float16"}], "element type 1, the manifest says float16"),
    ("inputs", [{"name": "audio", "shape": [1, 5, "samples"], "dtype": "float32"}], "axis 1 is 4 in the graph, 5 in the manifest"),
    ("precision", "int8", "the manifest says int8, but the graph has no QuantizeLinear"),
])
def test_the_graph_must_match_the_manifest(bundle, field, value, fragment):
    rewrite(bundle, **{field: value})
    refused(bundle, "model.fp32.onnx", fragment)


def test_golden_arrays_are_never_unpickled_and_their_shapes_are_checked(bundle):
    with np.load(bundle / "golden.npz") as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(bundle / "golden.npz", **{**arrays, "doa": np.array([{"evil": 1}], dtype=object)})
    rewrite(bundle)
    refused(bundle, "golden.npz", "pickled objects (refused)")
    np.savez(bundle / "golden.npz", **{**arrays, "sed_logits": arrays["sed_logits"][:, :, :, :5]})
    rewrite(bundle)
    refused(bundle, "golden.npz: sed_logits is float32 (3, 10, 3, 5), expected float32 (3, 10, 3, 8)")
    np.savez(bundle / "golden.npz", **{**arrays, "audio": arrays["audio"][:, :, :1000]})
    rewrite(bundle)
    refused(bundle, "golden.npz: inputs of 1000 samples do not fit the window")


def test_bundle_faults_exit_1_in_the_cli_never_2_or_a_traceback(bundle):
    rewrite(bundle, label_hop_samples=0)
    for cmd in (("verify", "--bundle", str(bundle)), ("bench", "--bundle", str(bundle), "--iterations", "2")):
        assert_user_error(edge(*cmd), 1, "manifest.json", "label_hop_samples")


def test_rewriting_the_manifest_through_the_library_still_loads(bundle):
    data = {k: v for k, v in manifest(bundle).items() if k != "files"}
    write_manifest(bundle, data)
    assert load_bundle(bundle).manifest.precision == "fp32"

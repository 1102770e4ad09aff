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
from at2seld_edge.evaluation.agreement import tolerances
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
    extra = {"tolerances": tolerances("int8")} if field == "precision" else {}  # what an int8 golden check needs
    rewrite(bundle, **{field: value}, **extra)
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


# ---- issue 21: numbers, nesting and sizes a tampered manifest gives, and files that are not what
# they claim. The C++ loader refuses each with the same message (deploy/cpp/tests/test_bundle.cpp).

def set_raw(b, key: str, raw: str) -> None:
    """The manifest's text with `"key": value` replaced by raw JSON text (no re-hash needed)."""
    data = manifest(b)
    data[key] = "\0raw"
    (b / MANIFEST).write_text(json.dumps(data, indent=2).replace(json.dumps("\0raw"), raw, 1))


@pytest.mark.parametrize("key, raw, message", [
    ("label_hop_samples", "9" * 5000, "not readable JSON (number 99999999999999999999... (5,000 characters) is out of range)"),
    ("label_hop_samples", "18446744073709551616", "not readable JSON (number 18446744073709551616 is out of range)"),
    ("sample_rate", "9223372036854775808", "not readable JSON (number 9223372036854775808 is out of range)"),
    ("label_hop_s", "1e400", "not readable JSON (number 1e400 is out of range)"),
    ("label_hop_s", "Infinity", "not readable JSON (Infinity is not a JSON number)"),
    ("steps", "[" * 10_000 + "]" * 10_000, "not readable JSON (nested deeper than 32 levels)"),
    ("steps", "[" * 40 + "]" * 40, "not readable JSON (nested deeper than 32 levels)"),
    ("label_hop_s", "1e308", "key `label_hop_s`: Input should be less than or equal to 60 (got 1e+308)"),
])
def test_extreme_numbers_and_nesting_are_one_line(bundle, key, raw, message):
    set_raw(bundle, key, raw)
    e = refused(bundle)
    assert str(e) == f"{bundle / MANIFEST}: {message}"


def test_extreme_manifests_are_one_line_in_the_cli(bundle):
    original = (bundle / MANIFEST).read_text()
    set_raw(bundle, "steps", "[" * 10_000 + "]" * 10_000)
    assert_user_error(edge("verify", "--bundle", str(bundle)), 1, "nested deeper than 32 levels")
    (bundle / MANIFEST).write_text(original)
    set_raw(bundle, "label_hop_samples", "9" * 5000)
    assert_user_error(edge("run", str(bundle / "x.wav"), "--bundle", str(bundle)), 1, "is out of range")


@pytest.mark.parametrize("changes, message", [
    ({"window": {"dynamic_time": True, "samples": 24000, "min_samples": 2400, "max_samples": 1 << 40}},
     "key `window.max_samples`: Input should be less than or equal to 134217728 (got 1099511627776)"),
    ({"tolerances": {}}, "tolerances: max_abs_logit, max_abs_doa missing; the fp32 golden check judges by them"),
])
def test_sizes_are_bounded_and_the_precisions_tolerances_present(bundle, changes, message):
    rewrite(bundle, **changes)
    assert str(refused(bundle)) == f"{bundle / MANIFEST}: {message}"


def _npz_of_headers(path, shapes: dict[str, tuple]) -> None:
    """A .npz whose members stop after their .npy headers: what the shapes declare is not there."""
    import io
    import zipfile

    from numpy.lib import format as npy

    with zipfile.ZipFile(path, "w") as z:
        for name, shape in shapes.items():
            head = io.BytesIO()
            npy.write_array_header_1_0(head, {"descr": "<f4", "fortran_order": False, "shape": shape})
            z.writestr(f"{name}.npy", head.getvalue())  # magic, version and header


def test_a_golden_file_declaring_gigabytes_is_refused_before_reading(bundle):
    # shapes the window allows (50 inputs of 60 s), 1.16 GB declared: refused from the headers alone
    _npz_of_headers(bundle / "golden.npz", {"audio": (50, 4, 1_440_000), "sed_logits": (50, 600, 3, 8),
                                            "doa": (50, 600, 3, 8, 3)})
    rewrite(bundle)
    assert str(refused(bundle)).endswith(
        "golden.npz: its arrays hold 1,163,520,000 bytes; a golden file holds at most 1,073,741,824")


def test_an_fp16_graph_with_external_data_is_refused(bundle):
    import onnx

    model = onnx.load(str(bundle / "model.fp32.onnx"))
    onnx.save_model(model, str(bundle / "model.fp16.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.fp16.onnx.data", size_threshold=0)
    rewrite(bundle, fp16_model="model.fp16.onnx")
    refused(bundle, "model.fp16.onnx: its weights point to external data files")


def test_a_graph_with_a_custom_operator_is_refused_before_onnxruntime_sees_it(bundle):
    import onnx

    model = onnx.load(str(bundle / "model.fp32.onnx"))
    node = model.graph.node[0]
    node.domain = "com.example"
    model.opset_import.add(domain="com.example", version=1)
    onnx.save(model, str(bundle / "model.fp32.onnx"))
    rewrite(bundle)
    assert str(refused(bundle)).endswith(
        f"model.fp32.onnx: node {node.name!r} is the custom operator com.example::{node.op_type}; a bundle's graphs "
        "use standard ONNX operators only")
    assert_user_error(edge("verify", "--bundle", str(bundle)), 1, "is the custom operator com.example::")


def _engine(tag: bytes, recorded: int, size: int = 64) -> bytes:
    return (tag + bytes(12) + recorded.to_bytes(8, "little")).ljust(size, b"\0")


ENGINE = {"file": "model.engine", "tensorrt_version": "10.3.0", "gpu_name": "Orin", "compute_capability": "8.7"}


@pytest.mark.parametrize("builder, content, message", [
    ("tensorrt", None, "model.engine: not a TensorRT engine (a serialized plan begins with the tag ftrt, vtrt or qtrt)"),
    ("tensorrt-rtx", _engine(b"vtrt", 4096),
     "model.engine: not a whole TensorRT-RTX engine (its header records 4,096 bytes, the file holds 64)"),
    ("tensorrt", _engine(b"ftrt", 0), None),  # plausible: accepted (ONNX Runtime runs the bundle here)
    ("tensorrt-rtx", _engine(b"vtrt", 64), None),
], ids=["onnx-as-engine", "rtx-size-differs", "tensorrt-tag", "rtx-tag-and-size"])
def test_an_engine_entry_must_name_a_serialized_plan(bundle, builder, content, message):
    engine = bundle / "model.engine"
    engine.write_bytes(content if content is not None else (bundle / "model.fp32.onnx").read_bytes())
    rewrite(bundle, engine={**ENGINE, "builder": builder})
    if message is None:
        assert load_bundle(bundle).manifest.engine.builder == builder
    else:
        assert str(refused(bundle)).endswith(message)


def test_outputs_renamed_in_graph_and_manifest_alike_are_refused(bundle):
    import onnx

    model = onnx.load(str(bundle / "model.fp32.onnx"))
    for node in model.graph.node:
        node.output[:] = ["direction" if o == "doa" else o for o in node.output]
    model.graph.output[1].name = "direction"
    onnx.save(model, str(bundle / "model.fp32.onnx"))
    outputs = manifest(bundle)["outputs"]
    outputs[1]["name"] = "direction"
    rewrite(bundle, outputs=outputs)
    assert str(refused(bundle)) == (
        f"{bundle / MANIFEST}: the runtime takes one float32 input (1, 4, samples) and float32 outputs sed_logits "
        "(1, frames, tracks, classes) and doa (1, frames, tracks, classes, 3) with a fixed number of tracks")

"""ONNX export of the whole model (front-end in graph) and its parity with PyTorch in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from at2seld_edge.errors import EdgeError
from at2seld_edge.model import OUTPUT_NAMES, build_model
from at2seld_edge.onnx_export import export_onnx, read_manifest
from tests.conftest import variant

FORBIDDEN_OPS = {"STFT", "DFT", "MelWeightMatrix"}  # not in TensorRT; the front-end must avoid them


def test_dynamic_time_export_matches_torch_at_several_lengths(tmp_path):
    model = build_model(variant()).eval()
    path = tmp_path / "nano.onnx"
    result = export_onnx(model, path, seconds=1.0, dynamic_time=True)
    assert result.checked_lengths == [24000, 28800]
    assert max(result.max_abs_diff.values()) < 1e-4
    proto = onnx.load(str(path))
    assert not FORBIDDEN_OPS & {n.op_type for n in proto.graph.node}
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for seconds in (0.5, 3.0):  # lengths never seen at export time
        audio = 0.1 * torch.randn(2, 4, int(24000 * seconds))
        sed, doa = sess.run(list(OUTPUT_NAMES), {"audio": audio.numpy()})
        with torch.no_grad():
            ref = model(audio)
        assert sed.shape == (2, int(10 * seconds), 3, 13)
        assert np.abs(sed - ref["sed_logits"].numpy()).max() < 1e-4
        assert np.abs(doa - ref["doa"].numpy()).max() < 1e-4


def test_node_names_carry_module_scopes(tmp_path):
    path = tmp_path / "nano.onnx"
    export_onnx(build_model(variant()), path, seconds=0.5)
    scopes = {n.name.split("/")[2] for n in onnx.load(str(path)).graph.node if n.name.startswith("/model/")}
    assert {"frontend", "backbone", "spatial_encoder", "cross_stitch", "track_transformer", "smoother", "heads"} <= scopes


def test_manifest_is_embedded(tmp_path):
    model = build_model(variant())
    path = tmp_path / "nano.onnx"
    export_onnx(model, path, seconds=0.5, manifest_extra={"source_checkpoint": "x.pt"})
    m = read_manifest(path)
    assert m["sample_rate"] == 24000 and m["label_hop_s"] == 0.1 and m["channel_order"].startswith("ACN (W, Y, Z, X)")
    assert m["input"]["shape"] == ["batch", 4, 12000] and m["outputs"]["doa"]["shape"] == ["batch", 5, 3, 13, 3]
    assert m["config_fingerprint"] == model.config.fingerprint() and m["source_checkpoint"] == "x.pt"


@pytest.mark.parametrize("name", ["early", "causal", "logmel_iv-resampled"])
def test_variants_export_with_parity(tmp_path, name):
    overrides = {
        "early": dict(cross_stitch={"position": "early", "early_backbone_stage": 2, "early_spatial_stage": 2}),
        "causal": dict(smoother={"causal": True}),
        "logmel_iv-resampled": dict(frontend={"descriptors": "logmel_iv"},
                                    backbone={"sample_rate": 32000, "n_fft": 1024, "hop": 320, "fmax": 14000}),
    }[name]
    result = export_onnx(build_model(variant(**overrides)), tmp_path / "m.onnx", seconds=0.5, dynamic_time=True)
    assert max(result.max_abs_diff.values()) < 1e-4


def test_failed_parity_leaves_no_file(tmp_path):
    path = tmp_path / "nano.onnx"
    with pytest.raises(EdgeError, match="ONNX Runtime differs from PyTorch"):
        export_onnx(build_model(variant()), path, seconds=0.5, tolerance=0.0)
    assert list(tmp_path.iterdir()) == []


def test_length_must_be_whole_label_hops(tmp_path):
    with pytest.raises(EdgeError, match="--seconds 0.25 is not a whole number"):
        export_onnx(build_model(variant()), tmp_path / "m.onnx", seconds=0.25)


def test_stream_graph_has_fixed_shapes_explicit_state_and_streams_the_whole_clip(tmp_path):
    from at2seld_edge.onnx_export import STREAM_GRAPH, export_stream_graph

    model = build_model(variant(smoother={"causal": True}, track_transformer={"history_frames": 5})).eval()
    result = export_stream_graph(model, tmp_path)
    assert result.hops_checked == 15 and max(result.max_abs_diff.values()) < 1e-4  # past the 5-frame window
    assert result.lookahead_samples == 0 and result.hop_samples == 2400
    proto = onnx.load(str(tmp_path / STREAM_GRAPH))
    inputs = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    outputs = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in proto.graph.output}
    assert inputs.pop("audio") == [1, 4, 2400] and outputs.pop("sed_logits") == [1, 1, 3, 13]
    assert outputs.pop("doa") == [1, 1, 3, 13, 3]
    assert inputs == {s.input: s.shape for s in result.states}  # every axis fixed (0 would be dynamic)
    assert outputs == {s.output: s.shape for s in result.states}
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in proto.graph.input)
    by_name = {s.name: s.shape for s in result.states}
    assert by_name["track_transformer.layers.0.time_attn.keys"] == [1, 3, 4, 5, 16]
    assert by_name["smoother"] == [1, 3, 64] and by_name["frontend.stft"] == [1, 4, 272]
    m = read_manifest(tmp_path / STREAM_GRAPH)
    assert m["artifact"] == "stream_graph" and [s["name"] for s in m["states"]] == list(by_name)


def test_stream_graph_needs_a_causal_model_and_leaves_nothing_when_it_fails(tmp_path):
    from at2seld_edge.onnx_export import export_stream_graph

    with pytest.raises(EdgeError, match="streaming needs a causal model"):
        export_stream_graph(build_model(variant()), tmp_path)
    with pytest.raises(EdgeError, match="differs from the whole clip"):
        export_stream_graph(build_model(variant(smoother={"causal": True})), tmp_path, tolerance=0.0)
    assert list(tmp_path.iterdir()) == []


def test_the_supported_opset_range_is_what_torch_onnx_and_onnx_runtime_take():
    """`edge build/export --opset` are bounded by limits.MAX_OPSET (import-light, so a constant):
    it must stay within what the installed exporter writes and ONNX Runtime runs."""
    from torch.onnx import _constants

    from at2seld_edge.limits import MAX_OPSET, MIN_OPSET

    assert MIN_OPSET <= 17 <= MAX_OPSET <= _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
    assert MAX_OPSET <= onnx.defs.onnx_opset_version()

"""TensorRT compatibility lint: planted problems are named by node and module."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from at2seld_edge.deploy.lint import RULES, lint_onnx, rules_for
from at2seld_edge.errors import EdgeError

VERSIONS = ["8.5", "8.6", "10.3", "10.15"]


def _graph(nodes, inits=(), opset=17, inputs=None):
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])]
    g = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _save(model, tmp_path, name="m.onnx"):
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("version", VERSIONS)
def test_planted_unsupported_operator_is_named_with_its_module(tmp_path, version):
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="/model/backbone/conv_block1/Relu"),
             helper.make_node("Unique", ["r"], ["y"], name="/model/heads/Unique")]
    report = lint_onnx(_save(_graph(nodes, opset=17), tmp_path), version)
    assert [(f.node, f.module) for f in report.errors] == [("/model/heads/Unique", "heads")]
    with pytest.raises(EdgeError) as e:
        report.raise_on_errors()
    assert "node /model/heads/Unique (Unique, module heads)" in str(e.value) and f"TensorRT {version}" in str(e.value)


@pytest.mark.parametrize("version,flagged", [("8.5", True), ("8.6", False), ("10.3", False)])
def test_layernormalization_needs_tensorrt_8_6(tmp_path, version, flagged):
    scale, bias = numpy_helper.from_array(np.ones(8, np.float32), "s"), numpy_helper.from_array(np.zeros(8, np.float32), "b")
    nodes = [helper.make_node("LayerNormalization", ["x", "s", "b"], ["y"], name="/model/track_transformer/norm/LN", axis=-1)]
    report = lint_onnx(_save(_graph(nodes, [scale, bias]), tmp_path), version)
    assert bool(report.errors) == flagged
    if flagged:
        assert report.errors[0].module == "track_transformer" and "opset 16" in report.errors[0].message


def test_opset_qdq_and_constant_inputs(tmp_path):
    rules = RULES[(8, 6)]
    nodes = [helper.make_node("QuantizeLinear", ["x", "sc", "zp"], ["q"], name="/model/backbone/q"),
             helper.make_node("DequantizeLinear", ["q", "sc", "zp"], ["d"], name="/model/backbone/dq"),
             helper.make_node("Unsqueeze", ["d", "axes"], ["y"], name="/model/heads/Unsqueeze")]
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "sc"),
             numpy_helper.from_array(np.array(3, np.int8), "zp")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
              helper.make_tensor_value_info("axes", TensorProto.INT64, [1])]
    report = lint_onnx(_save(_graph(nodes, inits, opset=rules.max_opset + 1, inputs=inputs), tmp_path), "8.6")
    messages = " | ".join(f"{f.node}: {f.message}" for f in report.errors)
    assert "opset 18 is newer" in messages
    assert "/model/backbone/q: zero point must be 0" in messages and "/model/backbone/dq: zero point must be 0" in messages
    assert "/model/heads/Unsqueeze: input `axes` must be a build-time constant" in messages


def test_exported_model_is_clean_and_dla_needs_static_reduced_precision(fp32_bundle):
    path = fp32_bundle / "model.fp32.onnx"
    for version in ("8.6", "10.3"):
        assert not lint_onnx(path, version).errors
    assert {f.op for f in lint_onnx(path, "8.5").errors} == {"LayerNormalization"}
    fp32 = lint_onnx(path, "10.3", dla=True, precision="fp32").dla
    assert fp32["eligible"] == 0 and all("FP16 or INT8" in r["reason"] for r in fp32["gpu_fallback"])
    dyn = lint_onnx(path, "10.3", dla=True, precision="fp16").dla
    assert dyn["eligible"] == 0 and "dynamic input shape" in dyn["gpu_fallback"][0]["reason"]


def test_dla_eligibility_per_layer(tmp_path):
    w_small = numpy_helper.from_array(np.zeros((8, 4, 3, 3), np.float32), "w3")
    w_big = numpy_helper.from_array(np.zeros((8, 4, 1, 64), np.float32), "w64")
    nodes = [helper.make_node("Conv", ["x", "w3"], ["a"], name="/model/backbone/conv1/Conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["b"], name="/model/backbone/Relu"),
             helper.make_node("Conv", ["x", "w64"], ["c"], name="/model/frontend/stft/Conv"),
             helper.make_node("GRU", ["b"], ["y"], name="/model/smoother/gru/GRU", hidden_size=4)]
    dla = lint_onnx(_save(_graph(nodes, [w_small, w_big]), tmp_path), "10.3", dla=True, precision="int8").dla
    assert dla["eligible"] == 2 and dla["layers"] == 4
    reasons = {r["node"]: r["reason"] for r in dla["gpu_fallback"]}
    assert "kernel [1, 64]" in reasons["/model/frontend/stft/Conv"]
    assert "GRU has no DLA implementation" == reasons["/model/smoother/gru/GRU"]
    assert dla["per_module"]["backbone"] == {"eligible": 2, "gpu_fallback": 0}


def test_versions_between_tables_use_the_older_one():
    assert rules_for("8.6.2").version == (8, 6) and rules_for("10.7").version == (10, 3)
    assert rules_for("10.15.1").version == (10, 15)
    with pytest.raises(EdgeError, match="older than the oldest"):
        rules_for("7.1")
    with pytest.raises(EdgeError, match="MAJOR.MINOR"):
        rules_for("ten")

"""The lint checked against NVIDIA's ONNX parser: one tiny graph per lint rule, each run through the
lint (TensorRT 10.15, the newest table) and through TensorRT-RTX's parser. Where the two differ,
the case says why; the lint follows onnx-tensorrt's documentation for the versions it lints, so a
newer, more permissive parser is recorded, not followed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T, helper as h, numpy_helper as nh

from at2seld_edge.deploy.engine import builder_available, parse_onnx
from at2seld_edge.deploy.lint import lint_onnx

NEWEST = "10.15"
NEEDS_RTX = pytest.mark.skipif(not builder_available("tensorrt-rtx"),
                               reason="TensorRT-RTX is not installed (pip install 'at2seld-edge[rtx]')")
X = h.make_tensor_value_info("x", T.FLOAT, [1, 4, 8, 8])
X2 = h.make_tensor_value_info("x", T.FLOAT, [2, 4])
Y = h.make_tensor_value_info("y", T.FLOAT, None)


def _model(nodes, inits=(), inputs=(X,), outputs=(Y,), opset=17, domains=()) -> onnx.ModelProto:
    g = h.make_graph(nodes, "corpus", list(inputs), list(outputs), initializer=list(inits))
    model = h.make_model(g, opset_imports=[h.make_opsetid("", opset)] + [h.make_opsetid(d, 1) for d in domains])
    model.ir_version = 8
    return model


def _node(op, inputs, outputs=("y",), **attrs):
    return h.make_node(op, list(inputs), list(outputs), name=f"/model/heads/{op}", **attrs)


def _f32(name, value):
    return nh.from_array(np.asarray(value, np.float32), name)


def _i64(name, value):
    return nh.from_array(np.asarray(value, np.int64), name)


def _input(name, dtype, shape):
    return h.make_tensor_value_info(name, dtype, shape)


def _qdq(zero_point, scale_input=False):
    scale = [] if scale_input else [_f32("sc", 0.1)]
    inputs = (X, _input("sc", T.FLOAT, [])) if scale_input else (X,)
    return _model([_node("QuantizeLinear", ["x", "sc", "zp"], ["q"]), _node("DequantizeLinear", ["q", "sc", "zp"])],
                  scale + [zero_point], inputs)


def _recurrent(op, gates, x_shape, **attrs):
    directions = 2 if attrs.get("direction") == "bidirectional" else 1
    weights = [_f32("W", np.zeros((directions, gates * 2, 4))), _f32("R", np.zeros((directions, gates * 2, 2)))]
    return _model([_node(op, ["x", "W", "R"], hidden_size=2, **attrs)], weights, [_input("x", T.FLOAT, x_shape)])


def _cast_through(dtype):
    return _model([_node("Cast", ["x"], ["c"], to=dtype), _node("Relu", ["c"], ["r"]), _node("Cast", ["r"], to=T.FLOAT)])


@dataclass(frozen=True)
class Case:
    name: str
    model: Callable[[], onnx.ModelProto]
    lint_rejects: bool  # the lint for TensorRT 10.15 reports an error
    parser_rejects: bool  # TensorRT-RTX's ONNX parser rejects the graph
    why: str = ""  # where the two differ: why the lint keeps its answer


CASES = [
    # operators
    Case("unsupported operator", lambda: _model([_node("Unique", ["x"])]), True, True),
    Case("custom domain", lambda: _model([h.make_node("Foo", ["x"], ["y"], name="/model/heads/Foo", domain="my.ops")],
                                         domains=("my.ops",)), True, True),
    Case("STFT (10.15 has it)", lambda: _model([_node("STFT", ["x", "step", "", "len"])], [_i64("step", 4), _i64("len", 16)],
                                                [_input("x", T.FLOAT, [1, 64, 1])]), False, False),
    Case("opset newer than documented", lambda: _model([_node("Relu", ["x"])], opset=26), True, False,
         "the parser imports a node whose semantics it knows whatever opset the model declares; the lint keeps "
         "TensorRT's documented opset range, since a newer opset may change an operator's meaning"),
    Case("Pad reflect", lambda: _model([_node("Pad", ["x", "p"], mode="reflect")], [_i64("p", [0, 0, 0, 1, 0, 0, 0, 1])]),
         False, False),
    Case("Pad wrap (opset 19)", lambda: _model([_node("Pad", ["x", "p"], mode="wrap")],
                                               [_i64("p", [0, 0, 0, 1, 0, 0, 0, 1])], opset=19), False, False),
    # non-constant axes and sizes
    Case("Unsqueeze axes from an input", lambda: _model([_node("Unsqueeze", ["x", "axes"])], (),
                                                        [X2, _input("axes", T.INT64, [1])]), True, True),
    Case("Reduce axes from an input", lambda: _model([_node("ReduceSum", ["x", "axes"])], (),
                                                     [X2, _input("axes", T.INT64, [1])], opset=18), True, True),
    Case("Slice axes from an input", lambda: _model([_node("Slice", ["x", "s", "e", "axes"])], [_i64("s", [0]), _i64("e", [1])],
                                                    [X2, _input("axes", T.INT64, [1])]), True, False,
         "TensorRT-RTX takes the axes as a runtime shape-tensor input and builds it; onnx-tensorrt's docs for "
         "8.5-10.x require an initializer"),
    Case("CumSum axis from an input", lambda: _model([_node("CumSum", ["x", "a"])], (), [X2, _input("a", T.INT64, [])]),
         True, False, "as Slice's axes: a shape-tensor input in TensorRT-RTX; an initializer in the documented versions"),
    Case("TopK K from an input", lambda: _model([_node("TopK", ["x", "k"], ["y", "i"])], (), [X2, _input("k", T.INT64, [1])],
                                                [Y, _input("i", T.INT64, None)]), False, False),
    # pooling
    Case("1-D pooling", lambda: _model([_node("AveragePool", ["x"], kernel_shape=[2])], (), [_input("x", T.FLOAT, [1, 4, 8])]),
         False, False),
    Case("pooling dilation", lambda: _model([_node("MaxPool", ["x"], kernel_shape=[2, 2], dilations=[2, 2])]), True, True),
    # Q/DQ forms
    Case("Q/DQ symmetric INT8", lambda: _qdq(nh.from_array(np.array(0, np.int8), "zp")), False, False),
    Case("Q/DQ non-zero zero point", lambda: _qdq(nh.from_array(np.array(3, np.int8), "zp")), True, True),
    Case("Q/DQ UINT8", lambda: _qdq(nh.from_array(np.array(0, np.uint8), "zp")), True, False,
         "TensorRT-RTX parses and builds UINT8 Q/DQ; TensorRT 10.x documents INT8, FP8 and INT4 only"),
    Case("Q/DQ scale from an input", lambda: _qdq(nh.from_array(np.array(0, np.int8), "zp"), scale_input=True), True, False,
         "TensorRT-RTX accepts a runtime scale; explicit quantization in the documented versions takes constant "
         "scales, which is also what a calibrated deployment graph has"),
    # recurrent forms
    Case("bidirectional GRU, different activations", lambda: _recurrent(
        "GRU", 3, [3, 1, 4], direction="bidirectional", activations=["Sigmoid", "Tanh", "Tanh", "Sigmoid"]), True, True),
    Case("LSTM input_forget", lambda: _recurrent("LSTM", 4, [3, 1, 4], input_forget=1), True, True),
    Case("LSTM batch-major layout", lambda: _recurrent("LSTM", 4, [1, 3, 4], layout=1), True, False,
         "TensorRT 10.x's docs require `layout` 0; TensorRT-RTX's parser transposes a batch-major LSTM itself"),
    Case("LayerNormalization mean output", lambda: _model(
        [_node("LayerNormalization", ["x", "s", "b"], ["y", "mean"], axis=-1)], [_f32("s", np.ones(8)), _f32("b", np.zeros(8))],
        outputs=[Y, _input("mean", T.FLOAT, None)]), True, True),
    Case("Resize cubic", lambda: _model([_node("Resize", ["x", "", "sc"], mode="cubic")], [_f32("sc", [1, 1, 2, 2])]),
         True, False, "TensorRT-RTX imports cubic resize; the docs of every linted version list nearest and linear only"),
    # data types
    Case("DOUBLE tensor (a warning)", lambda: _cast_through(T.DOUBLE), False, False),
    Case("UINT8 intermediate tensor", lambda: _cast_through(T.UINT8), True, True),
    Case("BFLOAT16 tensor (10.x has it)", lambda: _model([_node("Cast", ["x"], ["b"], to=T.BFLOAT16),
                                                          _node("Cast", ["b"], to=T.FLOAT)]), False, False),
    # inputs and dynamic axes
    Case("dynamic axes (info)", lambda: _model([_node("Relu", ["x"])], (), [_input("x", T.FLOAT, ["batch", 4, "t"])]),
         False, False),
    Case("input of unknown rank", lambda: _model([_node("Relu", ["x"])], (), [_input("x", T.FLOAT, None)]), True, False,
         "the parser does not refuse it but takes the input as a 0-D scalar, so the engine would silently expect one; "
         "the lint's error stands"),
    Case("shape arithmetic in INT64", lambda: _model([_node("Shape", ["x"], ["s"]), _node("Reshape", ["x", "s"])]),
         False, False),
]
IDS = [c.name for c in CASES]


def _save(case: Case, tmp_path):
    path = tmp_path / "case.onnx"
    onnx.save(case.model(), str(path))
    return path


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_lint_verdict(case, tmp_path):
    report = lint_onnx(_save(case, tmp_path), NEWEST)
    assert bool(report.errors) == case.lint_rejects, [f.message for f in report.findings]


@NEEDS_RTX
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_parser_verdict_and_every_disagreement_is_explained(case, tmp_path):
    path = _save(case, tmp_path)
    parsed = parse_onnx(path, "tensorrt-rtx")
    assert (not parsed.ok) == case.parser_rejects, [str(e) for e in parsed.errors]
    if not parsed.ok:  # the parser's errors name the ONNX node and its module
        names = {n.name for n in onnx.load(str(path)).graph.node}
        assert any(e.node in names and e.module == "heads" for e in parsed.errors), [str(e) for e in parsed.errors]
    assert (case.lint_rejects == case.parser_rejects) == (not case.why), "a disagreement needs its reason, and only one"


@pytest.mark.parametrize("version,flagged", [("8.5", True), ("8.6", False), ("10.3", False)])
def test_topk_k_from_an_input_is_an_error_only_before_8_6(version, flagged, tmp_path):
    case = next(c for c in CASES if c.name == "TopK K from an input")
    assert bool(lint_onnx(_save(case, tmp_path), version).errors) == flagged

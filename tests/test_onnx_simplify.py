"""Exported graphs are simplified for TensorRT without changing what they compute."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from at2seld_edge.model import build_model
from at2seld_edge.model.dsp import ConvSTFT
from at2seld_edge.onnx_export import broadcast_constants, export_onnx, reshape_copies_axes, simplify_graph
from tests.conftest import variant


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {"x": x, "z": np.zeros(x.shape[:2], np.float32)}
    return sess.run(None, {i.name: feeds[i.name] for i in sess.get_inputs()})[0]


def _reshape_model(shape_source: str) -> onnx.ModelProto:
    """x (N, L, 12) -> (N, L, 3, 4), its leading axes read from `shape_source`'s shape."""
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "l", 12]),
              helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", "l"])]
    nodes = [helper.make_node("Shape", [shape_source], ["s"], name="/model/heads/Shape"),
             helper.make_node("Slice", ["s", "zero", "two"], ["lead"], name="/model/heads/Slice"),
             helper.make_node("Concat", ["lead", "tail"], ["shape"], name="/model/heads/Concat", axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["y"], name="/model/heads/Reshape")]
    inits = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
             (("zero", [0]), ("two", [2]), ("tail", [3, 4]))]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_reshape_that_keeps_its_own_leading_axes_copies_them():
    model = _reshape_model("x")
    x = np.random.default_rng(0).standard_normal((2, 5, 12)).astype(np.float32)
    before = _run(model, x)
    assert reshape_copies_axes(model) == 1
    reshape = next(n for n in model.graph.node if n.op_type == "Reshape")
    shape = next(i for i in model.graph.initializer if i.name == reshape.input[1])
    assert numpy_helper.to_array(shape).tolist() == [0, 0, 3, 4]
    np.testing.assert_array_equal(_run(model, x), before)


def test_reshape_with_the_shape_of_another_tensor_is_left_alone():
    model = _reshape_model("z")  # same dims here, but nothing says so in general
    assert reshape_copies_axes(model) == 0


def test_element_wise_constants_get_the_other_operands_rank():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2, 3])
    nodes = [helper.make_node("Add", ["x", "b"], ["y"], name="/model/heads/Add")]
    b = numpy_helper.from_array(np.array([1.0, 2.0, 3.0], np.float32), "b")
    model = onnx.shape_inference.infer_shapes(helper.make_model(helper.make_graph(nodes, "g", [x], [y], [b]),
                                                                opset_imports=[helper.make_opsetid("", 17)]))
    data = np.ones((4, 2, 3), np.float32)
    before = _run(model, data)
    assert broadcast_constants(model) == 1
    assert [list(i.dims) for i in model.graph.initializer] == [[1, 1, 3]]
    np.testing.assert_array_equal(_run(model, data), before)


def test_traced_stft_pads_instead_of_slicing_and_computes_the_same_frames():
    stft = ConvSTFT(512, 240).eval()
    audio = torch.randn(2, 4, 4800, generator=torch.Generator().manual_seed(0))

    def frames(a):
        return stft.spectra(a, drop_last=True)

    eager = frames(audio)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace's deprecation note: the ONNX exporter traces like this
        traced = torch.jit.trace(frames, audio)
    assert "aten::slice" not in str(traced.graph)  # dropped by padding, not by slicing the time axis
    for a, b in zip(eager, traced(audio)):
        assert a.shape == (2, 4, 257, 20)
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-5)


def test_exported_nano_graph_has_no_dynamic_shape_arithmetic(tmp_path):
    result = export_onnx(build_model(variant()).eval(), tmp_path / "m.onnx", dynamic_time=True)
    assert max(result.max_abs_diff.values()) <= 1e-5  # ONNX Runtime vs PyTorch, at two lengths
    ops = [n.op_type for n in onnx.load(str(tmp_path / "m.onnx")).graph.node]
    assert "Slice" not in ops and ops.count("Shape") <= 1  # the GRU's zero state only
    assert len(ops) < 200  # 477 before simplification


@pytest.mark.parametrize("name", ["x", "z"])
def test_simplify_keeps_outputs_and_metadata(name):
    model = _reshape_model(name)
    model.metadata_props.add(key="k", value="v")
    slim = simplify_graph(model)
    assert [(p.key, p.value) for p in slim.metadata_props] == [("k", "v")]
    x = np.random.default_rng(1).standard_normal((2, 5, 12)).astype(np.float32)
    np.testing.assert_array_equal(_run(slim, x), x.reshape(2, 5, 3, 4))

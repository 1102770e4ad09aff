"""The latency model: layers an executor runs for hand-built ONNX graphs (fusion, Q/DQ folding,
free reshapes, shape arithmetic), their MACs, and the estimate's per-layer max(roofline, floor)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from at2seld_edge.deploy.devices import EstimateSpec, load_device
from at2seld_edge.deploy.latency_model import (
    engine_layers, estimate_layers, estimate_onnx, graph_layers, layer_ms, load_graph,
)
from at2seld_edge.errors import EdgeError
from tests.deploy.test_profiler import trace


def _init(name: str, shape, dtype=np.float32, value=0.1) -> onnx.TensorProto:
    return numpy_helper.from_array(np.full(shape, value, dtype=dtype), name)


def _model(nodes, inits, x_shape=(1, 4, 16, 16), outputs=("y",)) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def conv_bn_relu_conv() -> onnx.ModelProto:
    """/m/backbone: Conv -> BatchNormalization -> Relu -> Conv."""
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="/m/backbone/conv1/Conv", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "s", "b", "mu", "var"], ["n1"], name="/m/backbone/bn/BN"),
             helper.make_node("Relu", ["n1"], ["r1"], name="/m/backbone/Relu"),
             helper.make_node("Conv", ["r1", "w2"], ["y"], name="/m/backbone/conv2/Conv")]
    inits = [_init("w1", (8, 4, 3, 3)), _init("w2", (8, 8, 1, 1)), _init("s", (8,), value=1.0),
             _init("b", (8,), value=0.0), _init("mu", (8,), value=0.0), _init("var", (8,), value=1.0)]
    return _model(nodes, inits)


def gemm_gelu_chain() -> onnx.ModelProto:
    """/m/heads: MatMul + bias, then the erf GELU (Div, Erf, Add, Mul, Mul)."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"], name="/m/heads/MatMul"),
             helper.make_node("Add", ["mm", "bias"], ["a"], name="/m/heads/Add"),
             helper.make_node("Div", ["a", "sqrt2"], ["d"], name="/m/heads/gelu/Div"),
             helper.make_node("Erf", ["d"], ["e"], name="/m/heads/gelu/Erf"),
             helper.make_node("Add", ["e", "one"], ["e1"], name="/m/heads/gelu/Add"),
             helper.make_node("Mul", ["a", "e1"], ["m"], name="/m/heads/gelu/Mul"),
             helper.make_node("Mul", ["m", "half"], ["y"], name="/m/heads/gelu/Mul_1")]
    inits = [_init("w", (16, 32)), _init("bias", (32,)), _init("sqrt2", (), value=1.414), _init("one", (), value=1.0),
             _init("half", (), value=0.5)]
    return _model(nodes, inits, x_shape=(1, 10, 16))


def qdq_conv() -> onnx.ModelProto:
    """An explicit-quantization Conv: Q/DQ on the activation, DQ on INT8 weights, then Relu."""
    nodes = [helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"], name="/m/backbone/q"),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"], name="/m/backbone/dq"),
             helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["wd"], name="/m/backbone/wdq"),
             helper.make_node("Conv", ["xd", "wd"], ["c"], name="/m/backbone/Conv"),
             helper.make_node("Relu", ["c"], ["y"], name="/m/backbone/Relu")]
    inits = [_init("sx", (), value=0.05), numpy_helper.from_array(np.int8(0), "zx"), _init("sw", (), value=0.01),
             numpy_helper.from_array(np.zeros((), np.int8), "zw"), _init("wq", (8, 4, 3, 3), np.int8, 3)]
    return _model(nodes, inits)


def shuffles_and_shape_arithmetic() -> onnx.ModelProto:
    """Transpose -> Reshape (its shape computed from Shape/Gather/Concat) -> Transpose, then Softmax."""
    nodes = [helper.make_node("Transpose", ["x"], ["t1"], name="/m/track_transformer/Transpose", perm=[0, 2, 1]),
             helper.make_node("Shape", ["t1"], ["sh"], name="/m/track_transformer/Shape"),
             helper.make_node("Gather", ["sh", "i0"], ["g0"], name="/m/track_transformer/Gather", axis=0),
             helper.make_node("Unsqueeze", ["g0", "ax0"], ["u0"], name="/m/track_transformer/Unsqueeze"),
             helper.make_node("Concat", ["u0", "rest"], ["shape"], name="/m/track_transformer/Concat", axis=0),
             helper.make_node("Reshape", ["t1", "shape"], ["r"], name="/m/track_transformer/Reshape"),
             helper.make_node("Transpose", ["r"], ["t2"], name="/m/track_transformer/Transpose_1", perm=[0, 2, 1]),
             helper.make_node("Softmax", ["t2"], ["y"], name="/m/track_transformer/Softmax", axis=-1)]
    inits = [numpy_helper.from_array(np.int64(0), "i0"), numpy_helper.from_array(np.array([0], np.int64), "ax0"),
             numpy_helper.from_array(np.array([16, 10], np.int64), "rest")]
    return _model(nodes, inits, x_shape=(1, 10, 16))


def branch_then_add() -> onnx.ModelProto:
    """A Conv whose output two pointwise ops read, joined by an Add: TensorRT's pointwise region
    takes all three into the Conv; ONNX Runtime fuses an activation only into a Conv it alone
    reads, so Relu, Sigmoid and Add run as nodes."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="/m/spatial_encoder/Conv"),
             helper.make_node("Relu", ["c"], ["r"], name="/m/spatial_encoder/Relu"),
             helper.make_node("Sigmoid", ["c"], ["s"], name="/m/spatial_encoder/Sigmoid"),
             helper.make_node("Add", ["r", "s"], ["y"], name="/m/spatial_encoder/Add")]
    return _model(nodes, [_init("w", (8, 4, 3, 3))])


def gru() -> onnx.ModelProto:
    """/m/smoother: a GRU over 12 frames (seq, batch, input) = (12, 1, 16), hidden 8."""
    nodes = [helper.make_node("GRU", ["x", "W", "R", "B"], ["y"], name="/m/smoother/gru/GRU", hidden_size=8)]
    inits = [_init("W", (1, 24, 16)), _init("R", (1, 24, 8)), _init("B", (1, 48))]
    return _model(nodes, inits, x_shape=(12, 1, 16))


CASES = {  # graph -> (TensorRT layers, ONNX Runtime layers)
    "conv_bn_relu_conv": (conv_bn_relu_conv, 2, 2),
    "gemm_gelu_chain": (gemm_gelu_chain, 1, 6),
    "qdq_conv": (qdq_conv, 1, 2),
    "shuffles_and_shape_arithmetic": (shuffles_and_shape_arithmetic, 2, 4),
    "branch_then_add": (branch_then_add, 1, 4),
    "gru": (gru, 1, 1),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("executor", ["tensorrt", "onnxruntime"])
def test_layer_count_of_hand_built_graphs(case, executor):
    make, trt_layers, ort_layers = CASES[case]
    layers = graph_layers(load_graph(make()), executor, "fp16")
    assert len(layers) == (trt_layers if executor == "tensorrt" else ort_layers), [x.name for x in layers]


def test_conv_bn_activation_is_one_tensorrt_layer_with_the_conv_macs():
    first, second = graph_layers(load_graph(conv_bn_relu_conv()), "tensorrt", "fp16")
    assert first.name == "/m/backbone/conv1/Conv + /m/backbone/bn/BN + /m/backbone/Relu"
    assert first.module == "backbone" and first.kind == "Conv"
    assert first.macs == 8 * 16 * 16 * 4 * 3 * 3  # out elements x (in channels x kernel)
    assert second.macs == 8 * 16 * 16 * 8
    # FP16: reads x (4x16x16) and its weights, writes 8x16x16, at 2 bytes each; BN's vectors too
    assert first.bytes == 2 * (4 * 16 * 16 + 8 * 4 * 9 + 4 * 8 + 8 * 16 * 16)


def test_pointwise_chain_fuses_into_its_producer_for_tensorrt_only():
    (trt,) = graph_layers(load_graph(gemm_gelu_chain()), "tensorrt", "fp16")
    assert trt.kind == "MatMul" and len(trt.name.split(" + ")) == 7
    assert trt.macs == 10 * 32 * 16
    ort = graph_layers(load_graph(gemm_gelu_chain()), "onnxruntime", "fp32")
    assert [x.kind for x in ort] == ["MatMul"] + ["PointWise"] * 5
    assert ort[0].name == "/m/heads/MatMul + /m/heads/Add"  # the bias joins its MatMul, the rest run one by one


def test_qdq_folds_into_the_layer_it_feeds_which_runs_int8():
    (layer,) = graph_layers(load_graph(qdq_conv()), "tensorrt", "int8")
    assert layer.precision == "int8" and layer.name == "/m/backbone/Conv + /m/backbone/Relu"
    # ONNX Runtime: the DequantizeLinears fuse into the QLinear conv they feed, the float input's
    # QuantizeLinear runs as a node of its own
    quantize, conv = graph_layers(load_graph(qdq_conv()), "onnxruntime", "int8")
    assert quantize.kind == "QuantizeLinear" and conv.name == layer.name and conv.precision == "int8"
    (fp16,) = graph_layers(load_graph(conv_bn_relu_conv()), "tensorrt", "int8")[:1]
    assert fp16.precision == "int8"  # no Q/DQ in the graph: implicit INT8 outside the front-end


def test_shape_arithmetic_is_free_and_reshapes_cost_nothing_in_tensorrt():
    trt = graph_layers(load_graph(shuffles_and_shape_arithmetic()), "tensorrt", "fp16")
    assert [x.kind for x in trt] == ["Transpose", "Softmax"]  # Transpose + Reshape + Transpose: one shuffle
    assert "/m/track_transformer/Transpose_1" in trt[0].name
    ort = graph_layers(load_graph(shuffles_and_shape_arithmetic()), "onnxruntime", "fp32")
    assert [x.kind for x in ort] == ["Transpose", "Reshape", "Transpose", "Softmax"]


def test_recurrent_layer_runs_one_step_per_frame_in_tensorrt():
    (trt,) = graph_layers(load_graph(gru()), "tensorrt", "fp16")
    (ort,) = graph_layers(load_graph(gru()), "onnxruntime", "fp32")
    assert trt.steps == 12 and ort.steps == 1
    assert trt.macs == 12 * 24 * (16 + 8)  # T x gates*H x (I + H)


def test_estimate_is_per_layer_max_of_roofline_and_floor_plus_fixed_cost():
    device = load_device("jetson-orin-nano-8gb")
    c = device.estimate_constants()
    layers = graph_layers(load_graph(conv_bn_relu_conv()), "tensorrt", "fp16")
    est = estimate_layers(layers, device, "fp16", "tensorrt")
    assert all(t.bound == "floor" and t.ms == pytest.approx(c.per_layer_us * 1e-3) for t in est.layers)
    assert est.total_ms == pytest.approx(2 * c.per_layer_us * 1e-3 + c.per_inference_us * 1e-3)
    assert est.roofline_ms < est.total_ms / 100  # the bound says almost nothing at this size
    assert est.module("backbone").layers == 2 and "shipped devices/jetson-orin-nano-8gb.yaml" in est.describe()


@pytest.mark.parametrize("compute,memory,steps,bound", [(1.0, 0.1, 1, "compute"), (0.01, 1.0, 1, "memory"),
                                                       (1e-4, 1e-4, 3, "floor")])
def test_layer_time_takes_the_slowest_term(compute, memory, steps, bound):
    c = EstimateSpec(per_layer_us=10, per_inference_us=0, compute_efficiency=0.5, memory_efficiency=0.25, source="t")
    ms, which = layer_ms(compute, memory, steps, c)
    assert which == bound
    assert ms == pytest.approx({"compute": compute / 0.5, "memory": memory / 0.25, "floor": steps * 0.01}[bound])


def test_power_mode_with_a_lower_clock_stretches_the_floor():
    device = load_device("jetson-orin-nano-8gb")  # 625 MHz at the maximum, 1020 MHz in MAXN_SUPER
    layers = graph_layers(load_graph(conv_bn_relu_conv()), "tensorrt", "fp16")
    base = estimate_layers(layers, device, "fp16", "tensorrt")
    fast = estimate_layers(layers, device, "fp16", "tensorrt", "MAXN_SUPER")
    assert fast.layers[0].ms == pytest.approx(base.layers[0].ms * 625 / 1020)


def test_engine_layer_names_give_the_fused_nodes_and_reformats_cost_a_floor():
    graph = load_graph(conv_bn_relu_conv())
    info = {"Layers": [
        {"Name": "/m/backbone/conv1/Conv + /m/backbone/bn/BN + /m/backbone/Relu", "LayerType": "CaskConvolution",
         "Outputs": [{"Format/Datatype": "Half format"}]},
        {"Name": "Reformatting CopyNode for Input Tensor 0 to /m/backbone/conv2/Conv", "LayerType": "Reformat"},
        {"Name": "{ForeignNode[/m/backbone/conv2/Conv.../m/backbone/conv2/Conv]}", "LayerType": "Myelin"},
    ]}
    first, reformat, foreign = engine_layers(info, graph, "fp16")
    assert first.macs == 8 * 16 * 16 * 4 * 9 and first.precision == "fp16" and first.module == "backbone"
    assert reformat.macs == 0 and reformat.bytes == 0 and reformat.kind == "Reformat"
    assert foreign.macs == 8 * 16 * 16 * 8
    assert first.name == info["Layers"][0]["Name"]  # as the layer profiler reports it


class _PadByShape(torch.nn.Module):
    """Padding computed from the input's shape: a raw trace's Pad takes its pads from Shape arithmetic."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(4, 8, kernel_size=5, stride=4)

    def forward(self, x):
        return self.conv(torch.nn.functional.pad(x, (0, x.shape[-1] // 8)))


def test_raw_trace_shape_arithmetic_is_folded_before_counting(tmp_path):
    path = trace(_PadByShape(), tmp_path / "pad.onnx", 800)
    (conv,) = [x for x in graph_layers(load_graph(path, samples=800), "tensorrt", "fp16") if x.kind == "Conv"]
    frames = (800 + 100 - 5) // 4 + 1
    assert conv.macs == 8 * frames * 4 * 5


def test_estimate_of_a_missing_file_is_one_line():
    with pytest.raises(EdgeError, match="nowhere.onnx: ONNX file not found"):
        estimate_onnx("nowhere.onnx", load_device("x86-cpu"), "fp32")


def test_cpu_target_estimates_onnx_runtime_nodes_at_the_graphs_own_precision():
    est = estimate_onnx(conv_bn_relu_conv(), load_device("x86-cpu"), "fp16")
    assert est.executor == "onnxruntime" and {t.precision for t in est.layers} == {"fp32"}


def test_a_bundles_built_engine_gives_the_layers(tmp_path):
    """Where the bundle's manifest names the engine's layer information for this graph, the
    estimate counts the engine's layers instead of deriving them."""
    onnx.save(conv_bn_relu_conv(), str(tmp_path / "model.onnx"))
    device = load_device("jetson-orin-nano-8gb")
    derived = estimate_onnx(tmp_path / "model.onnx", device, "fp16")
    (tmp_path / "layers.json").write_text(json.dumps({"Layers": [
        "/m/backbone/conv1/Conv + /m/backbone/bn/BN", "/m/backbone/Relu", "/m/backbone/conv2/Conv"]}))
    (tmp_path / "manifest.json").write_text(json.dumps({"model": "model.onnx", "engine": {"layer_info": "layers.json"}}))
    built = estimate_onnx(tmp_path / "model.onnx", device, "fp16")
    assert (len(derived.layers), len(built.layers)) == (2, 3) and built.executor.startswith("tensorrt engine")
    assert sum(t.macs for t in built.layers) == sum(t.macs for t in derived.layers)

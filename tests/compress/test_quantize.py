"""INT8: the Q/DQ model runs in ONNX Runtime close to FP32, the TensorRT cache lists every
quantized activation, the mixed-precision fallback keeps sensitive modules in FP32."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from at2seld_edge.compress.fuse import fold_batchnorm
from at2seld_edge.compress.quantize import (
    DSP_SCOPES, Ranges, calibrate, calibration_segments, mixed_precision, quantizable_nodes, quantize_qdq,
    read_tensorrt_cache, seld_judgement, write_tensorrt_cache,
)
from at2seld_edge.errors import EdgeError
from at2seld_edge.model import build_model
from at2seld_edge.onnx_export import OnnxRuntimeModel, export_onnx, module_of_node
from tests.conftest import variant


def foa_like(n: int, samples: int, seed: int) -> list[np.ndarray]:
    """A plane wave of filtered noise from a random direction, plus a little diffuse noise."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s = np.convolve(rng.standard_normal(samples), np.ones(8) / 8, mode="same")
        az, el = rng.uniform(-np.pi, np.pi), rng.uniform(-0.5, 0.5)
        gains = np.array([1.0, np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])
        out.append((0.2 * gains[:, None] * s + 0.01 * rng.standard_normal((4, samples))).astype(np.float32))
    return out


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(variant()).eval()
    fused, _ = fold_batchnorm(model)
    path = tmp_path_factory.mktemp("q") / "model.fp32.onnx"
    export_onnx(fused, path, seconds=1.0, dynamic_time=True)
    return model, path


@pytest.fixture(scope="module")
def ranges(fp32):
    return calibrate(fp32[1], calibration_segments(foa_like(6, 24000, 0), 24000), "minmax")


def test_qdq_model_runs_and_stays_close_to_fp32(fp32, ranges, tmp_path):
    model, path = fp32
    groups = quantizable_nodes(path)
    nodes = [n for m, ns in groups.items() if m != "frontend" for n in ns]
    q = quantize_qdq(path, tmp_path / "int8.onnx", ranges, nodes)
    audio = torch.from_numpy(foa_like(1, 48000, seed=7)[0][None])
    ref, got = OnnxRuntimeModel(path, model.config)(audio), OnnxRuntimeModel(q, model.config)(audio)
    for k in ("sed_logits", "doa"):
        err = (got[k] - ref[k]).abs().max().item()
        assert err < 0.1 * ref[k].abs().max().item() + 1e-3, (k, err)
    corr = np.corrcoef(ref["sed_logits"].flatten(), got["sed_logits"].flatten())[0, 1]
    assert corr > 0.99


def test_qdq_is_symmetric_per_channel_and_spares_the_dsp(fp32, ranges, tmp_path):
    _, path = fp32
    nodes = [n for ns in quantizable_nodes(path).values() for n in ns]
    assert not any(s in n for n in nodes for s in DSP_SCOPES)
    q = onnx.load(str(quantize_qdq(path, tmp_path / "int8.onnx", ranges, nodes)))
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    dq = [n for n in q.graph.node if n.op_type == "DequantizeLinear"]
    qn = [n for n in q.graph.node if n.op_type == "QuantizeLinear"]
    assert dq and qn
    for n in dq + qn:  # symmetric: zero points are 0, INT8
        zp = inits.get(n.input[2]) if len(n.input) > 2 else None
        assert zp is not None and zp.dtype == np.int8 and not zp.any()
    conv_weights = [n for n in dq if n.input[0] in inits and inits[n.input[0]].ndim >= 3]
    assert conv_weights and all(inits[n.input[1]].size > 1 for n in conv_weights)  # per-channel scales
    for node in q.graph.node:
        if node.op_type == "Conv" and "/frontend/" in node.name:
            assert all(not i.endswith("_DequantizeLinear_Output") for i in node.input)


def test_calibration_cache_lists_every_quantized_activation(fp32, ranges, tmp_path):
    _, path = fp32
    nodes = [n for m, ns in quantizable_nodes(path).items() if m != "frontend" for n in ns]
    q = onnx.load(str(quantize_qdq(path, tmp_path / "int8.onnx", ranges, nodes)))
    inits = {i.name for i in q.graph.initializer}
    activations = {n.input[0] for n in q.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits}
    cache = write_tensorrt_cache(ranges, tmp_path / "calibration.cache")
    header, scales = read_tensorrt_cache(cache)
    assert header == "TRT-8601-MinMaxCalibration"
    assert activations and activations <= set(scales)
    amax = ranges.amax()
    for name in activations:
        assert scales[name] == pytest.approx(amax[name] / 127, rel=1e-6)


def test_too_few_calibration_clips_is_an_error():
    with pytest.raises(EdgeError, match="too few"):
        calibration_segments(foa_like(2, 2400, 0), 2400)


def test_calibration_methods_give_different_ranges(fp32, ranges):
    """Each method is its own estimator: entropy and percentile clip outliers that minmax keeps
    (ONNX Runtime's default entropy bins once made entropy equal minmax on every tensor)."""
    segs = calibration_segments(foa_like(6, 24000, 0), 24000)
    amax = {"minmax": ranges.amax()}
    for method in ("entropy", "percentile"):
        r = calibrate(fp32[1], segs, method)
        assert isinstance(r, Ranges) and r.amax() and all(np.isfinite(v) for v in r.amax().values())
        amax[method] = r.amax()
    names = sorted(amax["minmax"])
    for method in ("entropy", "percentile"):
        differ = [n for n in names if not np.isclose(amax[method][n], amax["minmax"][n], rtol=1e-4)]
        assert len(differ) >= len(names) // 10, (method, len(differ), len(names))  # before the fix: 0 for entropy
        assert all(amax[method][n] <= amax["minmax"][n] * (1 + 1e-4) for n in names)  # never wider than the data


def reads_int8(path, module: str) -> bool:
    """Whether any node of `module` reads a dequantized (INT8) tensor in this graph."""
    g = onnx.load(str(path)).graph
    dequantized = {o for n in g.node if n.op_type == "DequantizeLinear" for o in n.output}
    return any(module_of_node(n.name) == module and dequantized & set(n.input) for n in g.node)


def test_mixed_precision_keeps_a_sensitive_module_in_fp32(fp32, ranges, tmp_path):
    _, path = fp32

    def fake_seld(p):
        return 0.30 + (0.05 if reads_int8(p, "heads") else 0.0)  # pretend the heads cannot take INT8

    result = mixed_precision(path, tmp_path / "mixed.onnx", ranges, seld_judgement(fake_seld, 0.01))
    rows = {r.module: r for r in result.rows}
    assert rows["heads"].delta == pytest.approx(0.05) and not rows["heads"].quantized
    assert rows["backbone"].quantized and rows["backbone"].delta == pytest.approx(0.0)
    assert "heads" in result.float_modules and "frontend" in result.float_modules
    assert result.seld == pytest.approx(0.30)


def test_a_module_failing_the_output_agreement_stays_float_even_at_no_seld_cost(fp32, ranges, tmp_path):
    """Compression judges INT8 by the golden check's definition too, so what it accepts a build accepts."""
    _, path = fp32

    def judge(p):
        return ["input 0: mean_doa_error_deg 7 (must be <= 5)"] if reads_int8(p, "track_transformer") else []

    result = mixed_precision(path, tmp_path / "mixed.onnx", ranges, seld_judgement(lambda p: 0.30, 0.01, judge))
    rows = {r.module: r for r in result.rows}
    assert rows["track_transformer"].delta == pytest.approx(0.0) and not rows["track_transformer"].quantized
    assert rows["track_transformer"].agreement.startswith("input 0: mean_doa_error_deg")
    assert "track_transformer" in result.float_modules and rows["backbone"].quantized


def _failing(module):
    """A judgement under which `module` cannot take INT8 (and nothing else is wrong)."""
    from at2seld_edge.compress.quantize import Int8Judgement

    def evaluate(p):
        bad = reads_int8(p, module)
        return (3.0 if bad else 0.5), (["input 0: mean_doa_error_deg 22 (must be <= 5)"] if bad else [])

    return Int8Judgement(evaluate, math.inf, "share of the INT8 limits")


def test_quantize_judged_keeps_float_the_module_that_fails(fp32, ranges, tmp_path):
    from at2seld_edge.compress.quantize import quantize_judged

    _, path = fp32
    result = quantize_judged(path, tmp_path / "q.onnx", ranges, _failing("track_transformer"), {"frontend"})
    assert result.float_modules == ["frontend", "track_transformer", "smoother"]  # the GRU has no Conv/MatMul
    assert not reads_int8(tmp_path / "q.onnx", "track_transformer") and reads_int8(tmp_path / "q.onnx", "backbone")
    rows = {r.module: r for r in result.rows}
    assert not rows["track_transformer"].quantized and rows["track_transformer"].agreement.startswith("input 0")


def test_quantize_judged_takes_the_whole_graph_when_it_passes(fp32, ranges, tmp_path):
    from at2seld_edge.compress.quantize import quantize_judged

    _, path = fp32
    result = quantize_judged(path, tmp_path / "q.onnx", ranges, _failing("no such module"), {"frontend"})
    assert result.rows == [] and result.float_modules == ["frontend", "smoother"]  # judged once, no sensitivity runs
    assert reads_int8(tmp_path / "q.onnx", "track_transformer")


def test_agreement_judge_compares_with_the_fp32_model(fp32, ranges, tmp_path):
    from at2seld_edge.compress.quantize import agreement_judge
    from at2seld_edge.evaluation.agreement import tolerances

    model, path = fp32
    audio = foa_like(2, 24000, 3)
    strict = agreement_judge(model, audio, np.full(model.config.num_classes, 0.5), tolerances("fp32"))
    assert strict(path) == []  # the FP32 graph is the model, number for number
    qdq = quantize_qdq(path, tmp_path / "all.onnx", ranges, [n for ns in quantizable_nodes(path).values() for n in ns])
    failures = strict(qdq)
    assert failures and all("abs_logit" in f or "abs_doa" in f for f in failures), failures  # INT8 is not, by FP32's standard

"""Today's TensorRT code paths (at2seld_edge.deploy.engine, unchanged) through each release's
stand-in: parse, build per precision, implicit INT8 from a calibration cache, DLA with GPU
fallback, the timing cache, the optimization profile, the engine inspector's layer JSON, the
runner (deserialize, set_input_shape, set_tensor_address, execute_async_v3, outputs) with its
layer profiler, and the version/GPU check.

Where today's code does not run on a release, the case is a strict xfail naming the gap (issue 24
phase 2 fixes them); the gap's own test asserts the exact message, file:line and release."""

from __future__ import annotations

import json
import re

import numpy as np
import onnxruntime as ort
import pytest

from at2seld_edge.deploy.bundle import Engine
from at2seld_edge.deploy.engine import (EngineRequest, TensorRTRunner, audio_profile, build_engine, build_network,
                                        check_engine_compatible, parse_onnx)
from at2seld_edge.errors import EdgeError
from tests.tensorrt_conformance.behaviour import PLAN_MAGIC
from tests.tensorrt_conformance.matrix import VERSIONS

TRT11 = "11.4.0.106"
# (release, path) -> why today's code fails there: the known gaps phase 2 closes.
KNOWN_GAPS = {
    (TRT11, "fp16"): "deploy/engine.py _configure_tensorrt sets BuilderFlag.FP16, which TensorRT 11 removed",
    (TRT11, "int8"): "deploy/engine.py _configure_tensorrt sets BuilderFlag.INT8, which TensorRT 11 removed",
    (TRT11, "best"): "deploy/engine.py _configure_tensorrt sets BuilderFlag.FP16, which TensorRT 11 removed",
    (TRT11, "implicit-int8"): "deploy/engine.py sets BuilderFlag.INT8 before its version check; TensorRT 11 has "
                              "no calibrators: it should refuse --implicit-int8 in one line",
}
# The builder's flags after each precision's configuration: TF32 is on by default, cleared for fp32.
FLAGS = {"fp32": set(), "fp16": {"TF32", "FP16"}, "int8": {"TF32", "INT8"}, "best": {"TF32", "FP16", "INT8"}}


def matrix(paths):
    """(version, path) parameters, the known gaps as strict xfails."""
    return [pytest.param(v, p, marks=pytest.mark.xfail(strict=True, raises=AttributeError, reason=KNOWN_GAPS[v, p]))
            if (v, p) in KNOWN_GAPS else pytest.param(v, p) for v in VERSIONS for p in paths]


def plan_of(data: bytes) -> dict:
    assert data.startswith(PLAN_MAGIC)
    return json.loads(data[len(PLAN_MAGIC):])


def test_parse_counts_layers_per_module_and_type(trt, version, tiny_onnx):
    parsed = parse_onnx(tiny_onnx, "tensorrt")
    assert parsed.ok and parsed.version == version
    assert parsed.layers == 3 and parsed.by_module == {"frontend": 2, "heads": 1}
    assert parsed.by_type == {"CONSTANT": 1, "ELEMENTWISE": 1, "ACTIVATION": 1}
    assert [(i.name, i.shape, i.dtype, i.shape_tensor) for i in parsed.inputs] == [("audio", (1, 4, -1), "FLOAT", False)]


def test_a_file_that_is_not_onnx_is_one_clear_error(trt, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a graph")
    with pytest.raises(EdgeError, match="not a readable ONNX file"):
        parse_onnx(bad, "tensorrt")


@pytest.mark.parametrize("version, precision", matrix(["fp32", "fp16", "int8", "best"]), indirect=["version"])
def test_build_per_precision(trt, version, precision, tiny_onnx):
    built = build_network(parse_onnx(tiny_onnx, "tensorrt"), EngineRequest(precision, audio_profile(2400, 48000)))
    plan = plan_of(built.data)
    assert plan["version"] == version and set(plan["flags"]) == FLAGS[precision]
    assert plan["profiles"] == [{"audio": [[1, 4, 2400], [1, 4, 2400], [1, 4, 48000]]}]
    assert plan["verbosity"] == "DETAILED" and plan["pools"] == {"WORKSPACE": 1 << 30}


def test_a_dynamic_input_without_a_profile_fails_the_build(trt, tiny_onnx):
    with pytest.raises(EdgeError, match="no optimization-profile range for the dynamic input"):
        build_network(parse_onnx(tiny_onnx, "tensorrt"), EngineRequest("fp32"))


@pytest.mark.parametrize("version, path", matrix(["implicit-int8"]), indirect=["version"])
def test_implicit_int8_from_a_calibration_cache(trt, version, path, tiny_onnx, tmp_path):
    cache = tmp_path / "calibration.cache"
    cache.write_bytes(b"TRT-8601-EntropyCalibration2\naudio: 3c010a14\n")
    request = EngineRequest("int8", audio_profile(2400), calibration_cache=cache)
    parsed = parse_onnx(tiny_onnx, "tensorrt")
    if version.startswith("8."):
        assert set(plan_of(build_network(parsed, request).data)["flags"]) == {"TF32", "INT8"}
    else:
        with pytest.raises(EdgeError, match=rf"TensorRT 8.x path; TensorRT {re.escape(version)} builds the explicit Q/DQ"):
            build_network(parsed, request)


def test_dla_with_gpu_fallback_and_the_timing_cache(trt, version, tiny_onnx, tmp_path):
    timing = tmp_path / "timing.cache"
    request = EngineRequest("fp32", audio_profile(2400), dla_core=1, timing_cache=timing)
    plan = plan_of(build_network(parse_onnx(tiny_onnx, "tensorrt"), request).data)
    assert (plan["device"], plan["dla_core"]) == ("DLA", 1) and "GPU_FALLBACK" in plan["flags"]
    first = timing.read_bytes()
    assert b"/model/heads/Relu" in first
    build_network(parse_onnx(tiny_onnx, "tensorrt"), request)  # read back and updated
    assert timing.read_bytes() == first


def _engine(tiny_onnx, tmp_path):
    engine, layers = tmp_path / "tiny.engine", tmp_path / "layers.json"
    build_engine(tiny_onnx, engine, "fp32", samples=2400, max_samples=48000, layer_info=layers)
    return engine, layers


def test_build_engine_writes_the_engine_and_the_inspector_layer_json(trt, tiny_onnx, tmp_path):
    engine, layers = _engine(tiny_onnx, tmp_path)
    assert plan_of(engine.read_bytes())["inputs"][0]["name"] == "audio"
    info = json.loads(layers.read_text())
    assert [x["Name"] for x in info["Layers"]] == ["model.frontend.scale", "/model/frontend/Mul", "/model/heads/Relu"]


def test_runner_runs_the_engine_on_host_memory_with_the_layer_profiler(trt, tiny_onnx, tmp_path):
    engine, _ = _engine(tiny_onnx, tmp_path)
    runner = TensorRTRunner(engine, layer_profiling=True)
    assert (runner.inputs, runner.outputs, runner.version) == (["audio"], ["out"], trt.__version__)
    x = np.random.default_rng(0).standard_normal((1, 4, 4800)).astype(np.float32)
    out = runner.run(x)
    want = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"]).run(None, {"audio": x})[0]
    np.testing.assert_array_equal(out["out"], want)
    assert [name for name, _ in runner.layer_times] == ["model.frontend.scale", "/model/frontend/Mul", "/model/heads/Relu"]
    assert len(runner.layer_info()["Layers"]) == 3


def test_runner_refuses_a_plan_this_release_cannot_load(trt, tmp_path):
    other = tmp_path / "other.engine"
    other.write_bytes(b"\x00not a plan")
    with pytest.raises(EdgeError, match="not an engine this tensorrt .* can load"):
        TensorRTRunner(other)


def test_engine_version_and_gpu_checks(trt, version, tmp_path):
    built = dict(file="model.engine", tensorrt_version=version, gpu_name="Orin", compute_capability="8.7")
    check_engine_compatible(Engine(**built), tmp_path)
    with pytest.raises(EdgeError, match=rf"built with TensorRT 8.5.2, this is TensorRT {re.escape(version)}"):
        check_engine_compatible(Engine(**{**built, "tensorrt_version": "8.5.2"}), tmp_path)
    with pytest.raises(EdgeError, match=r"built for Thor \(compute 11.0\), this GPU is Orin \(compute 8.7\)"):
        check_engine_compatible(Engine(**{**built, "gpu_name": "Thor", "compute_capability": "11.0"}), tmp_path)


@pytest.mark.parametrize("version", [TRT11])
def test_known_gap_tensorrt_11_fp16_names_the_line_and_release(trt, version, tiny_onnx):
    """Today's FP16 build on TensorRT 11: the precise failure phase 2 removes."""
    parsed = parse_onnx(tiny_onnx, "tensorrt")
    with pytest.raises(AttributeError, match=rf"^deploy/engine\.py:\d+: tensorrt {re.escape(TRT11)} has no BuilderFlag\.FP16$"):
        build_network(parsed, EngineRequest("fp16", audio_profile(2400)))

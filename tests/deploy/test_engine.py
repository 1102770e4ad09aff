"""TensorRT paths: the trtexec script everywhere, version/GPU checks with a stand-in module, real
engine builds where TensorRT is importable, and TensorRT-RTX (installed by `make test`) parsing
and building every graph of the bundles ahead of time, on a machine without a GPU too."""

from __future__ import annotations

import json
import sys
import types
from importlib import resources

import numpy as np
import pytest

from at2seld_edge.deploy import engine as engine_mod
from at2seld_edge.deploy.build import BuildOptions, build, plan_build, trtexec_script, workspace_bytes
from at2seld_edge.deploy.bundle import Engine, load_bundle
from at2seld_edge.deploy.devices import PACKAGE, load_device
from at2seld_edge.deploy.engine import (GpuInfo, builder_available, check_engine_compatible, layer_modules, parse_onnx,
                                        tensorrt_available, tensorrt_module)
from at2seld_edge.deploy.trt_check import check_bundle_graphs, rtx_target, verify_graph
from at2seld_edge.deploy.verify import TOLERANCES
from at2seld_edge.errors import EdgeError
from at2seld_edge.model import MODULE_NAMES

NEEDS_TRT = pytest.mark.skipif(not (tensorrt_available() and engine_mod.gpu_info() is not None),
                               reason="TensorRT and a CUDA GPU are not here (Jetson / GPU workstation only)")


@pytest.mark.parametrize("precision,flags", [("fp32", ["--noTF32"]), ("fp16", ["--fp16"]), ("int8", ["--int8"]),
                                             ("best", ["--fp16", "--int8"])])
@pytest.mark.parametrize("target", ["jetson-orin-nano-8gb", "jetson-orin-agx-64gb"])
def test_trtexec_script_carries_the_build_settings(precision, flags, target):
    device = load_device(target)
    plan = plan_build(BuildOptions(target=target, precision=precision), say=lambda m: None)
    script = trtexec_script(plan, "model.onnx", None)
    for flag in flags + ["--onnx=model.onnx", "--minShapes=audio:1x4x2400", "--optShapes=audio:1x4x24000",
                         "--maxShapes=audio:1x4x1440000", '--timingCacheFile="$OUT/timing.cache"',
                         '--exportLayerInfo="$OUT/layers.json"', f"--memPoolSize=workspace:{workspace_bytes(device) >> 20}"]:
        assert flag in script
    assert "--useDLACore" not in script and script.startswith("#!/bin/sh")
    # its engine goes beside the bundle, never into it (a bundle holds only what its manifest lists)
    assert '--saveEngine="$OUT/model.engine"' in script and 'OUT="${OUT:-../$(basename "$PWD").trtexec}"' in script


def test_trtexec_script_dla_static_and_calibration_cache():
    device = load_device("jetson-orin-agx-64gb")
    plan = plan_build(BuildOptions(target=device.name, precision="int8", dla=True, seconds=1.0, implicit_int8=True),
                      say=lambda m: None)
    script = trtexec_script(plan, "model.fp32.onnx", "calibration.cache")
    assert "--useDLACore=0" in script and "--allowGPUFallback" in script and "--calib=calibration.cache" in script
    assert "Shapes" not in script  # static: no optimization profile
    assert workspace_bytes(load_device("jetson-orin-nano-4gb")) == 1 << 30


@pytest.fixture
def fake_trt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.3.0"))
    monkeypatch.setattr(engine_mod, "gpu_info", lambda: GpuInfo("Orin", "8.7"))


def test_engine_for_another_tensorrt_or_gpu_is_refused(fake_trt, tmp_path):
    built = dict(file="model.engine", tensorrt_version="10.3.0", gpu_name="Orin", compute_capability="8.7")
    check_engine_compatible(Engine(**built), tmp_path)  # same version and GPU: fine
    with pytest.raises(EdgeError, match="built with TensorRT 8.6.2, this is TensorRT 10.3.0"):
        check_engine_compatible(Engine(**{**built, "tensorrt_version": "8.6.2"}), tmp_path)
    with pytest.raises(EdgeError, match=r"built for NVIDIA A10 \(compute 8.6\), this GPU is Orin \(compute 8.7\)"):
        check_engine_compatible(Engine(**{**built, "gpu_name": "NVIDIA A10", "compute_capability": "8.6"}), tmp_path)


@NEEDS_TRT
@pytest.mark.tensorrt
@pytest.mark.parametrize("precision, implicit", [("fp32", False), ("fp16", False), ("int8", False), ("int8", True)])
def test_engine_build_and_verify_on_tensorrt(tmp_path, precision, implicit):
    """The engine builder, the TensorRT runner and (implicit) the INT8 calibration cache, for real."""
    from at2seld_edge.deploy.build import build
    from at2seld_edge.deploy.runtime import SeldRuntime
    from at2seld_edge.deploy.verify import verify

    out = tmp_path / precision
    build(BuildOptions(target="cuda-gpu", precision=precision, calib_clips=4, out=out, implicit_int8=implicit),
          say=lambda m: None)
    rt = SeldRuntime(out, "tensorrt")
    assert rt.manifest.engine is not None and (out / "layers.json").is_file()
    assert (tmp_path / f"{precision}.timing.cache").is_file()  # beside the bundle, kept across rebuilds
    report = verify(rt)
    assert report.passed, report.failures


# ----------------------------------------------------------------------------- TensorRT-RTX

NEEDS_RTX = pytest.mark.skipif(not builder_available("tensorrt-rtx"),
                               reason="TensorRT-RTX is not installed (pip install 'at2seld-edge[rtx]'; `make test` does)")
LAYER_TARGET = 400  # nano's FP32 graph, network layers after simplification (1318 before)


@pytest.fixture(scope="module")
def rtx_bundle(bundles_root):
    """An FP16 bundle for an RTX-class target: the FP16 graph and a TensorRT-RTX engine."""
    out = bundles_root / "rtx-a2000"
    if not out.exists():
        build(BuildOptions(target="rtx-a2000", precision="fp16", out=out), say=lambda m: None)
    return out


def _check(bundle) -> dict:
    check = json.loads((bundle / "manifest.json").read_text())["tensorrt_check"]
    return {g["role"]: g for g in check["graphs"]} | {"_": check}


@NEEDS_RTX
def test_fp32_bundle_graph_is_parsed_built_and_lean(fp32_bundle):
    graphs = _check(fp32_bundle)
    assert graphs["_"]["builder"] == "tensorrt-rtx" and graphs["_"]["version"]
    g = graphs["engine graph"]
    assert g["file"] == "model.fp32.onnx" and g["parsed"] and g["built"] and g["engine_bytes"] > 1e6
    assert g["layers"] <= LAYER_TARGET and sum(g["layers_by_module"].values()) == g["layers"]
    assert set(g["layers_by_module"]) <= {*MODULE_NAMES, "-"} and g["layers_by_module"]["-"] < 10
    assert sum(g["layers_by_type"].values()) == g["layers"]
    assert "tensorrt-rtx" in (fp32_bundle / "lint.md").read_text()


@NEEDS_RTX
def test_int8_bundle_graphs_are_parsed_and_built(int8_bundle):
    graphs = _check(int8_bundle)
    assert graphs["engine graph"]["file"] == "model.int8.onnx" and graphs["fp32"]["file"] == "model.fp32.onnx"
    assert all(graphs[r]["parsed"] and graphs[r]["built"] for r in ("engine graph", "fp32"))


@NEEDS_RTX
def test_stream_graph_is_parsed_and_built(causal_bundle):
    graphs = _check(causal_bundle)
    assert graphs["stream"]["file"] == "stream.onnx" and graphs["stream"]["built"]
    assert graphs["stream"]["layers"] <= 1.2 * graphs["engine graph"]["layers"]  # lean too: the caches are Gathers
    stream = parse_onnx(causal_bundle / "stream.onnx")  # fixed shapes: no profile, no shape-tensor input
    assert not any(i.shape_tensor or min(i.shape) < 0 for i in stream.inputs)


@NEEDS_RTX
def test_rtx_target_bundle_has_the_fp16_graph_and_an_engine(rtx_bundle):
    m = load_bundle(rtx_bundle).manifest
    assert m.fp16_model == "model.fp16.onnx" and m.engine is not None and (rtx_bundle / m.engine.file).is_file()
    assert (m.engine.builder, m.engine.compute_capabilities, m.engine.compute_capability) == ("tensorrt-rtx", ["8.6"], "8.6")
    assert m.engine.tensorrt_version == tensorrt_module("tensorrt-rtx").__version__
    graphs = _check(rtx_bundle)
    assert graphs["_"]["compute_capabilities"] == ["8.6"] and graphs["engine graph"]["file"] == "model.fp16.onnx"
    assert graphs["engine graph"]["built"] and graphs["model"]["built"]
    report = verify_graph(rtx_bundle, m.fp16_model, json.loads((rtx_bundle / "manifest.json").read_text()), "fp16")
    assert report.passed and report.tolerances == TOLERANCES["fp16"]


@NEEDS_RTX
def test_rtx_engine_runs_only_where_a_gpu_of_its_compute_capability_is(rtx_bundle, monkeypatch):
    from at2seld_edge.deploy.runtime import SeldRuntime, choose_backend

    if engine_mod.gpu_info() is None:
        assert choose_backend(load_bundle(rtx_bundle), "auto") == "onnxruntime"
        with pytest.raises(EdgeError, match="TensorRT-RTX engines need a CUDA GPU"):
            SeldRuntime(rtx_bundle, "tensorrt-rtx")
    engine = load_bundle(rtx_bundle).manifest.engine
    monkeypatch.setattr(engine_mod, "gpu_info", lambda: GpuInfo("NVIDIA RTX A4000", "8.6"))
    check_engine_compatible(engine, rtx_bundle)  # another GPU of the same compute capability: fine
    monkeypatch.setattr(engine_mod, "gpu_info", lambda: GpuInfo("Orin", "8.7"))
    with pytest.raises(EdgeError, match=r"built for compute capability 8.6, this GPU is Orin \(compute 8.7\)"):
        check_engine_compatible(engine, rtx_bundle)


@NEEDS_RTX
@pytest.mark.skipif(engine_mod.gpu_info() is None, reason="no CUDA GPU here (TensorRT-RTX runs on RTX-class GPUs, A100)")
def test_rtx_engine_reproduces_the_golden_outputs(rtx_bundle):
    from at2seld_edge.deploy.runtime import SeldRuntime
    from at2seld_edge.deploy.verify import verify

    if engine_mod.gpu_info().compute_capability != "8.6":
        pytest.skip("the bundle's engine is for compute capability 8.6")
    report = verify(SeldRuntime(rtx_bundle, "tensorrt-rtx"))
    assert report.passed, report.failures


@NEEDS_RTX
def test_parser_errors_name_node_and_module_and_fail_the_build(fp32_bundle, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, 4, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("Relu", ["audio"], ["r"], name="/model/backbone/conv_block1/Relu"),
             helper.make_node("Unique", ["r"], ["y"], name="/model/heads/Unique")]
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]),
              str(tmp_path / "model.fp32.onnx"))
    parsed = parse_onnx(tmp_path / "model.fp32.onnx")
    assert [(e.node, e.op, e.module) for e in parsed.errors] == [("/model/heads/Unique", "Unique", "heads")]
    with pytest.raises(EdgeError, match=r"TensorRT-RTX .*rejects it: node /model/heads/Unique \(Unique, module heads\)"):
        parsed.raise_on_errors()
    manifest = json.loads((fp32_bundle / "manifest.json").read_text())
    check, engine = check_bundle_graphs(tmp_path, manifest, load_device("x86-cpu"))
    assert engine is None and not check.graphs[0].parsed
    with pytest.raises(EdgeError, match=r"rejects model.fp32.onnx: node /model/heads/Unique \(Unique, module heads\)"):
        check.raise_on_rejected()


def test_layers_take_the_module_of_their_node_or_the_next_named_layer():
    names = ["/model/frontend/Shape", "ONNXTRT_castHelper", "/model/backbone/conv_block1/conv1/Conv",
             "model.heads.sed.bias", "(Unnamed Layer* 3) [Constant]", "/model/heads/sed/Add", "/Transpose", "ONNXTRT_x"]
    assert layer_modules(names) == ["frontend", "backbone", "backbone", "heads", "heads", "heads", "-", "-"]


@pytest.mark.parametrize("name,target", [("rtx-a2000", "8.6"), ("rtx-4090", "8.9"), ("a100", "8.0"),
                                         ("jetson-orin-nano-8gb", None), ("x86-cpu", None)])
def test_rtx_class_devices_validate_cite_sources_and_resolve_their_target(name, target):
    d = load_device(name)
    if target is not None:  # the RTX-class device files: datasheet figures with their sources
        assert "Sources:" in (resources.files(PACKAGE) / f"{name}.yaml").read_text()
        assert d.throughput.int8_tops >= d.throughput.fp16_tflops >= d.throughput.fp32_tflops
        assert d.throughput.fp32_tflops == pytest.approx(d.gpu.cuda_cores * 2 * d.gpu.max_clock_mhz * 1e-6, rel=0.01)
    if builder_available("tensorrt-rtx"):
        assert rtx_target(d) == target


@pytest.mark.parametrize("precision, build_engine", [("fp32", True), ("fp16", True), ("fp16", False)])
def test_tensorrt_builds_the_engine_graph_once_and_records_that_build(tmp_path, monkeypatch, precision, build_engine):
    """Where plain TensorRT checks the graphs and the engine step builds the engine (TensorRT and a
    GPU here: stand-ins), the check only parses the graph the engine step builds; the manifest and
    lint.md record the engine step's build of it. With --no-engine the check builds every graph."""
    import importlib.machinery
    from pathlib import Path

    from at2seld_edge.checkpoint import Checkpoint
    from at2seld_edge.deploy import build as build_mod
    from at2seld_edge.deploy import trt_check as trt_check_mod
    from at2seld_edge.deploy.engine import BuiltEngine, ParsedNetwork

    builder_available("tensorrt")  # cached as it really is before the stand-in module goes into sys.modules
    fake = types.ModuleType("tensorrt")
    fake.__spec__, fake.__version__ = importlib.machinery.ModuleSpec("tensorrt", None), "10.3.0"  # torch looks it up
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(build_mod, "tensorrt_available", lambda: True)
    monkeypatch.setattr(build_mod, "gpu_info", lambda: GpuInfo("Orin", "8.7"))
    monkeypatch.setattr(trt_check_mod, "here_builder", lambda: "tensorrt")
    monkeypatch.setattr(trt_check_mod, "tensorrt_module", lambda builder="tensorrt": sys.modules["tensorrt"])
    checked, engines = [], []
    monkeypatch.setattr(trt_check_mod, "parse_onnx", lambda path, builder: ParsedNetwork(
        Path(path), builder, "10.3.0", [], 3, {"backbone": 3}, {"Convolution": 3}))

    def check_build(parsed, request):
        checked.append(parsed.path.name)
        return BuiltEngine(b"\0" * 2_000_000, 1.5)

    def engine_build(onnx_path, engine_path, precision, *args, layer_info=None, **kw):
        engines.append(Path(onnx_path).name)
        engine_path.write_bytes(b"ftrt" + b"\0" * (3_000_000 - 4))  # begins as a serialized plan does
        layer_info.write_text("{}")
        return engine_path

    monkeypatch.setattr(trt_check_mod, "build_network", check_build)
    monkeypatch.setattr(build_mod, "build_engine", engine_build)
    hashed = []
    monkeypatch.setattr(Checkpoint, "sha256", lambda self, real=Checkpoint.sha256: hashed.append(1) or real(self))
    out = tmp_path / "b"
    build(BuildOptions(target="jetson-orin", precision=precision, out=out, build_engine=build_engine),
          say=lambda m: None)
    graphs = {g["file"]: g for g in _check(out)["_"]["graphs"]}
    others = sorted(set(graphs) - {"model.fp32.onnx"})  # the FP16 graph of an FP16 bundle
    assert sorted(checked) == (others if build_engine else sorted(graphs))  # each graph built once...
    assert engines == (["model.fp32.onnx"] if build_engine else [])  # ...the engine graph by the engine step
    m = load_bundle(out).manifest
    assert (m.engine is not None) == build_engine and all(g["parsed"] and g["built"] for g in graphs.values())
    fp32 = graphs["model.fp32.onnx"]
    assert fp32["engine_bytes"] == (3_000_000 if build_engine else 2_000_000)
    assert f"{fp32['engine_bytes'] / 1e6:.1f} MB in {fp32['build_seconds']:.1f} s" in (out / "lint.md").read_text()
    assert len(hashed) == 1 and m.source_checkpoint_sha256  # the checkpoint is hashed once, by plan_build


def test_the_tensorrt_runner_sizes_outputs_by_the_shape_the_context_resolves(tmp_path):
    """An output the execution context cannot resolve for these inputs (-1 axes) is refused in one
    line, as the C++ TensorRT backend refuses it, instead of sizing a buffer by a guess."""
    from at2seld_edge.deploy.engine import TensorRTRunner

    runner = object.__new__(TensorRTRunner)
    runner.path, runner.inputs, runner.outputs = tmp_path / "model.engine", [], ["sed_logits"]
    runner.dtypes, runner.memory = {"sed_logits": np.dtype(np.float32)}, None
    runner.context = types.SimpleNamespace(get_tensor_shape=lambda name: (1, -1, 3, 8))
    with pytest.raises(EdgeError) as e:
        runner.run({})
    assert str(e.value) == (f"{tmp_path / 'model.engine'}: TensorRT gives output sed_logits the shape (1, -1, 3, 8) for "
                            "these inputs; the runtime cannot size it")

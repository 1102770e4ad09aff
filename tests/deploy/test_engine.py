"""TensorRT paths: the trtexec script everywhere, version/GPU checks with a stand-in module, and
real engine builds where TensorRT is importable."""

from __future__ import annotations

import sys
import types

import pytest

from at2seld_edge.deploy import engine as engine_mod
from at2seld_edge.deploy.build import BuildOptions, _trtexec_script, workspace_bytes
from at2seld_edge.deploy.bundle import Engine
from at2seld_edge.deploy.devices import load_device
from at2seld_edge.deploy.engine import GpuInfo, check_engine_compatible, tensorrt_available
from at2seld_edge.errors import EdgeError

NEEDS_TRT = pytest.mark.skipif(not (tensorrt_available() and engine_mod.gpu_info() is not None),
                               reason="TensorRT and a CUDA GPU are not here (Jetson / GPU workstation only)")


@pytest.mark.parametrize("precision,flags", [("fp32", ["--noTF32"]), ("fp16", ["--fp16"]), ("int8", ["--int8"]),
                                             ("best", ["--fp16", "--int8"])])
@pytest.mark.parametrize("target", ["jetson-orin-nano-8gb", "jetson-orin-agx-64gb"])
def test_trtexec_script_carries_the_build_settings(precision, flags, target):
    device = load_device(target)
    opts = BuildOptions(target=target, precision=precision)
    script = _trtexec_script(opts, device, "model.onnx", None, 24000, 2400, 1440000, True)
    for flag in flags + ["--onnx=model.onnx", "--minShapes=audio:1x4x2400", "--optShapes=audio:1x4x24000",
                         "--maxShapes=audio:1x4x1440000", "--timingCacheFile=../timing.cache", "--exportLayerInfo=layers.json",
                         f"--memPoolSize=workspace:{workspace_bytes(device) >> 20}"]:
        assert flag in script
    assert "--useDLACore" not in script and script.startswith("#!/bin/sh")


def test_trtexec_script_dla_static_and_calibration_cache():
    device = load_device("jetson-orin-agx-64gb")
    opts = BuildOptions(target=device.name, precision="int8", dla=True, seconds=1.0, implicit_int8=True)
    script = _trtexec_script(opts, device, "model.fp32.onnx", "calibration.cache", 24000, 24000, 24000, False)
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
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_build_and_verify_on_tensorrt(tmp_path, precision):
    from at2seld_edge.deploy.build import build
    from at2seld_edge.deploy.runtime import SeldRuntime
    from at2seld_edge.deploy.verify import verify

    out = tmp_path / precision
    build(BuildOptions(target="cuda-gpu", precision=precision, calib_clips=4, out=out), say=lambda m: None)
    rt = SeldRuntime(out, "tensorrt")
    assert rt.manifest.engine is not None and (out / "layers.json").is_file()
    assert (tmp_path / f"{precision}.timing.cache").is_file()  # beside the bundle, kept across rebuilds
    report = verify(rt)
    assert report.passed, report.failures

"""Fixtures of the TensorRT conformance harness: one parameter per release of the matrix; the real
bindings prepared once per release (cached; skipped where the wheel cannot be had, failed instead
under AT2SELD_TRT_CONFORMANCE_REQUIRED=1, as `make test` and `make trt-conformance` set it); the
release's stand-in installed as `tensorrt` (and a host-memory CUDA runtime as cuda-python's) for
one test; and a tiny ONNX graph."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.tensorrt_conformance import host_cuda
from tests.tensorrt_conformance.bindings import HarnessUnavailable, Prepared, prepare
from tests.tensorrt_conformance.matrix import VERSIONS, release
from tests.tensorrt_conformance.standin import module_for

REQUIRED_ENV = "AT2SELD_TRT_CONFORMANCE_REQUIRED"
_prepared: dict[str, Prepared | str] = {}


@pytest.fixture(params=VERSIONS)
def version(request) -> str:
    return request.param


@pytest.fixture
def real(version) -> Prepared:
    """The release's real bindings over stub libraries, ready to import in a subprocess."""
    if version not in _prepared:
        try:
            _prepared[version] = prepare(release(version))
        except HarnessUnavailable as e:
            _prepared[version] = str(e)
    got = _prepared[version]
    if isinstance(got, str):
        if os.environ.get(REQUIRED_ENV) == "1":
            pytest.fail(f"TensorRT {version} bindings: {got}")
        pytest.skip(f"TensorRT {version} bindings not available here: {got}")
    return got


@pytest.fixture
def gpu() -> dict:
    """The GPU the host-memory CUDA runtime reports (a test may change it before `trt` is used)."""
    return {"gpu_name": "Orin", "compute_capability": "8.7"}


@pytest.fixture
def trt(version, monkeypatch, gpu):
    """The release's stand-in as `import tensorrt` gives it, with cuda-python's runtime on host memory."""
    module = module_for(version)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    host_cuda.install(monkeypatch, host_cuda.make_runtime(**gpu))
    return module


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    """audio (1, 4, samples) -> x2 (frontend) -> ReLU (heads) -> out, named as the model's graph is."""
    scale = numpy_helper.from_array(np.array(2.0, np.float32), "model.frontend.scale")
    nodes = [helper.make_node("Mul", ["audio", "model.frontend.scale"], ["scaled"], name="/model/frontend/Mul"),
             helper.make_node("Relu", ["scaled"], ["out"], name="/model/heads/Relu")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, 4, "samples"])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, "samples"])], [scale])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    onnx.save(model, path)
    return path

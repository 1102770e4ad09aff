"""The stand-in has each release's surface and no more, and catches a wrong use with the caller's
file:line and the release: the deliberate-breakage tests (a misspelt enum member, a wrong keyword,
an int for an enum, an unknown attribute, a read-only property), in a test and in deploy/'s own
code path."""

from __future__ import annotations

import re

import pytest

from at2seld_edge.deploy import engine as engine_mod
from at2seld_edge.deploy.engine import EngineRequest, audio_profile, build_network, parse_onnx
from tests.tensorrt_conformance.standin import load_surface

HERE = "tests/tensorrt_conformance/test_standin.py"


def _line(marker: str) -> int:
    text = open(__file__).read().splitlines()
    return next(i for i, line in enumerate(text, 1) if marker in line and "_line(" not in line)


@pytest.mark.parametrize("version, present, absent", [
    ("8.6.1", ["BuilderFlag.FP16", "BuilderFlag.INT8", "NetworkDefinitionCreationFlag.EXPLICIT_BATCH",
               "IInt8EntropyCalibrator2"], ["NetworkDefinitionCreationFlag.STRONGLY_TYPED", "BuilderFlag.BF16"]),
    ("10.3.0", ["BuilderFlag.FP16", "NetworkDefinitionCreationFlag.STRONGLY_TYPED", "IInt8EntropyCalibrator2"],
     ["ICudaEngine.get_binding_name"]),
    ("11.4.0.106", ["NetworkDefinitionCreationFlag.STRONGLY_TYPED", "BuilderFlag.TF32", "BuilderFlag.GPU_FALLBACK"],
     ["BuilderFlag.FP16", "BuilderFlag.INT8", "NetworkDefinitionCreationFlag.EXPLICIT_BATCH", "IInt8EntropyCalibrator2",
      "IInt8Calibrator", "IBuilderConfig.int8_calibrator"]),
])
def test_the_stand_in_has_the_release_surface(version, present, absent, trt):
    for name in present:
        owner, _, attr = name.rpartition(".")
        assert hasattr(getattr(trt, owner) if owner else trt, attr), name
    for name in absent:
        owner, _, attr = name.rpartition(".")
        assert not hasattr(getattr(trt, owner) if owner else trt, attr), name
    assert trt.__version__ == version == load_surface(version)["version"]


@pytest.mark.parametrize("version", ["10.3.0", "11.4.0.106"])
def test_a_wrong_attribute_or_call_names_file_line_and_version(version, trt):
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    config = builder.create_builder_config()
    network = builder.create_network(0)
    with pytest.raises(AttributeError, match=rf"^{HERE}:{_line('FP17)')}: tensorrt {re.escape(version)} has no "
                                             r"BuilderFlag\.FP17$"):
        config.set_flag(trt.BuilderFlag.FP17)
    with pytest.raises(TypeError, match=rf"^{HERE}:{_line('flag=0)')}: tensorrt {re.escape(version)}: "
                                        r"Builder\.create_network\(\) refuses these arguments \(unexpected keyword 'flag'\)"):
        builder.create_network(flag=0)
    with pytest.raises(TypeError, match=rf"{HERE}:{_line('set_flag(7)')}: .*argument 'flag' is int, not BuilderFlag"):
        config.set_flag(7)
    with pytest.raises(TypeError, match=rf"{HERE}:{_line('set_flag(trt.ProfilingVerbosity')}: .*is ProfilingVerbosity"):
        config.set_flag(trt.ProfilingVerbosity.DETAILED)
    with pytest.raises(AttributeError, match=rf"^{HERE}:{_line('max_workspace')}: tensorrt .* has no IBuilderConfig\.max_workspace_size"):
        config.max_workspace_size = 1 << 30  # removed in TensorRT 10
    with pytest.raises(AttributeError, match=rf"^{HERE}:{_line('num_layers = 3')}: .*INetworkDefinition\.num_layers is read-only"):
        network.num_layers = 3
    with pytest.raises(TypeError, match=rf"{HERE}:{_line('DLA_core = ')}: .*IBuilderConfig\.DLA_core takes"):
        config.DLA_core = "0"


def test_a_deliberately_broken_deploy_path_is_caught_in_deploy(trt, tiny_onnx, monkeypatch):
    """A misspelt flag in deploy/engine.py's own build path fails naming that file's line."""
    version = trt.__version__
    monkeypatch.setitem(engine_mod.TRT_PRECISION_FLAGS, "fp16", ("FP17",))
    parsed = parse_onnx(tiny_onnx, "tensorrt")
    with pytest.raises(AttributeError, match=rf"^deploy/engine\.py:\d+: tensorrt {re.escape(version)} has no BuilderFlag\.FP17$"):
        build_network(parsed, EngineRequest("fp16", audio_profile(2400)))

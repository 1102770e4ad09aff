"""Calls whose outcome needs no TensorRT library (no factory): run against the real module of a
release (in a subprocess over the stubs) and against its stand-in, they must end the same way:
accepted, or refused with the same exception type. This is what shows that the stand-in's
checks (signatures, keywords, enum and int types, read-only and unknown attributes, pybind11's
rules for Python subclasses) are pybind11's, release by release.

Standard library and numpy only: `python probe_calls.py` prints the outcomes as JSON."""

from __future__ import annotations

import json


def probes(trt, np) -> list[tuple[str, object]]:
    return call_probes(trt, np) + surface_probes(trt)


def _setattr(obj, name, value):
    def f():
        setattr(obj, name, value)
    return f


def _subclass(trt, base_name: str, call_base: bool):
    def f():
        base = getattr(trt, base_name)

        class Sub(base):
            def __init__(self):
                if call_base:
                    base.__init__(self)

        sub = Sub()
        sub.own_attribute = 1  # a Python subclass has a __dict__
        return sub
    return f


def call_probes(trt, np) -> list[tuple[str, object]]:
    """Signatures: argument counts, keywords, enum/int/float/str types, implicit conversions."""
    L = trt.Logger
    lg = L()
    return [
        ("Logger(int)", lambda: L(1)),
        ("Logger(Severity)", lambda: L(L.ERROR)),
        ("Logger(min_severity=)", lambda: L(min_severity=L.ERROR)),
        ("Logger(severity=)", lambda: L(severity=L.ERROR)),
        ("Logger(wrong enum)", lambda: L(trt.DataType.FLOAT)),
        ("Logger(two arguments)", lambda: L(L.ERROR, 1)),
        ("Logger(None)", lambda: L(None)),
        ("Logger(positional and keyword)", lambda: L(L.ERROR, min_severity=L.ERROR)),
        ("log(Severity, str)", lambda: lg.log(L.VERBOSE, "x")),
        ("log(Severity, bytes)", lambda: lg.log(L.VERBOSE, b"x")),
        ("log(Severity, int)", lambda: lg.log(L.VERBOSE, 1)),
        ("log(int, str)", lambda: lg.log(4, "x")),
        ("min_severity = int", _setattr(lg, "min_severity", 1)),
        ("min_severity = Severity", _setattr(lg, "min_severity", L.INFO)),
        ("Logger.unknown = 1", _setattr(lg, "unknown", 1)),
        ("Dims([float])", lambda: trt.Dims([1.5])),
        ("Dims([bool])", lambda: trt.Dims([True])),
        ("Dims(tuple)", lambda: trt.Dims((1, 2))),
        ("Dims(ndarray)", lambda: trt.Dims(np.array([1, 2]))),
        ("Dims([np.int64])", lambda: trt.Dims([np.int64(3)])),
        ("Dims(str)", lambda: trt.Dims("ab")),
        ("Dims(shape=)", lambda: trt.Dims(shape=[1, 2])),
        ("Dims2(int, int)", lambda: trt.Dims2(3, 4)),
        ("Dims2(float, int)", lambda: trt.Dims2(3.0, 4)),
        ("Dims2(bool, int)", lambda: trt.Dims2(True, 4)),
        ("Dims2(enum, int)", lambda: trt.Dims2(trt.BuilderFlag.TF32, 4)),
        ("Dims2(three)", lambda: trt.Dims2(1, 2, 3)),
        ("tuple(Dims)", lambda: tuple(trt.Dims([1, -1, 3]))),
        ("len(Dims)", lambda: len(trt.Dims([1, -1, 3]))),
        ("Dims[5]", lambda: trt.Dims([1, 2])[5]),
        ("Dims == tuple", lambda: trt.Dims([1, 2]) == (1, 2)),
        ("Dims.MAX_DIMS", lambda: trt.Dims.MAX_DIMS),
        ("Permutation(list)", lambda: trt.Permutation([0, 2, 1])),
        ("Permutation(arg0=)", lambda: trt.Permutation(arg0=[0, 2, 1])),
        ("Weights()", lambda: trt.Weights()),
        ("Weights(ndarray)", lambda: trt.Weights(np.zeros(3, np.float32))),
    ]


def surface_probes(trt) -> list[tuple[str, object]]:
    """Names a release has or lacks, enum behaviour, constructors and pybind11's subclass rule."""
    return [
        ("int(enum)", lambda: int(trt.BuilderFlag.TF32)),
        ("enum(value)", lambda: trt.BuilderFlag(3)),
        ("1 << enum", lambda: 1 << trt.BuilderFlag.TF32),
        ("enum == int", lambda: trt.BuilderFlag.TF32 == 0),
        ("Severity(7)", lambda: trt.Logger.Severity(7)),
        ("BuilderFlag.FP16", lambda: trt.BuilderFlag.FP16),
        ("BuilderFlag.INT8", lambda: trt.BuilderFlag.INT8),
        ("BuilderFlag.FP17", lambda: trt.BuilderFlag.FP17),
        ("BuilderFlag.GPU_FALLBACK", lambda: trt.BuilderFlag.GPU_FALLBACK),
        ("NetworkDefinitionCreationFlag.EXPLICIT_BATCH", lambda: trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH),
        ("NetworkDefinitionCreationFlag.STRONGLY_TYPED", lambda: trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED),
        ("DeviceType.DLA", lambda: trt.DeviceType.DLA),
        ("MemoryPoolType.WORKSPACE", lambda: trt.MemoryPoolType.WORKSPACE),
        ("ProfilingVerbosity.DETAILED", lambda: trt.ProfilingVerbosity.DETAILED),
        ("LayerInformationFormat.JSON", lambda: trt.LayerInformationFormat.JSON),
        ("TensorIOMode.INPUT", lambda: trt.TensorIOMode.INPUT),
        ("nptype(float32)", lambda: trt.nptype(trt.float32)),
        ("nptype(DataType.HALF)", lambda: trt.nptype(trt.DataType.HALF)),
        ("nptype(DataType.BF16)", lambda: trt.nptype(trt.DataType.BF16)),
        ("nptype(int)", lambda: trt.nptype(1)),
        ("IInt8EntropyCalibrator2 subclass", _subclass(trt, "IInt8EntropyCalibrator2", True)),
        ("IProfiler subclass", _subclass(trt, "IProfiler", True)),
        ("IProfiler subclass, no base __init__", _subclass(trt, "IProfiler", False)),
        ("ICudaEngine()", lambda: trt.ICudaEngine()),
        ("IBuilderConfig()", lambda: trt.IBuilderConfig()),
        ("get_nv_onnx_parser_version(1)", lambda: trt.get_nv_onnx_parser_version(1)),
        ("OnnxParser.parse", lambda: trt.OnnxParser.parse),
        ("IExecutionContext.execute_async_v3", lambda: trt.IExecutionContext.execute_async_v3),
        ("IExecutionContext.execute_async_v2", lambda: trt.IExecutionContext.execute_async_v2),
        ("ICudaEngine.get_binding_name", lambda: trt.ICudaEngine.get_binding_name),
        ("IBuilderConfig.int8_calibrator", lambda: trt.IBuilderConfig.int8_calibrator),
        ("Builder.build_engine", lambda: trt.Builder.build_engine),
    ]


def outcomes(trt, np) -> dict[str, str]:
    result = {}
    for label, call in probes(trt, np):
        try:
            call()
            result[label] = "ok"
        except Exception as e:
            result[label] = type(e).__name__
    return result


if __name__ == "__main__":
    import numpy
    import tensorrt

    print("OUTCOMES=" + json.dumps(outcomes(tensorrt, numpy)))

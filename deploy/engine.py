"""TensorRT engines from the exported ONNX graph, and a runner with an optional layer profiler.

TensorRT is imported here, inside the functions, so the rest of the toolkit works where it is
absent; `tensorrt_available()` is what tests skip on. Uses the name-based tensor API
(`set_tensor_address`, `execute_async_v3`) that TensorRT 8.5+ and 10.x share, and torch CUDA
tensors as device buffers.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from at2seld_edge.errors import EdgeError, ErrorKind
from at2seld_edge.io import atomic_path

WORKSPACE_BYTES = 1 << 30


def tensorrt_available() -> bool:
    return importlib.util.find_spec("tensorrt") is not None


def _trt():
    try:
        import tensorrt as trt
    except ImportError:
        raise EdgeError("TensorRT is not installed here (pip install 'at2seld-edge[trt]' on the target, "
                        "or use JetPack's python3-libnvinfer)", ErrorKind.USAGE) from None
    return trt


def build_engine(onnx_path: Path, engine_path: Path, precision: str, samples: int,
                 max_samples: int | None = None, batch: int = 1) -> Path:
    """Parse the ONNX file and build a serialized engine at `precision` (fp32, fp16, or int8 from
    the explicit Q/DQ graph, with FP16 allowed for the float parts); written atomically."""
    trt = _trt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # implicit in TensorRT 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgeError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors}", ErrorKind.CHECK)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # keep ONNX node names in layer names
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    inp = network.get_input(0)
    if any(d < 0 for d in inp.shape):
        profile = builder.create_optimization_profile()
        top = max_samples or samples
        profile.set_shape(inp.name, (1, 4, min(samples, top)), (batch, 4, samples), (batch, 4, top))
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgeError(f"{onnx_path}: TensorRT could not build a {precision} engine (see its log above)", ErrorKind.CHECK)
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(bytes(serialized))
    return engine_path


class TensorRTRunner:
    """Runs a serialized engine on numpy audio; with `layer_profiling`, each run appends
    (layer name, ms) pairs to `layer_times`."""

    def __init__(self, engine_path: Path, layer_profiling: bool = False):
        import torch

        trt = _trt()
        if not torch.cuda.is_available():
            raise EdgeError("TensorRT runs need a CUDA device visible to torch", ErrorKind.USAGE)
        self.version = trt.__version__
        self._torch = torch
        logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise EdgeError(f"{engine_path}: not an engine this TensorRT {self.version} can load", ErrorKind.INPUT)
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.layer_times: list[tuple[str, float]] = []
        if layer_profiling:
            times = self.layer_times

            class _LayerProfiler(trt.IProfiler):
                def __init__(self):
                    trt.IProfiler.__init__(self)

                def report_layer_time(self, layer_name, ms):
                    times.append((layer_name, ms))

            self._profiler = _LayerProfiler()
            self.context.profiler = self._profiler

    def run(self, audio: np.ndarray) -> dict[str, np.ndarray]:
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).cuda()
        self.context.set_input_shape(self.inputs[0], tuple(x.shape))
        self.context.set_tensor_address(self.inputs[0], x.data_ptr())
        outs = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            outs[name] = torch.empty(shape, dtype=torch.float32, device="cuda")
            self.context.set_tensor_address(name, outs[name].data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise EdgeError("TensorRT execution failed", ErrorKind.CHECK)
        stream.synchronize()
        return {k: v.cpu().numpy() for k, v in outs.items()}

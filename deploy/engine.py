"""TensorRT engines from the exported ONNX graph, and a runner with an optional layer profiler.

TensorRT is imported here, inside the functions, so the rest of the toolkit works where it is
absent; `tensorrt_available()` is what tests skip on. Uses the name-based tensor API
(`set_tensor_address`, `execute_async_v3`) that TensorRT 8.5+ and 10.x share. Device buffers come
from cuda-python or pycuda, whichever is installed (torch's CUDA allocator as a last resort).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from at2seld_edge.errors import EdgeError, ErrorKind
from at2seld_edge.io import atomic_path, atomic_write_text

WORKSPACE_BYTES = 1 << 30
TRT_PRECISION_FLAGS = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8",), "best": ("FP16", "INT8")}


def tensorrt_available() -> bool:
    return importlib.util.find_spec("tensorrt") is not None


def _trt():
    try:
        import tensorrt as trt
    except ImportError:
        raise EdgeError("TensorRT is not installed here (pip install 'at2seld-edge[trt]' on the target, "
                        "or use JetPack's python3-libnvinfer)", ErrorKind.USAGE) from None
    return trt


@dataclass
class GpuInfo:
    name: str
    compute_capability: str


def cudart_module():
    """cuda-python's runtime API (`cuda.bindings.runtime` in 12.6+, `cuda.cudart` before), or None."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def gpu_info() -> GpuInfo | None:
    """The GPU this process would build or run on, or None where there is none."""
    cudart = cudart_module()
    if cudart is not None:
        try:
            err, props = cudart.cudaGetDeviceProperties(0)
            if int(err) == 0:
                name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
                return GpuInfo(name.strip("\x00 "), f"{props.major}.{props.minor}")
        except Exception:
            pass
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return GpuInfo(torch.cuda.get_device_name(0), f"{major}.{minor}")
    except Exception:
        pass
    return None


class _CacheCalibrator:
    """Implicit INT8 (TensorRT 8.x) from a calibration cache only: no batches, the cache holds
    every scale."""

    def __new__(cls, trt, cache: bytes):
        class Calibrator(trt.IInt8EntropyCalibrator2):
            def __init__(self):
                trt.IInt8EntropyCalibrator2.__init__(self)

            def get_batch_size(self):
                return 1

            def get_batch(self, names):
                return None

            def read_calibration_cache(self):
                return cache

            def write_calibration_cache(self, data):
                return None

        return Calibrator()


def build_engine(onnx_path: Path, engine_path: Path, precision: str, samples: int, max_samples: int | None = None,
                 batch: int = 1, min_samples: int | None = None, workspace_bytes: int = WORKSPACE_BYTES,
                 dla_core: int | None = None, timing_cache: Path | None = None, calibration_cache: Path | None = None,
                 layer_info: Path | None = None) -> Path:
    """Parse the ONNX file and build a serialized engine, written atomically.

    Precision: fp32 (TF32 off, so it matches the FP32 golden outputs), fp16, int8 (the explicit
    Q/DQ graph; or, with `calibration_cache`, implicit INT8 from the cache on TensorRT 8.x), best
    (INT8 + FP16). The time axis gets an optimization profile [min, opt, max] when dynamic; with
    `dla_core`, layers run on that DLA core with GPU fallback; the timing cache is read and
    updated; `layer_info` receives the engine inspector's per-layer JSON."""
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
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # keep ONNX node names in layer names
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    for flag in TRT_PRECISION_FLAGS[precision]:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if calibration_cache is not None:
        if int(trt.__version__.split(".")[0]) >= 10:
            raise EdgeError("implicit INT8 from a calibration cache is a TensorRT 8.x path; TensorRT "
                            f"{trt.__version__} builds the explicit Q/DQ graph", ErrorKind.USAGE)
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _CacheCalibrator(trt, Path(calibration_cache).read_bytes())
    if dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    cache = None
    if timing_cache is not None:
        cache = config.create_timing_cache(Path(timing_cache).read_bytes() if Path(timing_cache).is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    inp = network.get_input(0)
    if any(d < 0 for d in inp.shape):
        profile = builder.create_optimization_profile()
        top = max_samples or samples
        profile.set_shape(inp.name, (1, 4, min_samples or min(samples, top)), (batch, 4, samples), (batch, 4, top))
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgeError(f"{onnx_path}: TensorRT could not build a {precision} engine (see its log above)", ErrorKind.CHECK)
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(bytes(serialized))
    if cache is not None:
        with atomic_path(timing_cache) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    if layer_info is not None:
        engine = trt.Runtime(logger).deserialize_cuda_engine(bytes(serialized))
        inspector = engine.create_engine_inspector()
        atomic_write_text(layer_info, inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    return engine_path


def check_engine_compatible(engine, root: Path) -> None:
    """An engine is tied to the TensorRT version and GPU it was built with: refuse any other."""
    trt = _trt()
    if trt.__version__ != engine.tensorrt_version:
        raise EdgeError(f"{root / engine.file}: built with TensorRT {engine.tensorrt_version}, this is TensorRT "
                        f"{trt.__version__}; rebuild it here with build_engine.sh", ErrorKind.INPUT)
    gpu = gpu_info()
    if gpu is None:
        raise EdgeError("TensorRT engines need a CUDA GPU, and none is visible", ErrorKind.USAGE)
    if (gpu.name, gpu.compute_capability) != (engine.gpu_name, engine.compute_capability):
        raise EdgeError(f"{root / engine.file}: built for {engine.gpu_name} (compute {engine.compute_capability}), "
                        f"this GPU is {gpu.name} (compute {gpu.compute_capability}); rebuild it here with "
                        "build_engine.sh", ErrorKind.INPUT)


class _DeviceMemory:
    """Device buffers and copies through cuda-python, else pycuda, else torch."""

    def __init__(self):
        self.kind = "cuda-python" if cudart_module() is not None else next(
            (k for k, mod in (("pycuda", "pycuda"), ("torch", "torch")) if importlib.util.find_spec(mod) is not None), None)
        if self.kind == "cuda-python":
            cudart = cudart_module()
            self.rt = cudart
            self.stream = self._ok(cudart.cudaStreamCreate())
        elif self.kind == "pycuda":
            import pycuda.autoinit  # noqa: F401  (creates the context)
            import pycuda.driver as drv

            self.drv = drv
            self.stream = drv.Stream()
        elif self.kind == "torch":
            import torch

            if not torch.cuda.is_available():
                raise EdgeError("TensorRT runs need a CUDA device, and none is visible", ErrorKind.USAGE)
            self.torch = torch
            self.stream = torch.cuda.current_stream()
        else:
            raise EdgeError("TensorRT runs need cuda-python or pycuda (pip install 'at2seld-edge[trt]')", ErrorKind.USAGE)
        self.buffers: dict[str, tuple[int, object]] = {}

    def _ok(self, result):
        err, *rest = result
        if int(err) != 0:
            raise EdgeError(f"CUDA error {err}", ErrorKind.CHECK)
        return rest[0] if len(rest) == 1 else rest

    @property
    def stream_handle(self) -> int:
        if self.kind == "cuda-python":
            return int(self.stream)
        if self.kind == "pycuda":
            return self.stream.handle
        return self.stream.cuda_stream

    def buffer(self, name: str, nbytes: int) -> int:
        """A device pointer of at least `nbytes`, reused across runs."""
        have = self.buffers.get(name)
        if have is not None and have[0] >= nbytes:
            return self._ptr(have[1])
        if self.kind == "cuda-python":
            mem = self._ok(self.rt.cudaMalloc(nbytes))
        elif self.kind == "pycuda":
            mem = self.drv.mem_alloc(nbytes)
        else:
            mem = self.torch.empty(nbytes, dtype=self.torch.uint8, device="cuda")
        self.buffers[name] = (nbytes, mem)
        return self._ptr(mem)

    def _ptr(self, mem) -> int:
        return int(mem) if self.kind != "torch" else mem.data_ptr()

    def to_device(self, ptr: int, array: np.ndarray) -> None:
        if self.kind == "cuda-python":
            self._ok(self.rt.cudaMemcpyAsync(ptr, array.ctypes.data, array.nbytes,
                                             self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream))
        elif self.kind == "pycuda":
            self.drv.memcpy_htod_async(ptr, array, self.stream)
        else:
            self.torch.cuda.synchronize()
            dst = self.buffers_by_ptr(ptr)
            dst[: array.nbytes].copy_(self.torch.from_numpy(array.view(np.uint8).reshape(-1)))

    def to_host(self, array: np.ndarray, ptr: int) -> None:
        if self.kind == "cuda-python":
            self._ok(self.rt.cudaMemcpyAsync(array.ctypes.data, ptr, array.nbytes,
                                             self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream))
        elif self.kind == "pycuda":
            self.drv.memcpy_dtoh_async(array, ptr, self.stream)
        else:
            src = self.buffers_by_ptr(ptr)
            array.view(np.uint8).reshape(-1)[:] = src[: array.nbytes].cpu().numpy()

    def buffers_by_ptr(self, ptr: int):
        return next(mem for _, mem in self.buffers.values() if self._ptr(mem) == ptr)

    def synchronize(self) -> None:
        if self.kind == "cuda-python":
            self._ok(self.rt.cudaStreamSynchronize(self.stream))
        elif self.kind == "pycuda":
            self.stream.synchronize()
        else:
            self.stream.synchronize()


class TensorRTRunner:
    """Runs a serialized engine on numpy inputs (by tensor name); with `layer_profiling`, each
    run appends (layer name, ms) pairs to `layer_times`."""

    def __init__(self, engine_path: Path, layer_profiling: bool = False):
        trt = _trt()
        self.version = trt.__version__
        self.name = f"tensorrt {self.version}"
        self.memory = _DeviceMemory()
        logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise EdgeError(f"{engine_path}: not an engine this TensorRT {self.version} can load", ErrorKind.INPUT)
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
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

    def layer_info(self) -> dict:
        trt = _trt()
        inspector = self.engine.create_engine_inspector()
        return json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))

    def run(self, feeds: dict[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        if isinstance(feeds, np.ndarray):
            feeds = {self.inputs[0]: feeds}
        mem = self.memory
        for name in self.inputs:
            x = np.ascontiguousarray(feeds[name], dtype=self.dtypes[name])
            self.context.set_input_shape(name, tuple(x.shape))
            ptr = mem.buffer(name, max(x.nbytes, 1))
            mem.to_device(ptr, x)
            self.context.set_tensor_address(name, ptr)
        outs = {}
        for name in self.outputs:
            outs[name] = np.empty(tuple(self.context.get_tensor_shape(name)), dtype=self.dtypes[name])
            self.context.set_tensor_address(name, mem.buffer(name, max(outs[name].nbytes, 1)))
        if not self.context.execute_async_v3(mem.stream_handle):
            raise EdgeError("TensorRT execution failed", ErrorKind.CHECK)
        for name in self.outputs:
            mem.to_host(outs[name], mem.buffer(name, max(outs[name].nbytes, 1)))
        mem.synchronize()
        return outs

"""TensorRT engines from the exported ONNX graphs, and a runner with an optional layer profiler.

Two TensorRT-family builders, looked up by name in `BUILDERS`: `tensorrt` (JetPack and desktop
TensorRT 8.5-10.x: precision from builder flags, implicit INT8 from a calibration cache, DLA) and
`tensorrt-rtx` (NVIDIA TensorRT for RTX: strongly typed, so precision comes from the graph's
types and Q/DQ; builds ahead of time for chosen compute capabilities, with or without a GPU).
Both share the ONNX parser API: `parse_onnx` gives the network with its layers counted per
module and type and parser errors named by ONNX node and module; `build_network` serializes it.

The modules are imported here, inside the functions, so the rest of the toolkit works where they
are absent; `builder_available()` is what tests skip on. Uses the name-based tensor API
(`set_tensor_address`, `execute_async_v3`) that TensorRT 8.5+, 10.x and TensorRT-RTX share.
Device buffers come from cuda-python or pycuda, whichever is installed (torch's CUDA allocator
as a last resort).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from at2seld_edge.errors import EdgeError, ErrorKind
from at2seld_edge.io import atomic_path, atomic_write_text
from at2seld_edge.model import MODULE_NAMES
from at2seld_edge.onnx_export import INPUT_NAME, module_of_node
from at2seld_edge.registry import Registry

WORKSPACE_BYTES = 1 << 30
TRT_PRECISION_FLAGS = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8",), "best": ("FP16", "INT8")}
OUTSIDE_MODULES = "-"  # layers of no named module (graph inputs, shared shape arithmetic)


@dataclass(frozen=True)
class TensorRTFamily:
    """One TensorRT-family builder: the Python module it is and how it makes networks."""

    name: str
    title: str  # NVIDIA's name for it, in messages
    module: str
    strongly_typed: bool  # precision from the graph's types, not from builder flags
    install: str  # how to get it, for the error when it is missing


BUILDERS: Registry[TensorRTFamily] = Registry("TensorRT builder")
BUILDERS.register("tensorrt")(TensorRTFamily(
    "tensorrt", "TensorRT", "tensorrt", False,
    "pip install 'at2seld-edge[trt]' on the target, or use JetPack's python3-libnvinfer"))
BUILDERS.register("tensorrt-rtx")(TensorRTFamily(
    "tensorrt-rtx", "TensorRT-RTX", "tensorrt_rtx", True, "pip install 'at2seld-edge[rtx]'"))


def tensorrt_module(builder: str = "tensorrt"):
    """The builder's Python module, imported now; a usage error where it is not installed."""
    family = BUILDERS.get(builder)
    try:
        return importlib.import_module(family.module)
    except ImportError:
        raise EdgeError(f"{family.title} is not installed here ({family.install})", ErrorKind.USAGE) from None


@functools.cache
def builder_available(builder: str) -> bool:
    """Whether the builder imports for real here (a module that is found but fails to load, e.g.
    without its CUDA libraries, does not count)."""
    try:
        importlib.import_module(BUILDERS.get(builder).module)
    except Exception:
        return False
    return True


def tensorrt_available() -> bool:
    return builder_available("tensorrt")


def available_builders() -> list[str]:
    return [name for name in BUILDERS.names() if builder_available(name)]


def rtx_compute_capabilities() -> list[str]:
    """Compute capabilities TensorRT-RTX builds for (`SM86` -> `8.6`)."""
    trt = tensorrt_module("tensorrt-rtx")
    names = [n for n in trt.ComputeCapability.__members__ if n.startswith("SM")]
    return [f"{n[2:-1]}.{n[-1]}" for n in names]


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


# ----------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class ParseError:
    """One error of TensorRT's ONNX parser, named by ONNX node and module."""

    node: str
    op: str
    module: str
    message: str

    def __str__(self) -> str:
        return f"node {self.node} ({self.op}, module {self.module}): {self.message}"


@dataclass(frozen=True)
class NetworkInput:
    name: str
    shape: tuple[int, ...]  # -1: dynamic
    dtype: str
    shape_tensor: bool  # its values set shapes (needs profile values and an INT64/INT32 binding)


@dataclass
class ParsedNetwork:
    """An ONNX graph parsed into a TensorRT network; holds the builder, network and parser alive
    for `build_network`."""

    path: Path
    builder: str
    version: str
    errors: list[ParseError]
    layers: int = 0
    by_module: dict[str, int] = field(default_factory=dict)
    by_type: dict[str, int] = field(default_factory=dict)
    inputs: list[NetworkInput] = field(default_factory=list)
    handles: tuple = field(default=(), repr=False)  # (module, logger, builder, network, parser)

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_on_errors(self) -> None:
        if self.errors:
            shown = "; ".join(str(e) for e in self.errors[:8])
            more = f" (and {len(self.errors) - 8} more)" if len(self.errors) > 8 else ""
            raise EdgeError(f"{self.path}: {BUILDERS.get(self.builder).title} {self.version}'s ONNX parser rejects "
                            f"it: {shown}{more}", ErrorKind.CHECK)


def _create_network(trt, family: TensorRTFamily, builder):
    if family.strongly_typed:
        return builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # implicit in TensorRT 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    return builder.create_network(flags)


def _parse_error(error, nodes: list[onnx.NodeProto]) -> ParseError:
    """The parser's error with the ONNX node's name, operator and module (TensorRT 8.5 reports the
    node index only)."""
    name = str(error.node_name()) if hasattr(error, "node_name") else ""
    index = int(error.node())
    if not name and 0 <= index < len(nodes):
        name = nodes[index].name
    op = str(error.node_operator()) if hasattr(error, "node_operator") else ""
    if not op and 0 <= index < len(nodes):
        op = nodes[index].op_type
    return ParseError(name or "(graph)", op or "-", module_of_node(name) or OUTSIDE_MODULES, str(error.desc()))


def _layer_module(name: str) -> str | None:
    """A layer named after its ONNX node (`/model/heads/Add`) or initializer
    (`model.heads.sed.bias`) belongs to that module; parser helper layers name none."""
    if name.startswith("/"):
        return module_of_node(name) or OUTSIDE_MODULES
    parts = name.split(".")
    if len(parts) > 2 and parts[0] == "model" and parts[1] in MODULE_NAMES:
        return parts[1]
    return None


def layer_modules(names: list[str]) -> list[str]:
    """Each layer's module; a helper layer takes the module of the next named layer (the parser
    emits a node's helpers just before its own layer), trailing ones the last module seen."""
    modules = [_layer_module(n) for n in names]
    following = OUTSIDE_MODULES
    for i in range(len(modules) - 1, -1, -1):
        if modules[i] is None:
            modules[i] = following
        else:
            following = modules[i]
    return modules


def parse_onnx(path: str | Path, builder: str = "tensorrt-rtx") -> ParsedNetwork:
    """Parse `path` with the builder's ONNX parser; count its network layers per module and type."""
    family = BUILDERS.get(builder)
    trt = tensorrt_module(builder)
    path = Path(path)
    try:
        data = path.read_bytes()
        nodes = list(onnx.load_from_string(data).graph.node)
    except Exception as e:
        raise EdgeError(f"{path}: not a readable ONNX file ({type(e).__name__}: {e})") from None
    logger = trt.Logger(trt.Logger.ERROR)
    trt_builder = trt.Builder(logger)
    network = _create_network(trt, family, trt_builder)
    parser = trt.OnnxParser(network, logger)
    parser.parse(data, str(path))
    errors = [_parse_error(parser.get_error(i), nodes) for i in range(parser.num_errors)]
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    types = [str(layer.type).rsplit(".", 1)[-1] for layer in layers]
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    return ParsedNetwork(
        path, builder, trt.__version__, errors, len(layers), dict(Counter(layer_modules([x.name for x in layers]))),
        dict(Counter(types).most_common()),
        [NetworkInput(t.name, tuple(t.shape), str(t.dtype).rsplit(".", 1)[-1], bool(t.is_shape_tensor)) for t in inputs],
        (trt, logger, trt_builder, network, parser))


# ----------------------------------------------------------------------------- building


@dataclass(frozen=True)
class ProfileRange:
    """One input's optimization-profile range; for a shape-tensor input, its values."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]
    values: bool = False


@dataclass
class EngineRequest:
    """What an engine is built for beyond its graph."""

    precision: str = "fp32"  # builder flags for `tensorrt`; strongly typed builders read the graph
    profile: dict[str, ProfileRange] = field(default_factory=dict)  # every dynamic input
    workspace_bytes: int = WORKSPACE_BYTES
    compute_capabilities: tuple[str, ...] = ()  # tensorrt-rtx ahead-of-time targets, e.g. ("8.6",)
    dla_core: int | None = None  # tensorrt only: layers on this DLA core, GPU fallback
    timing_cache: Path | None = None  # read and updated
    calibration_cache: Path | None = None  # tensorrt 8.x only: implicit INT8 from the cache


@dataclass
class BuiltEngine:
    data: bytes
    seconds: float


def _configure_tensorrt(trt, config, request: EngineRequest) -> None:
    """Precision flags, implicit INT8 and DLA: the non-strongly-typed builder's settings."""
    if request.precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # matches the FP32 golden outputs
    for flag in TRT_PRECISION_FLAGS[request.precision]:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if request.calibration_cache is not None:
        if int(trt.__version__.split(".")[0]) >= 10:
            raise EdgeError("implicit INT8 from a calibration cache is a TensorRT 8.x path; TensorRT "
                            f"{trt.__version__} builds the explicit Q/DQ graph", ErrorKind.USAGE)
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _CacheCalibrator(trt, Path(request.calibration_cache).read_bytes())
    if request.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = request.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)


def _configure_strongly_typed(trt, config, request: EngineRequest, builder: str) -> None:
    """Compute-capability targets: the strongly typed builder's settings; the others do not apply."""
    if request.calibration_cache is not None or request.dla_core is not None:
        raise EdgeError(f"{builder} has no implicit INT8 calibration and no DLA", ErrorKind.USAGE)
    if request.compute_capabilities:
        known = rtx_compute_capabilities()
        unknown = [c for c in request.compute_capabilities if c not in known]
        if unknown:
            raise EdgeError(f"{builder} {trt.__version__} does not build for compute capability "
                            f"{', '.join(unknown)} (it builds for {', '.join(known)})", ErrorKind.USAGE)
        config.num_compute_capabilities = len(request.compute_capabilities)
        for i, cc in enumerate(request.compute_capabilities):
            config.set_compute_capability(getattr(trt.ComputeCapability, "SM" + cc.replace(".", "")), i)


def _add_profile(trt_builder, config, parsed: ParsedNetwork, request: EngineRequest) -> None:
    dynamic = [i for i in parsed.inputs if i.shape_tensor or any(d < 0 for d in i.shape)]
    if not dynamic:
        return
    missing = [i.name for i in dynamic if i.name not in request.profile]
    if missing:
        raise EdgeError(f"{parsed.path}: no optimization-profile range for the dynamic input(s) "
                        f"{', '.join(missing)}", ErrorKind.CHECK)
    profile = trt_builder.create_optimization_profile()
    for i in dynamic:
        r = request.profile[i.name]
        (profile.set_shape_input if r.values else profile.set_shape)(i.name, r.min, r.opt, r.max)
    config.add_optimization_profile(profile)


def build_network(parsed: ParsedNetwork, request: EngineRequest) -> BuiltEngine:
    """Build and serialize the parsed network (on a machine without a GPU too, for tensorrt-rtx)."""
    parsed.raise_on_errors()
    trt, _, trt_builder, network, _ = parsed.handles
    family = BUILDERS.get(parsed.builder)
    config = trt_builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, request.workspace_bytes)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # keep ONNX node names in layer names
    if family.strongly_typed:
        _configure_strongly_typed(trt, config, request, parsed.builder)
    else:
        _configure_tensorrt(trt, config, request)
    cache = None
    if request.timing_cache is not None:
        path = Path(request.timing_cache)
        cache = config.create_timing_cache(path.read_bytes() if path.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    _add_profile(trt_builder, config, parsed, request)
    t0 = time.perf_counter()
    serialized = trt_builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - t0
    if serialized is None:
        raise EdgeError(f"{parsed.path}: {parsed.builder} {parsed.version} could not build an engine (see its log above)",
                        ErrorKind.CHECK)
    if cache is not None:
        with atomic_path(request.timing_cache) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    return BuiltEngine(bytes(serialized), seconds)


def audio_profile(samples: int, max_samples: int | None = None, batch: int = 1,
                  min_samples: int | None = None) -> dict[str, ProfileRange]:
    """The model graph's [min, opt, max] for its audio input."""
    top = max_samples or samples
    return {INPUT_NAME: ProfileRange((1, 4, min_samples or min(samples, top)), (batch, 4, samples), (batch, 4, top))}


def build_engine(onnx_path: Path, engine_path: Path, precision: str, samples: int, max_samples: int | None = None,
                 batch: int = 1, min_samples: int | None = None, workspace_bytes: int = WORKSPACE_BYTES,
                 dla_core: int | None = None, timing_cache: Path | None = None, calibration_cache: Path | None = None,
                 layer_info: Path | None = None) -> Path:
    """Parse the ONNX file and build a serialized TensorRT engine, written atomically.

    Precision: fp32 (TF32 off, so it matches the FP32 golden outputs), fp16, int8 (the explicit
    Q/DQ graph; or, with `calibration_cache`, implicit INT8 from the cache on TensorRT 8.x), best
    (INT8 + FP16). The time axis gets an optimization profile [min, opt, max] when dynamic; with
    `dla_core`, layers run on that DLA core with GPU fallback; the timing cache is read and
    updated; `layer_info` receives the engine inspector's per-layer JSON."""
    parsed = parse_onnx(onnx_path, "tensorrt")
    request = EngineRequest(precision, audio_profile(samples, max_samples, batch, min_samples), workspace_bytes,
                            dla_core=dla_core, timing_cache=timing_cache, calibration_cache=calibration_cache)
    built = build_network(parsed, request)
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(built.data)
    if layer_info is not None:
        trt, logger = parsed.handles[:2]
        engine = trt.Runtime(logger).deserialize_cuda_engine(built.data)
        inspector = engine.create_engine_inspector()
        atomic_write_text(layer_info, inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    return engine_path


def check_engine_compatible(engine, root: Path) -> None:
    """An engine is tied to the builder version it was built with, and to its GPU (a TensorRT
    engine) or to its compute capabilities (a TensorRT-RTX one): refuse any other."""
    builder = getattr(engine, "builder", "tensorrt")
    title = BUILDERS.get(builder).title
    trt = tensorrt_module(builder)
    if trt.__version__ != engine.tensorrt_version:
        raise EdgeError(f"{root / engine.file}: built with {title} {engine.tensorrt_version}, this is {title} "
                        f"{trt.__version__}; rebuild it here with `edge build`", ErrorKind.INPUT)
    gpu = gpu_info()
    if gpu is None:
        raise EdgeError(f"{title} engines need a CUDA GPU, and none is visible", ErrorKind.USAGE)
    targets = list(getattr(engine, "compute_capabilities", None) or [])
    if targets:
        if gpu.compute_capability not in targets:
            raise EdgeError(f"{root / engine.file}: built for compute capability {', '.join(targets)}, this GPU is "
                            f"{gpu.name} (compute {gpu.compute_capability}); rebuild the bundle for it", ErrorKind.INPUT)
    elif (gpu.name, gpu.compute_capability) != (engine.gpu_name, engine.compute_capability):
        raise EdgeError(f"{root / engine.file}: built for {engine.gpu_name} (compute {engine.compute_capability}), "
                        f"this GPU is {gpu.name} (compute {gpu.compute_capability}); rebuild it here with "
                        "`edge build`", ErrorKind.INPUT)


def engine_runner(bundle, graph: str, builder: str) -> "TensorRTRunner":
    """The bundle's engine for `graph` when `builder` built it, after the compatibility check."""
    engine = bundle.manifest.engine
    if engine is None or graph != bundle.manifest.model or getattr(engine, "builder", "tensorrt") != builder:
        have = f"a {engine.builder} engine" if engine is not None else "no engine"
        raise EdgeError(f"{bundle.root}: no {builder} engine for {graph} in this bundle ({have}): build the bundle "
                        f"for a {builder} target, or use --backend onnxruntime", ErrorKind.USAGE)
    check_engine_compatible(engine, bundle.root)
    return TensorRTRunner(bundle.path(engine.file), builder=builder)


def engine_backend(bundle) -> str | None:
    """The builder of the bundle's engine where it can run here (its module imports and a GPU is
    visible), else None."""
    engine = bundle.manifest.engine
    builder = getattr(engine, "builder", "tensorrt") if engine is not None else None
    if builder is None or not builder_available(builder) or gpu_info() is None:
        return None
    return builder


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

    def __init__(self, engine_path: Path, layer_profiling: bool = False, builder: str = "tensorrt"):
        trt = tensorrt_module(builder)
        self.trt = trt
        self.path = Path(engine_path)
        self.version = trt.__version__
        self.name = f"{builder} {self.version}"
        self.memory = _DeviceMemory()
        logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise EdgeError(f"{engine_path}: not an engine this {builder} {self.version} can load", ErrorKind.INPUT)
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
        trt = self.trt
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
        for name in self.outputs:  # sized by the shape the context resolves for these inputs, not the manifest's
            shape = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise EdgeError(f"{self.path}: TensorRT gives output {name} the shape {shape} for these inputs; the "
                                "runtime cannot size it", ErrorKind.CHECK)
            outs[name] = np.empty(shape, dtype=self.dtypes[name])
            self.context.set_tensor_address(name, mem.buffer(name, max(outs[name].nbytes, 1)))
        if not self.context.execute_async_v3(mem.stream_handle):
            raise EdgeError("TensorRT execution failed", ErrorKind.CHECK)
        for name in self.outputs:
            mem.to_host(outs[name], mem.buffer(name, max(outs[name].nbytes, 1)))
        mem.synchronize()
        return outs

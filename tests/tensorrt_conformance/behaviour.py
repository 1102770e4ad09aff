"""What the stand-in does beyond a default result: enough of TensorRT to parse an ONNX graph into a
network, build a plan from it, and run that plan on host memory.

Each behaviour is keyed `Class.member` (a property setter `Class.member=`, a module function
`tensorrt.name`) and runs only after the release's surface accepted the call (standin.py), so
none adds API. The plan is this harness's own format (a JSON header and the ONNX graph); running
it executes the graph with ONNX Runtime on the buffers the tensor addresses point at (host memory
from host_cuda.py), so a runner's outputs are the graph's true outputs. What real TensorRT would
refuse and today's code could get wrong is refused as TensorRT does it: a dynamic input without
an optimization profile fails the build (None), a plan of another version does not deserialize
(None), an input shape outside the profile is refused (False), an execution with a tensor
address unset fails (False), and implicit INT8 reads the calibrator's cache (or asks for batches)
during the build.
"""

from __future__ import annotations

import base64
import ctypes
import json
from functools import reduce

import numpy as np
import onnx

from tests.tensorrt_conformance.standin import StandinModule, new

PLAN_MAGIC = b"STANDIN-TRT-PLAN\n"
TIMING_MAGIC = b"STANDIN-TRT-TIMING\n"
BEHAVIOURS: dict = {}
# ONNX operator -> the LayerType TensorRT's parser makes of it (the first the release has).
LAYER_TYPES = {
    "Conv": ("CONVOLUTION",), "ConvTranspose": ("DECONVOLUTION",), "Gemm": ("MATRIX_MULTIPLY",),
    "MatMul": ("MATRIX_MULTIPLY",), "Relu": ("ACTIVATION",), "Sigmoid": ("ACTIVATION",), "Tanh": ("ACTIVATION",),
    "Clip": ("ACTIVATION",), "LeakyRelu": ("ACTIVATION",), "Add": ("ELEMENTWISE",), "Sub": ("ELEMENTWISE",),
    "Mul": ("ELEMENTWISE",), "Div": ("ELEMENTWISE",), "Pow": ("ELEMENTWISE",), "Max": ("ELEMENTWISE",),
    "Min": ("ELEMENTWISE",), "Reshape": ("SHUFFLE",), "Transpose": ("SHUFFLE",), "Flatten": ("SHUFFLE",),
    "Squeeze": ("SHUFFLE",), "Unsqueeze": ("SHUFFLE",), "Concat": ("CONCATENATION",), "Softmax": ("SOFTMAX",),
    "ReduceMean": ("REDUCE",), "ReduceSum": ("REDUCE",), "ReduceMax": ("REDUCE",), "MaxPool": ("POOLING",),
    "AveragePool": ("POOLING",), "GlobalAveragePool": ("REDUCE", "POOLING"), "QuantizeLinear": ("QUANTIZE",),
    "DequantizeLinear": ("DEQUANTIZE",), "Constant": ("CONSTANT",), "Gather": ("GATHER",), "Slice": ("SLICE",),
    "Cast": ("CAST", "IDENTITY"), "Identity": ("IDENTITY",), "BatchNormalization": ("SCALE",),
    "Exp": ("UNARY",), "Log": ("UNARY",), "Sqrt": ("UNARY",), "Abs": ("UNARY",), "Neg": ("UNARY",),
    "Erf": ("UNARY",), "Shape": ("SHAPE",), "Pad": ("PADDING",), "Resize": ("RESIZE",), "Where": ("SELECT",),
    "LayerNormalization": ("NORMALIZATION",), "Einsum": ("EINSUM",),
}
FALLBACK_TYPES = ("PLUGIN_V3", "PLUGIN_V2", "IDENTITY")
DTYPES = {onnx.TensorProto.FLOAT: "FLOAT", onnx.TensorProto.FLOAT16: "HALF", onnx.TensorProto.BFLOAT16: "BF16",
          onnx.TensorProto.INT8: "INT8", onnx.TensorProto.UINT8: "UINT8", onnx.TensorProto.INT32: "INT32",
          onnx.TensorProto.INT64: "INT64", onnx.TensorProto.BOOL: "BOOL"}
NUMPY = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "UINT8": np.uint8, "INT32": np.int32,
         "INT64": np.int64, "BOOL": np.bool_}  # what the package's nptype() maps; BF16/FP8 have no numpy type


def behaves(*keys):
    def register(fn):
        for key in keys:
            BEHAVIOURS[key] = fn
        return fn

    return register


def make(trt: StandinModule, qualname: str, **state):
    return new(trt._classes[qualname], **state)


def member(trt: StandinModule, enum: str, name: str):
    return trt._classes[enum].__members__[name]


def dims(trt: StandinModule, shape) -> object:
    return make(trt, "Dims", _dims=tuple(int(d) for d in shape))


def buffer_bytes(value) -> bytes:
    """A buffer's bytes; a stand-in IHostMemory's too (standin.BUFFER_PROTOCOL)."""
    return bytes(value) if hasattr(type(value), "__bytes__") else bytes(memoryview(value))


def shape_of(value) -> tuple[int, ...]:
    """A Dims stand-in, or a sequence pybind11 would have converted to Dims."""
    state = getattr(value, "_standin", None)
    return tuple(state["_dims"]) if state is not None and "_dims" in state else tuple(int(d) for d in value)


# ----------------------------------------------------------------------------- Dims, enums' helpers


@behaves("Dims.__init__", "Dims2.__init__", "Dims3.__init__", "Dims4.__init__", "DimsHW.__init__")
def _dims_init(trt, obj, bound):
    shape = bound.get("shape")
    obj._standin["_dims"] = tuple(int(d) for d in (shape if shape is not None else bound.values()))


@behaves("Dims.__len__")
def _dims_len(trt, obj, bound):
    return len(obj._standin["_dims"])


@behaves("Dims.__getitem__")
def _dims_getitem(trt, obj, bound):
    key = next(iter(bound.values()))
    return obj._standin["_dims"][key]  # IndexError past the end, as pybind11's


@behaves("Dims.__str__", "Dims.__repr__")
def _dims_str(trt, obj, bound):
    return str(obj._standin["_dims"])


@behaves("Dims.__eq__")
def _dims_eq(trt, obj, bound):
    return obj._standin["_dims"] == tuple(next(iter(bound.values())))


@behaves("Dims.MAX_DIMS")
def _max_dims(trt, obj, bound):
    return 8


@behaves("tensorrt.nptype")
def _nptype(trt, obj, bound):
    (dtype,) = bound["args"]
    if type(dtype) is trt._classes["DataType"] and dtype.name in NUMPY:
        return NUMPY[dtype.name]
    raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")


@behaves("tensorrt.volume")
def _volume(trt, obj, bound):
    return reduce(lambda a, b: a * b, bound["args"][0], 1)


# ----------------------------------------------------------------------------- network and parser


@behaves("Builder.__init__", "Runtime.__init__")
def _with_logger(trt, obj, bound):
    obj._standin["logger"] = bound["logger"]


@behaves("Builder.create_network")
def _create_network(trt, obj, bound):
    return make(trt, "INetworkDefinition", _flags=int(bound.get("flags", 0)), _layers=[], _inputs=[], _outputs=[])


def _counter(key):
    return lambda trt, obj, bound: len(obj._standin[key])


def _getter(key):
    def get(trt, obj, bound):
        items, index = obj._standin[key], int(bound["index"])
        return items[index] if 0 <= index < len(items) else None

    return get


for _name in ("layers", "inputs", "outputs"):
    BEHAVIOURS[f"INetworkDefinition.num_{_name}"] = _counter(f"_{_name}")
    BEHAVIOURS[f"INetworkDefinition.get_{_name[:-1]}"] = _getter(f"_{_name}")


@behaves("OnnxParser.__init__")
def _parser_init(trt, obj, bound):
    obj._standin.update(_network=bound["network"], _errors=[])


@behaves("OnnxParser.num_errors")
def _num_errors(trt, obj, bound):
    return len(obj._standin["_errors"])


@behaves("OnnxParser.get_error")
def _get_error(trt, obj, bound):
    errors, index = obj._standin["_errors"], int(bound["index"])
    return errors[index] if 0 <= index < len(errors) else None


@behaves("OnnxParser.clear_errors")
def _clear_errors(trt, obj, bound):
    obj._standin["_errors"].clear()


def _tensor(trt, value: onnx.ValueInfoProto, is_input: bool):
    t = value.type.tensor_type
    shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in t.shape.dim]
    dtype = DTYPES.get(t.elem_type, "FLOAT")
    if dtype not in trt._classes["DataType"].__members__:
        dtype = "INT32"
    return make(trt, "ITensor", name=value.name, shape=dims(trt, shape), dtype=member(trt, "DataType", dtype),
                is_shape_tensor=False, is_network_input=is_input, is_network_output=not is_input)


def _layer_type(trt, op: str):
    kinds = trt._classes["LayerType"].__members__
    name = next((k for k in LAYER_TYPES.get(op, ()) + FALLBACK_TYPES if k in kinds), next(iter(kinds)))
    return kinds[name]


def _parse_error(trt, desc: str):
    cls = trt._class_of("nvonnxparser::IParserError")
    return new(cls, desc=desc, node=-1, node_name="", node_operator="", code=member(trt, "ErrorCode", "INVALID_GRAPH"))


@behaves("OnnxParser.parse")
def _parse(trt, obj, bound):
    """The graph's nodes as layers named after them (each initializer a constant layer before its
    first consumer, as the parser makes weights into layers), its inputs and outputs as tensors."""
    data = buffer_bytes(bound["model"])
    network = obj._standin["_network"]
    try:
        graph = onnx.load_from_string(data).graph
    except Exception as e:
        obj._standin["_errors"].append(_parse_error(trt, f"Failed to parse ONNX model: {type(e).__name__}"))
        return False
    initializers = {i.name for i in graph.initializer}
    ns = network._standin
    ns["_onnx"] = data
    ns["_inputs"] = [_tensor(trt, v, True) for v in graph.input if v.name not in initializers]
    ns["_outputs"] = [_tensor(trt, v, False) for v in graph.output]
    seen = set()
    for i, node in enumerate(graph.node):
        for name in node.input:
            if name in initializers and name not in seen and node.op_type not in ("Conv", "Gemm", "ConvTranspose"):
                seen.add(name)
                ns["_layers"].append(make(trt, "ILayer", name=name, type=_layer_type(trt, "Constant")))
        ns["_layers"].append(make(trt, "ILayer", name=node.name or f"node_of_{node.output[0]}",
                                 type=_layer_type(trt, node.op_type), num_inputs=len(node.input),
                                 num_outputs=len(node.output)))
    return True


# ----------------------------------------------------------------------------- config and build


@behaves("Builder.create_builder_config")
def _create_config(trt, obj, bound):
    flags = {"TF32"} if "TF32" in trt._classes["BuilderFlag"].__members__ else set()
    return make(trt, "IBuilderConfig", _flags=flags, _pools={}, _profiles=[], _timing_cache=None)


@behaves("IBuilderConfig.set_flag")
def _set_flag(trt, obj, bound):
    obj._standin["_flags"].add(bound["flag"].name)


@behaves("IBuilderConfig.clear_flag")
def _clear_flag(trt, obj, bound):
    obj._standin["_flags"].discard(bound["flag"].name)


@behaves("IBuilderConfig.get_flag")
def _get_flag(trt, obj, bound):
    return bound["flag"].name in obj._standin["_flags"]


@behaves("IBuilderConfig.set_memory_pool_limit")
def _set_pool(trt, obj, bound):
    obj._standin["_pools"][bound["pool"].name] = int(bound["pool_size"])


@behaves("IBuilderConfig.create_timing_cache")
def _create_timing_cache(trt, obj, bound):
    data = buffer_bytes(bound["serialized_timing_cache"])
    if data and not data.startswith(TIMING_MAGIC):
        return None  # not a timing cache this release reads
    entries = json.loads(data[len(TIMING_MAGIC):]) if data else []
    return make(trt, "ITimingCache", _entries=entries)


@behaves("IBuilderConfig.set_timing_cache")
def _set_timing_cache(trt, obj, bound):
    obj._standin["_timing_cache"] = bound["cache"]
    return True


@behaves("IBuilderConfig.get_timing_cache")
def _get_timing_cache(trt, obj, bound):
    return obj._standin["_timing_cache"]


@behaves("ITimingCache.serialize")
def _serialize_timing_cache(trt, obj, bound):
    return host_memory(trt, TIMING_MAGIC + json.dumps(sorted(set(obj._standin["_entries"]))).encode())


@behaves("Builder.create_optimization_profile")
def _create_profile(trt, obj, bound):
    return make(trt, "IOptimizationProfile", _shapes={}, _values={})


@behaves("IOptimizationProfile.set_shape")
def _set_shape(trt, obj, bound):
    obj._standin["_shapes"][bound["input"]] = [shape_of(bound[k]) for k in ("min", "opt", "max")]


@behaves("IOptimizationProfile.set_shape_input")
def _set_shape_input(trt, obj, bound):
    obj._standin["_values"][bound["input"]] = [tuple(bound[k]) for k in ("min", "opt", "max")]


@behaves("IOptimizationProfile.get_shape")
def _get_shape(trt, obj, bound):
    return [dims(trt, s) for s in obj._standin["_shapes"].get(bound["input"], [])]


@behaves("IOptimizationProfile.__bool__")
def _profile_valid(trt, obj, bound):
    return all(_ordered(*r) for r in obj._standin["_shapes"].values())


def _ordered(lo, opt, hi) -> bool:
    return len(lo) == len(opt) == len(hi) and all(a <= b <= c for a, b, c in zip(lo, opt, hi))


@behaves("IBuilderConfig.add_optimization_profile")
def _add_profile(trt, obj, bound):
    profile = bound["profile"]
    if not all(_ordered(*r) for r in profile._standin["_shapes"].values()):
        return -1
    obj._standin["_profiles"].append(profile)
    return len(obj._standin["_profiles"]) - 1


def host_memory(trt: StandinModule, data: bytes):
    return make(trt, "IHostMemory", _data=data, nbytes=len(data), dtype=member(trt, "DataType", "UINT8"))


def _calibrate(trt, config, network) -> bool:
    """Implicit INT8: the builder reads the calibrator's cache, or asks it for batches."""
    calibrator = config._standin.get("int8_calibrator")
    if calibrator is None or "INT8" not in config._standin["_flags"]:
        return True
    cache = calibrator.read_calibration_cache()
    if cache:
        return True
    return calibrator.get_batch([t._standin["name"] for t in network._standin["_inputs"]]) is not None


@behaves("Builder.build_serialized_network")
def _build(trt, obj, bound):
    network, config = bound["network"], bound["config"]
    ns, cs = network._standin, config._standin
    profiles = [p._standin["_shapes"] for p in cs["_profiles"]]
    for t in ns["_inputs"]:
        if any(d < 0 for d in t._standin["shape"]._standin["_dims"]) and not all(t._standin["name"] in p for p in profiles or [{}]):
            return None  # "Network has dynamic or shape inputs, but no optimization profile has been defined."
    if "_onnx" not in ns or not _calibrate(trt, config, network):
        return None
    verbosity = cs.get("profiling_verbosity")
    plan = {"version": trt.__version__, "flags": sorted(cs["_flags"]), "pools": cs["_pools"],
            "device": getattr(cs.get("default_device_type"), "name", "GPU"), "dla_core": cs.get("DLA_core"),
            "verbosity": getattr(verbosity, "name", "LAYER_NAMES_ONLY"), "profiles": profiles,
            "inputs": [_io(t) for t in ns["_inputs"]], "outputs": [_io(t) for t in ns["_outputs"]],
            "layers": [{"name": layer._standin["name"], "type": layer._standin["type"].name} for layer in ns["_layers"]],
            "onnx": base64.b64encode(ns["_onnx"]).decode()}
    if cs["_timing_cache"] is not None:
        cs["_timing_cache"]._standin["_entries"] += [layer["name"] for layer in plan["layers"]]
    return host_memory(trt, PLAN_MAGIC + json.dumps(plan).encode())


def _io(tensor) -> dict:
    s = tensor._standin
    return {"name": s["name"], "shape": list(s["shape"]._standin["_dims"]), "dtype": s["dtype"].name}


# ----------------------------------------------------------------------------- engine and runtime


@behaves("Runtime.deserialize_cuda_engine")
def _deserialize(trt, obj, bound):
    data = buffer_bytes(next(iter(bound.values())))
    if not data.startswith(PLAN_MAGIC):
        return None
    plan = json.loads(data[len(PLAN_MAGIC):])
    if plan["version"] != trt.__version__:
        return None  # "The engine plan file is not compatible with this version of TensorRT"
    return make(trt, "ICudaEngine", _plan=plan, _io=plan["inputs"] + plan["outputs"])


def _io_tensor(obj, name: str) -> dict | None:
    return next((t for t in obj._standin["_io"] if t["name"] == name), None)


@behaves("ICudaEngine.num_io_tensors")
def _num_io(trt, obj, bound):
    return len(obj._standin["_io"])


@behaves("ICudaEngine.num_layers")
def _engine_layers(trt, obj, bound):
    return len(obj._standin["_plan"]["layers"])


@behaves("ICudaEngine.get_tensor_name")
def _tensor_name(trt, obj, bound):
    io, index = obj._standin["_io"], int(bound["index"])
    return io[index]["name"] if 0 <= index < len(io) else None


@behaves("ICudaEngine.get_tensor_mode")
def _tensor_mode(trt, obj, bound):
    plan, name = obj._standin["_plan"], bound["name"]
    mode = "INPUT" if any(t["name"] == name for t in plan["inputs"]) else \
        "OUTPUT" if any(t["name"] == name for t in plan["outputs"]) else "NONE"
    return member(trt, "TensorIOMode", mode)


@behaves("ICudaEngine.get_tensor_dtype")
def _tensor_dtype(trt, obj, bound):
    t = _io_tensor(obj, bound["name"])
    return member(trt, "DataType", t["dtype"] if t else "FLOAT")


@behaves("ICudaEngine.get_tensor_shape")
def _engine_tensor_shape(trt, obj, bound):
    t = _io_tensor(obj, bound["name"])
    return dims(trt, t["shape"] if t else ())


@behaves("ICudaEngine.create_execution_context")
def _create_context(trt, obj, bound):
    return make(trt, "IExecutionContext", engine=obj, _shapes={}, _addresses={}, _session=None)


@behaves("ICudaEngine.create_engine_inspector")
def _create_inspector(trt, obj, bound):
    return new(trt._class_of("nvinfer1::IEngineInspector"), _engine=obj)


@behaves("EngineInspector.get_engine_information", "IEngineInspector.get_engine_information")
def _engine_information(trt, obj, bound):
    """The inspector's JSON: each layer's name and type with DETAILED verbosity, names only else."""
    plan = obj._standin["_engine"]._standin["_plan"]
    detailed = plan["verbosity"] in ("DETAILED", "VERBOSE")
    layers = [{"Name": x["name"], "LayerType": x["type"]} if detailed else x["name"] for x in plan["layers"]]
    if bound["format"].name == "ONELINE":
        return "\n".join(x["name"] for x in plan["layers"])
    return json.dumps({"Layers": layers, "Bindings": [t["name"] for t in plan["inputs"] + plan["outputs"]]})


@behaves("IExecutionContext.set_input_shape")
def _set_input_shape(trt, obj, bound):
    plan = obj._standin["engine"]._standin["_plan"]
    name, shape = bound["name"], shape_of(bound["shape"])
    t = next((t for t in plan["inputs"] if t["name"] == name), None)
    if t is None or len(shape) != len(t["shape"]) or any(d >= 0 and d != s for d, s in zip(t["shape"], shape)):
        return False
    ranges = [p[name] for p in plan["profiles"] if name in p]
    if ranges and not all(lo <= s <= hi for lo, s, hi in zip(ranges[0][0], shape, ranges[0][2])):
        return False  # outside the optimization profile
    obj._standin["_shapes"][name] = shape
    return True


@behaves("IExecutionContext.get_tensor_shape")
def _context_tensor_shape(trt, obj, bound):
    plan, name = obj._standin["engine"]._standin["_plan"], bound["name"]
    if name in obj._standin["_shapes"]:
        return dims(trt, obj._standin["_shapes"][name])
    t = next((t for t in plan["outputs"] if t["name"] == name), None)
    if t is None:
        t = next((t for t in plan["inputs"] if t["name"] == name), {"shape": []})
        return dims(trt, t["shape"])
    if not all(i["name"] in obj._standin["_shapes"] or min(i["shape"], default=0) >= 0 for i in plan["inputs"]):
        return dims(trt, t["shape"])  # unresolved until every input's shape is set
    return dims(trt, _run(obj, zeros=True)[name].shape)


@behaves("IExecutionContext.set_tensor_address")
def _set_address(trt, obj, bound):
    obj._standin["_addresses"][bound["name"]] = int(bound["memory"])
    return True


def _session(obj):
    if obj._standin["_session"] is None:
        import onnxruntime as ort

        plan = obj._standin["engine"]._standin["_plan"]
        obj._standin["_session"] = ort.InferenceSession(base64.b64decode(plan["onnx"]), providers=["CPUExecutionProvider"])
    return obj._standin["_session"]


def _run(obj, zeros: bool = False) -> dict[str, np.ndarray]:
    plan = obj._standin["engine"]._standin["_plan"]
    feeds = {}
    for t in plan["inputs"]:
        shape = obj._standin["_shapes"].get(t["name"], tuple(t["shape"]))
        dtype = np.dtype(NUMPY[t["dtype"]])
        if zeros:
            feeds[t["name"]] = np.zeros(shape, dtype)
        else:
            n = int(np.prod(shape)) * dtype.itemsize
            raw = (ctypes.c_char * n).from_address(obj._standin["_addresses"][t["name"]])
            feeds[t["name"]] = np.frombuffer(raw, dtype, count=int(np.prod(shape))).reshape(shape).copy()
    names = [t["name"] for t in plan["outputs"]]
    return dict(zip(names, _session(obj).run(names, feeds)))


@behaves("IExecutionContext.execute_async_v3")
def _execute(trt, obj, bound):
    """Run the plan's graph on the host buffers the tensor addresses point at."""
    plan = obj._standin["engine"]._standin["_plan"]
    if any(t["name"] not in obj._standin["_addresses"] for t in plan["inputs"] + plan["outputs"]):
        return False  # "Neither address or allocator is set for output tensor ..."
    for name, value in _run(obj).items():
        value = np.ascontiguousarray(value)
        ctypes.memmove(obj._standin["_addresses"][name], value.ctypes.data, value.nbytes)
    profiler = obj._standin.get("profiler")
    if profiler is not None:
        for layer in plan["layers"]:
            profiler.report_layer_time(layer["name"], 0.001)
    return True

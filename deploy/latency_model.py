"""Latency estimate: what one batch-1 inference costs on a device, from the layers its engine runs.

At batch 1 these models are bound by the number of kernels and each kernel's fixed cost, not by
MACs or bytes: the roofline max(2 * MACs / peak, bytes / bandwidth) of a whole model is 100 to
2,000x below what an H100 measures (issue 13). So the estimate groups the ONNX graph into the
layers its executor would run (TensorRT: conv + BN + activation, pointwise chains into their
producer, Q/DQ folded into the layers they feed, reshapes free; ONNX Runtime: conv or gemm with
its activation, one node per op otherwise) and sums each layer's

    max(2 * MACs / (peak * compute_efficiency), bytes / (bandwidth * memory_efficiency), steps * floor)

plus a fixed cost per inference. The four constants sit in the device file (`estimate:`), each
with its provenance; `fit` recovers them from measurements (`edge devices calibrate`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

from at2seld_edge.errors import EdgeError
from at2seld_edge.onnx_export import module_of_node
from at2seld_edge.registry import Registry
from at2seld_edge.yamlfile import read_json
from at2seld_edge.deploy.devices import DeviceSpec, EstimateSpec, Precision

WHOLE_MODEL = "model"  # the one module of a graph whose nodes carry no module scope
BYTES = {"fp32": 4, "fp16": 2, "int8": 1}

POINTWISE = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mod", "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu",
    "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Erf", "Gelu", "Softplus", "Softsign", "Mish", "Clip", "Log",
    "Exp", "Sqrt", "Reciprocal", "Abs", "Neg", "Floor", "Ceil", "Round", "Sign", "Sin", "Cos", "Cast", "Not", "And",
    "Or", "Xor", "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Where", "BatchNormalization",
    "IsNaN", "IsInf", "ThresholdedRelu", "Shrink",
})
ACTIVATIONS = frozenset({"Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish"})
VIEWS = frozenset({"Reshape", "Squeeze", "Unsqueeze", "Flatten"})
FREE = frozenset({"Constant", "Identity", "Dropout", "Shape", "Size"})
QDQ = frozenset({"QuantizeLinear", "DequantizeLinear"})
GEMM_LIKE = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm", "MatMulInteger", "ConvInteger"})
RECURRENT = frozenset({"GRU", "LSTM", "RNN"})


# ----------------------------------------------------------------------------- fusion rules


@dataclass(frozen=True)
class Fusion:
    """How an executor groups ONNX nodes into the layers (kernels) it runs."""

    views_free: bool  # Reshape & co. cost nothing (TensorRT) or run as nodes (ONNX Runtime)
    absorbs: dict[str, frozenset[str]]  # a layer of this kind takes in these ops when it alone feeds them
    closing: frozenset[str]  # ops after which a layer takes in nothing more
    merge_shuffles: bool  # a Transpose of a Transpose's output joins it
    shared_reads: bool  # a tensor several absorbed ops read still fuses (TensorRT's pointwise regions: GELU)
    qdq_free: bool  # Q/DQ fold into the layers they feed (TensorRT); else (ONNX Runtime's QDQ fusion) a
    #                 QuantizeLinear joins the conv or matmul it requantizes, a DequantizeLinear the one it
    #                 feeds, and any other runs as a node
    steps_per_frame: bool  # a recurrent layer runs one step (at least one kernel) per frame
    requested_precision: bool  # layers run at the requested precision (else the graph's own types)


FUSIONS: Registry[Fusion] = Registry("executor")
FUSIONS.register("tensorrt")(Fusion(
    views_free=True, absorbs={kind: POINTWISE for kind in (*GEMM_LIKE, "PointWise")}, closing=frozenset(),
    merge_shuffles=True, shared_reads=True, qdq_free=True, steps_per_frame=True, requested_precision=True))
FUSIONS.register("onnxruntime")(Fusion(
    views_free=False, absorbs={"Conv": frozenset({"BatchNormalization", "Add", *ACTIVATIONS}), "Gemm": ACTIVATIONS,
                               "MatMul": frozenset({"Add"})},
    closing=ACTIVATIONS, merge_shuffles=False, shared_reads=False, qdq_free=False, steps_per_frame=False,
    requested_precision=False))


# ----------------------------------------------------------------------------- the graph


@dataclass
class Graph:
    """A shape-inferred ONNX graph at a fixed input length, with what fusion needs to know."""

    nodes: list[onnx.NodeProto]
    shapes: dict[str, tuple[int, ...]]
    float16: set[str]  # tensors typed FP16
    weights: set[str]  # initializers and constants, and whatever is computed from them or from shapes alone
    producer: dict[str, onnx.NodeProto]
    consumers: dict[str, list[onnx.NodeProto]]
    outputs: set[str]
    owner: dict[str, str]  # node name -> module
    has_qdq: bool


def load_graph(source: str | Path | onnx.ModelProto, samples: int | None = None) -> Graph:
    """The graph with batch 1 and (if given) `samples` on the input's last axis, shapes inferred
    with data propagation so a dynamic-time export resolves like a static one. A raw trace whose
    shape arithmetic shape inference cannot follow (pads or reshapes computed from Shape) is first
    constant-folded by ONNX Runtime's basic graph optimisation."""
    proto = _load(source)
    _fix_input(proto, samples)
    graph = _infer(proto, source)
    if any(_unknown(graph.shapes.get(o)) for n in graph.nodes for o in n.output[:1] if o not in graph.weights):
        graph = _infer(_fold_constants(proto), source)
    return graph


def _unknown(shape: tuple[int, ...] | None) -> bool:
    return not shape or 0 in shape  # 0: a dimension shape inference could not resolve


def _fix_input(proto: onnx.ModelProto, samples: int | None) -> None:
    inits = {i.name for i in proto.graph.initializer}
    for inp in (i for i in proto.graph.input if i.name not in inits):
        dims = inp.type.tensor_type.shape.dim
        for k, d in enumerate(dims):
            last = k == len(dims) - 1
            if (last and samples) or not d.HasField("dim_value") or d.dim_value <= 0:
                d.ClearField("dim_param")
                d.dim_value = samples if last and samples else max(d.dim_value, 1)


def _infer(proto: onnx.ModelProto, source) -> Graph:
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception as e:  # a malformed graph: one line, not a traceback
        raise EdgeError(f"{_name(source)}: shape inference failed ({type(e).__name__}: {e})") from None
    return _graph_of(inferred.graph, {i.name for i in proto.graph.initializer})


def _fold_constants(proto: onnx.ModelProto) -> onnx.ModelProto:
    import tempfile

    from at2seld_edge.onnx_session import ort_session

    with tempfile.TemporaryDirectory(prefix="edge-estimate-") as tmp:
        folded = Path(tmp) / "folded.onnx"
        ort_session(proto.SerializeToString(), optimized_path=folded, basic_optimizations=True)
        return onnx.load(str(folded))


def _load(source) -> onnx.ModelProto:
    if isinstance(source, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(source)
        return copy
    path = Path(source)
    if not path.is_file():
        raise EdgeError(f"{path}: ONNX file not found")
    try:
        return onnx.load(str(path))
    except Exception as e:
        raise EdgeError(f"{path}: not a readable ONNX file ({type(e).__name__}: {e})") from None


def _name(source) -> str:
    return "the ONNX graph" if isinstance(source, onnx.ModelProto) else str(source)


def _graph_of(g: onnx.GraphProto, inits: set[str]) -> Graph:
    shapes: dict[str, tuple[int, ...]] = {i.name: tuple(i.dims) for i in g.initializer}
    float16 = {i.name for i in g.initializer if i.data_type == onnx.TensorProto.FLOAT16}
    for vi in [*g.value_info, *g.output, *g.input]:
        t = vi.type.tensor_type
        if t.HasField("shape"):
            shapes.setdefault(vi.name, tuple(d.dim_value if d.HasField("dim_value") else 0 for d in t.shape.dim))
        if t.elem_type == onnx.TensorProto.FLOAT16:
            float16.add(vi.name)
    weights = set(inits)
    producer, consumers = {}, defaultdict(list)
    for n in g.node:
        for o in n.output:
            producer[o] = n
        for i in n.input:
            if i:
                consumers[i].append(n)
        real_inputs = [i for i in n.input if i]
        if n.op_type in ("Constant", "Shape", "Size") or (real_inputs and all(i in weights for i in real_inputs)):
            weights.update(n.output)  # folded when the engine is built
    return Graph(list(g.node), shapes, float16, weights, producer, dict(consumers), {o.name for o in g.output},
                 attribute_nodes(g), any(n.op_type in QDQ for n in g.node))


def attribute_nodes(graph: onnx.GraphProto) -> dict[str, str]:
    """Node name -> module for an (optimised) ONNX graph. Nodes an optimiser inserted without a
    scope (layout reorders, reshapes around fused Gemms) take the module of the node that feeds
    them, else of the node they feed."""
    owner = {n.name: module_of_node(n.name) for n in graph.node}
    producer = {out: n.name for n in graph.node for out in n.output}
    consumers: dict[str, list[str]] = defaultdict(list)
    for n in graph.node:
        for i in n.input:
            consumers[i].append(n.name)
    for _ in range(len(graph.node)):
        changed = False
        for n in graph.node:
            if owner[n.name] is not None:
                continue
            near = [owner.get(producer.get(i, ""), None) for i in n.input]
            near += [owner[c] for o in n.output for c in consumers.get(o, [])]
            found = next((m for m in near if m is not None), None)
            if found is not None:
                owner[n.name], changed = found, True
        if not changed:
            break
    return {k: v for k, v in owner.items() if v is not None}


# ----------------------------------------------------------------------------- layers


@dataclass
class Layer:
    """One kernel (or, for a recurrent layer, one kernel per step) of the executor."""

    kind: str  # the op that opened it, or PointWise
    module: str
    nodes: list[str]
    macs: float = 0.0
    bytes: float = 0.0
    precision: str = "fp32"
    steps: int = 1
    closed: bool = field(default=False, repr=False)

    @property
    def name(self) -> str:
        return " + ".join(self.nodes)  # as TensorRT names a fused layer


def layer_precision(precision: str) -> Precision:
    """A bundle's precision as its layers run: `best` is INT8 where quantized, FP16 elsewhere,
    which the Q/DQ graph says layer by layer, so it is estimated as `int8`."""
    return "int8" if precision == "best" else precision  # type: ignore[return-value]


def graph_layers(graph: Graph, executor: str, precision: Precision) -> list[Layer]:
    """The layers `executor` runs for this graph, with MACs and bytes moved at their precision."""
    fusion = FUSIONS.get(executor)
    built = _Fuser(graph, fusion).run()
    for layer, nodes in built:
        _cost(layer, nodes, graph, fusion, precision)
    return [layer for layer, _ in built]


class _Fuser:
    """Walks the nodes in graph order; each tensor remembers the layer that produced it (a
    pass-through node, a reshape or a Q/DQ, hands its input's layer on)."""

    def __init__(self, graph: Graph, fusion: Fusion):
        self.g, self.f = graph, fusion
        self.layer_of: dict[str, int] = {}
        self.built: list[tuple[Layer, list[onnx.NodeProto]]] = []

    def passes_through(self, n: onnx.NodeProto) -> bool:
        if n.op_type in QDQ:
            return self.f.qdq_free or (n.op_type == "DequantizeLinear" and self.feeds_gemms(n))
        return self.f.views_free and n.op_type in VIEWS

    def feeds_gemms(self, n: onnx.NodeProto) -> bool:
        readers = [r for o in n.output for r in self.g.consumers.get(o, [])]
        return bool(readers) and all(r.op_type in GEMM_LIKE for r in readers)

    def run(self) -> list[tuple[Layer, list[onnx.NodeProto]]]:
        for n in self.g.nodes:
            if n.op_type in FREE or all(o in self.g.weights for o in n.output if o):
                continue
            if self.passes_through(n):
                if n.input and n.input[0] in self.layer_of:
                    for o in n.output:
                        self.layer_of[o] = self.layer_of[n.input[0]]
                continue
            k = self.host(n)
            if k is None:
                kind = "PointWise" if n.op_type in POINTWISE else n.op_type
                self.built.append((Layer(kind, self.g.owner.get(n.name, WHOLE_MODEL), []), []))
                k = len(self.built) - 1
            layer, nodes = self.built[k]
            layer.nodes.append(n.name)
            nodes.append(n)
            layer.closed = layer.closed or n.op_type in self.f.closing
            for o in n.output:
                self.layer_of[o] = k
        return self.built

    def host(self, n: onnx.NodeProto) -> int | None:
        """The layer this node fuses into: one that alone feeds it and takes in its op."""
        for t in n.input:
            k = self.layer_of.get(t)
            if k is None or t in self.g.weights:
                continue
            layer = self.built[k][0]
            takes = self.f.absorbs.get(layer.kind, frozenset())
            if self.f.merge_shuffles and n.op_type == layer.kind == "Transpose":
                takes = frozenset({"Transpose"})
            if n.op_type == "QuantizeLinear" and layer.kind in GEMM_LIKE:
                takes = frozenset({"QuantizeLinear"})
            if not layer.closed and n.op_type in takes and self.private(t, takes):
                return k
        return None

    def private(self, t: str, takes: frozenset[str]) -> bool:
        """Nothing outside the layer needs `t`, or any tensor `t` passes through from its layer:
        one reader each, or (shared reads) readers that all fuse into the layer too."""
        while True:  # a Shape of `t` reads no data: shapes are static once the input is
            readers = [r for r in self.g.consumers.get(t, []) if not all(o in self.g.weights for o in r.output)]
            shared = self.f.shared_reads and all(r.op_type in takes for r in readers)
            if t in self.g.outputs or not (len(readers) == 1 or shared):
                return False
            p = self.g.producer.get(t)
            if p is None or not self.passes_through(p):
                return True
            t = p.input[0]


def _elements(graph: Graph, t: str) -> int:
    shape = graph.shapes.get(t)
    return int(np.prod(shape)) if shape else 0


def _macs(n: onnx.NodeProto, g: Graph) -> float:
    """Multiply-accumulates of the compute ops; 0 for the rest (their cost is bytes)."""
    out = _elements(g, n.output[0]) if n.output else 0
    shape = lambda i: g.shapes.get(n.input[i], ()) if len(n.input) > i else ()  # noqa: E731
    if n.op_type in ("Conv", "ConvInteger"):
        return out * float(np.prod(shape(1)[1:])) if shape(1) else 0.0
    if n.op_type == "ConvTranspose":
        w = shape(1)
        return _elements(g, n.input[0]) * float(np.prod(w[1:])) if w else 0.0
    if n.op_type in ("MatMul", "MatMulInteger", "Gemm"):
        a = shape(0)
        trans_a = any(at.name == "transA" and at.i for at in n.attribute)
        k = (a[0] if trans_a else a[-1]) if a else 0
        return float(out * k)
    if n.op_type in RECURRENT:
        x, w, r = shape(0), shape(1), shape(2)
        if len(x) == 3 and len(w) == 3 and len(r) == 3:
            return float(w[0] * x[0] * x[1] * w[1] * (x[2] + r[2]))  # directions x T x B x gates*H x (I + H)
    return 0.0


def _steps(n: onnx.NodeProto, g: Graph) -> int:
    x = g.shapes.get(n.input[0], ())
    layout = next((at.i for at in n.attribute if at.name == "layout"), 0)
    return int(x[1 if layout else 0]) if len(x) == 3 else 1


def _cost(layer: Layer, nodes: list[onnx.NodeProto], g: Graph, fusion: Fusion, precision: Precision) -> None:
    """MACs, bytes read from outside the layer plus bytes it hands on, at the layer's precision."""
    produced = {o for n in nodes for o in n.output}
    quantized = any(_through_dq(i, g) for n in nodes for i in n.input if i)
    layer.precision = _precision(layer, nodes, g, fusion, precision, quantized)
    size = BYTES[layer.precision]
    read = {i for n in nodes for i in n.input if i and i not in produced}
    members = set(layer.nodes)
    written = {o for o in produced if _leaves(o, members, g, fusion)}
    layer.bytes = float(sum(_elements(g, t) for t in read | written) * size)
    layer.macs = float(sum(_macs(n, g) for n in nodes))
    if fusion.steps_per_frame and layer.kind in RECURRENT:
        layer.steps = max(1, _steps(nodes[0], g))


def _leaves(t: str, members: set[str], g: Graph, fusion: Fusion) -> bool:
    """Is `t` (or a reshape or Q/DQ of it) read outside the layer, or a graph output?"""
    if t in g.outputs:
        return True
    for c in g.consumers.get(t, []):
        if c.name in members or all(o in g.weights for o in c.output):
            continue  # read inside the layer, or a Shape (which reads no data)
        passes = c.op_type == "DequantizeLinear" or (fusion.qdq_free and c.op_type in QDQ) or (
            fusion.views_free and c.op_type in VIEWS)
        if not passes or any(_leaves(o, members, g, fusion) for o in c.output):
            return True
    return False


def _through_dq(t: str, g: Graph) -> bool:
    """Does `t` come out of a DequantizeLinear (through reshapes)?"""
    for _ in range(8):
        p = g.producer.get(t)
        if p is None:
            return False
        if p.op_type == "DequantizeLinear":
            return True
        if p.op_type not in VIEWS:
            return False
        t = p.input[0]
    return False


def _precision(layer: Layer, nodes, g: Graph, fusion: Fusion, requested: Precision, quantized: bool) -> str:
    """TensorRT runs the requested precision: INT8 where Q/DQ feed a layer (or, for a graph
    without Q/DQ, everywhere but the front-end, which INT8 deployments keep in FP16), FP16
    elsewhere. ONNX Runtime runs the graph's own types."""
    if quantized:
        return "int8"
    if not fusion.requested_precision:
        return "fp16" if any(o in g.float16 for n in nodes for o in n.output) else "fp32"
    if requested == "int8":
        return "int8" if not g.has_qdq and layer.module != "frontend" and layer.kind in GEMM_LIKE else "fp16"
    return requested


# ----------------------------------------------------------------------------- the estimate


@dataclass
class LayerTime:
    kind: str
    module: str
    name: str
    precision: str
    steps: int
    macs: float
    bytes: float
    roofline_ms: float  # at the full peak and bandwidth: a bound
    ms: float  # the estimate
    bound: str  # compute, memory or floor


@dataclass
class ModuleEstimate:
    module: str
    layers: int
    roofline_ms: float
    ms: float


@dataclass
class Estimate:
    device: str
    executor: str
    precision: str
    constants: EstimateSpec
    origin: str  # the device file the constants came from
    fixed_ms: float
    modules: list[ModuleEstimate]
    layers: list[LayerTime]

    @property
    def total_ms(self) -> float:
        return self.fixed_ms + sum(m.ms for m in self.modules)

    @property
    def roofline_ms(self) -> float:
        return sum(m.roofline_ms for m in self.modules)

    def module(self, name: str) -> ModuleEstimate | None:
        return next((m for m in self.modules if m.module == name), None)

    def describe(self) -> str:
        """Where the figure comes from, for a report's notes."""
        c = self.constants
        return (f"estimate for {self.device} ({self.executor} layers at {self.precision}): {len(self.layers)} layers, "
                f"each max(roofline at {c.compute_efficiency:.0%} of peak compute / {c.memory_efficiency:.0%} of "
                f"bandwidth, {c.per_layer_us:g} us floor) + {c.per_inference_us:g} us per inference; constants from "
                f"{self.origin} ({c.source})")

    def summary(self) -> dict:
        return {"device": self.device, "executor": self.executor, "precision": self.precision,
                "constants": self.constants.model_dump(mode="json"), "origin": self.origin, "fixed_ms": self.fixed_ms,
                "total_ms": self.total_ms, "roofline_ms": self.roofline_ms, "layers": len(self.layers),
                "modules": [asdict(m) for m in self.modules]}


def layer_bounds(layer: Layer, device: DeviceSpec, power_mode: str | None = None) -> tuple[float, float]:
    """(compute, memory) milliseconds of one layer at the device's full peak and bandwidth."""
    compute = 2 * layer.macs / device.peak_ops_per_s(layer.precision, power_mode) * 1e3
    return compute, layer.bytes / device.bandwidth_bytes_per_s(power_mode) * 1e3


def layer_ms(compute: float, memory: float, steps: int, c: EstimateSpec, clock_ratio: float = 1.0) -> tuple[float, str]:
    """max(roofline at the achieved fractions, steps x the per-layer floor) and which term won.
    A lower clock (power mode) stretches the floor as it stretches a small kernel."""
    terms = {"compute": compute / c.compute_efficiency, "memory": memory / c.memory_efficiency,
             "floor": steps * c.per_layer_us * 1e-3 * clock_ratio}
    bound = max(terms, key=terms.get)
    return terms[bound], bound


def estimate_layers(layers: list[Layer], device: DeviceSpec, precision: Precision, executor: str,
                    power_mode: str | None = None) -> Estimate:
    c = device.estimate_constants()
    ratio = device.clock_ratio(power_mode)
    timed, per_module = [], defaultdict(lambda: [0, 0.0, 0.0])
    for layer in layers:
        compute, memory = layer_bounds(layer, device, power_mode)
        ms, bound = layer_ms(compute, memory, layer.steps, c, ratio)
        timed.append(LayerTime(layer.kind, layer.module, layer.name, layer.precision, layer.steps, layer.macs,
                               layer.bytes, max(compute, memory), ms, bound))
        acc = per_module[layer.module]
        acc[0], acc[1], acc[2] = acc[0] + 1, acc[1] + max(compute, memory), acc[2] + ms
    modules = [ModuleEstimate(m, n, r, t) for m, (n, r, t) in per_module.items()]
    return Estimate(device.name, executor, precision, c, device.origin, c.per_inference_us * 1e-3, modules, timed)


def estimate_onnx(source: str | Path | onnx.ModelProto, device: DeviceSpec, precision: Precision,
                  power_mode: str | None = None, samples: int | None = None) -> Estimate:
    """The estimate for an ONNX graph on `device`, its layers derived the way the device's
    executor (TensorRT on a GPU, ONNX Runtime on a CPU) would build them, or, for a bundle's graph
    whose TensorRT engine was built, read from the engine's layer information."""
    executor = device.executor()
    graph = load_graph(source, samples)
    info = _bundle_engine_info(source) if executor == "tensorrt" else None
    layers = engine_layers(info, graph, precision) if info else graph_layers(graph, executor, precision)
    est = estimate_layers(layers, device, precision, executor, power_mode)
    if info:
        est.executor = "tensorrt engine (layers.json)"
    return est


def _bundle_engine_info(source) -> list | dict | None:
    """The engine inspector's JSON of the bundle `source` belongs to, when its manifest names one
    built from this very graph."""
    if isinstance(source, onnx.ModelProto):
        return None
    path = Path(source)
    if not (path.parent / "manifest.json").is_file():
        return None
    try:
        manifest = read_json(path.parent / "manifest.json", "bundle manifest")
    except EdgeError:
        return None
    info = (manifest.get("engine") or {}).get("layer_info") if isinstance(manifest, dict) else None
    if not info or manifest.get("model") != path.name or not (path.parent / info).is_file():
        return None
    return read_engine_layers(path.parent / info)


# ----------------------------------------------------------------------------- engine layers


def engine_layers(info: dict | list, graph: Graph, precision: Precision) -> list[Layer]:
    """The layers of a built TensorRT engine (the engine inspector's JSON, `layers.json`): each
    layer's name joins the ONNX nodes it fused with ' + ' (Myelin names a range
    `{ForeignNode[first...last]}`), which give its MACs and bytes; reformatting layers name no
    node and cost their floor."""
    entries = info.get("Layers", []) if isinstance(info, dict) else info
    fusion = FUSIONS.get("tensorrt")
    order = {n.name: k for k, n in enumerate(graph.nodes)}
    layers = []
    for entry in entries:
        name = entry if isinstance(entry, str) else str(entry.get("Name", ""))
        nodes = [graph.nodes[k] for k in _named_nodes(name, order)]
        module = next((graph.owner[n.name] for n in nodes if n.name in graph.owner), WHOLE_MODEL)
        kind = entry.get("LayerType", "engine") if isinstance(entry, dict) else "engine"
        layer = Layer(str(kind), module, [n.name for n in nodes] or [name])
        if nodes:
            _cost(layer, nodes, graph, fusion, precision)
            layer.precision = _engine_precision(entry) or layer.precision
        layer.nodes = [name]  # the engine's name, which its layer profiler reports
        layers.append(layer)
    return layers


def _named_nodes(name: str, order: dict[str, int]) -> list[int]:
    found = []
    for part in name.split(" + "):
        part = part.strip()
        if part.startswith("{ForeignNode[") and "..." in part:
            first, last = part[len("{ForeignNode["):].rstrip("]}").split("...", 1)
            if first in order and last in order:
                found += range(order[first], order[last] + 1)
        elif part in order:
            found.append(order[part])
    return sorted(set(found))


def _engine_precision(entry) -> str | None:
    if not isinstance(entry, dict) or not entry.get("Outputs"):
        return None
    fmt = str(entry["Outputs"][0].get("Format/Datatype", ""))
    return next((p for word, p in (("Int8", "int8"), ("Half", "fp16"), ("Float", "fp32")) if word in fmt), None)


def read_engine_layers(path: Path) -> list:
    return read_json(path, "TensorRT layer-information JSON")

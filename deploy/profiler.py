"""Does this model, at this precision, fit this device's budget, and which module is over?

Per module (the seven named submodules of AT2SELD): parameters, MACs per second of audio (torch's
FLOP counter), weight bytes at the precision, peak live activations, latency measured on a local
backend (median and p95 over warm runs) and the target's roofline estimate
max(2 * MACs / peak ops, bytes / bandwidth). Which latency the budget is checked against follows
from where the measurement ran: a measurement on the target itself (CPU backends for a CPU target,
TensorRT for a GPU target) is checked; otherwise the roofline estimate is, and the report says so.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from at2seld_edge.errors import EdgeError
from at2seld_edge.model import AT2SELD, MODULE_NAMES
from at2seld_edge.onnx_export import module_of_node
from at2seld_edge.registry import Registry
from at2seld_edge.summary import activation_costs, example_audio, summarize
from at2seld_edge.timing import LatencyStats, time_runs
from at2seld_edge.deploy.devices import DeviceSpec, Precision

WHOLE_MODEL = "model"  # the one module of an ONNX file whose nodes carry no module scope
BYTES = {"fp32": 4, "fp16": 2, "int8": 1}


def module_precision(module: str, precision: Precision) -> Precision:
    """INT8 deployments keep the front-end (DFT, log, normalisation) in FP16."""
    return "fp16" if precision == "int8" and module == "frontend" else precision


# ----------------------------------------------------------------------------- measured latency


@dataclass
class Timing:
    """Per-run milliseconds, per module and end to end, from one backend."""

    per_module: dict[str, list[float]]
    end_to_end: list[float]
    notes: list[str] = field(default_factory=list)


@dataclass
class ProfileInput:
    """What a backend measures: the PyTorch model (if any), an ONNX file (if any), the audio."""

    model: AT2SELD | None
    onnx_path: Path | None
    audio: np.ndarray
    precision: Precision
    work_dir: Path


LatencyBackend = Callable[[ProfileInput, int, int], Timing]
LATENCY_BACKENDS: Registry[LatencyBackend] = Registry("backend")


@LATENCY_BACKENDS.register("torch")
def torch_latency(inp: ProfileInput, warmup: int, runs: int) -> Timing:
    """Module hooks around each named submodule; the rest of forward() is the residue."""
    if inp.model is None:
        raise EdgeError("--backend torch needs --config or --checkpoint (an ONNX file has no PyTorch model)")
    model = inp.model.eval()
    audio = torch.from_numpy(inp.audio)
    started: dict[str, float] = {}
    current: dict[str, float] = defaultdict(float)
    handles = []

    def pre(name):
        def hook(*_):
            started[name] = time.perf_counter()
        return hook

    def post(name):
        def hook(*_):
            current[name] += (time.perf_counter() - started.pop(name)) * 1e3
        return hook

    for name in MODULE_NAMES:
        module = getattr(model, name)
        handles.append(module.register_forward_pre_hook(pre(name)))
        handles.append(module.register_forward_hook(post(name)))
    per_module: dict[str, list[float]] = {n: [] for n in MODULE_NAMES}

    def once():
        current.clear()
        with torch.no_grad():
            model(audio)

    try:
        for _ in range(warmup):
            once()
        end_to_end = []
        for _ in range(runs):
            e2e = time_runs(once, 0, 1)[0]
            end_to_end.append(e2e)
            for n in MODULE_NAMES:
                per_module[n].append(current.get(n, 0.0))
    finally:
        for h in handles:
            h.remove()
    return Timing(per_module, end_to_end, [f"torch {torch.__version__} eager on CPU, {torch.get_num_threads()} threads, FP32"])


def attribute_nodes(graph) -> dict[str, str]:
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


@LATENCY_BACKENDS.register("onnxruntime")
def onnxruntime_latency(inp: ProfileInput, warmup: int, runs: int) -> Timing:
    """ONNX Runtime's profiling JSON: each node's kernel time, mapped to a module by its name
    scope in the optimised graph ORT actually ran."""
    import onnx
    import onnxruntime as ort

    if inp.onnx_path is None:
        raise EdgeError("--backend onnxruntime needs an ONNX file")
    opt_path = inp.work_dir / "ort_optimized.onnx"
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.optimized_model_filepath = str(opt_path)
    ort.InferenceSession(str(inp.onnx_path), so, providers=["CPUExecutionProvider"])
    owner = attribute_nodes(onnx.load(str(opt_path)).graph)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.enable_profiling = True
    so.profile_file_prefix = str(inp.work_dir / "ort_profile")
    sess = ort.InferenceSession(str(inp.onnx_path), so, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: inp.audio}
    for _ in range(warmup + runs):
        sess.run(None, feed)
    events = json.loads(Path(sess.end_profiling()).read_text())
    run_spans = [(e["ts"], e["ts"] + e["dur"], e["dur"] / 1e3) for e in events
                 if e.get("cat") == "Session" and e["name"] == "model_run"][warmup:]
    scoped = bool(owner)
    per_module: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(run_spans))
    unscoped_nodes: set[str] = set()
    starts = np.array([s for s, _, _ in run_spans])
    kernels = sorted((e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")),
                     key=lambda e: e["ts"])
    prev_end: dict[int, float] = {}
    for e in kernels:
        k = int(np.searchsorted(starts, e["ts"], side="right")) - 1
        if k < 0 or e["ts"] > run_spans[k][1]:
            continue  # a warm-up run
        # the sequential executor runs one node after another: a node's cost is its kernel plus the
        # dispatch gap since the previous node ended (the run's lead-in and tail stay residue)
        end = e["ts"] + e["dur"]
        cost = (end - prev_end.get(k, e["ts"])) / 1e3
        prev_end[k] = end
        node = e["name"][: -len("_kernel_time")]
        module = owner.get(node) if scoped else WHOLE_MODEL
        if module is None:
            unscoped_nodes.add(node)
            continue  # left in the residue
        per_module[module][k] += cost
    notes = [f"onnxruntime {ort.__version__} CPUExecutionProvider, graph optimisation level ALL, "
             f"{so.intra_op_num_threads or 'default'} intra-op threads; node times from its profiling JSON (kernel + "
             "dispatch gap before it)"]
    if not scoped:
        notes.append(f"{inp.onnx_path}: no node carries a module scope (/backbone/..., /frontend/...): "
                     "profiled as one module")
    if unscoped_nodes:
        notes.append(f"{len(unscoped_nodes)} nodes without a module scope were left in the residue")
    names = list(MODULE_NAMES) if scoped else [WHOLE_MODEL]
    return Timing({n: list(per_module[n]) for n in names}, [d for _, _, d in run_spans], notes)


@LATENCY_BACKENDS.register("tensorrt")
def tensorrt_latency(inp: ProfileInput, warmup: int, runs: int) -> Timing:
    """TensorRT's layer profiler; layer names keep the ONNX node names (fused layers join them
    with ' + '), so the first scoped name decides the module."""
    from at2seld_edge.deploy.engine import TensorRTRunner, build_engine

    if inp.onnx_path is None:
        raise EdgeError("--backend tensorrt needs an ONNX file")
    engine_path = inp.work_dir / f"model.{inp.precision}.engine"
    build_engine(inp.onnx_path, engine_path, inp.precision, samples=inp.audio.shape[-1])
    runner = TensorRTRunner(engine_path, layer_profiling=True)
    for _ in range(warmup):
        runner.run(inp.audio)
    per_module: dict[str, list[float]] = defaultdict(list)
    end_to_end = []
    for _ in range(runs):
        runner.layer_times.clear()
        end_to_end.append(time_runs(lambda: runner.run(inp.audio), 0, 1)[0])
        sums: dict[str, float] = defaultdict(float)
        for layer, ms in runner.layer_times:
            parts = [module_of_node(p.strip()) for p in layer.split(" + ")]
            module = next((m for m in parts if m is not None), None)
            if module is not None:
                sums[module] += ms
        for n in MODULE_NAMES:
            per_module[n].append(sums.get(n, 0.0))
    return Timing(dict(per_module), end_to_end, [f"TensorRT {runner.version}, {inp.precision} engine, layer profiler"])


# ----------------------------------------------------------------------------- the profile


@dataclass
class ModuleProfile:
    module: str
    params: int
    macs_per_second: float
    weight_bytes: int
    peak_activation_bytes: int | None
    latency: LatencyStats | None  # measured on the local backend
    roofline_ms: float | None
    roofline_bound: str | None  # "compute" or "memory"

    @property
    def memory_bytes(self) -> int | None:
        return None if self.peak_activation_bytes is None else self.weight_bytes + self.peak_activation_bytes


@dataclass
class Profile:
    source: str
    config_name: str | None
    target: str
    power_mode: str | None
    precision: Precision
    backend: str
    window_s: float
    modules: list[ModuleProfile]
    total: ModuleProfile
    residue_ms: float | None  # median over runs of (end-to-end minus the sum of the modules)
    latency_checked: str  # "measured" or "roofline"
    notes: list[str]

    def module(self, name: str) -> ModuleProfile:
        return next(m for m in self.modules if m.module == name)

    def checked_latency_ms(self, m: ModuleProfile) -> float | None:
        if self.latency_checked == "measured":
            return None if m.latency is None else m.latency.median_ms
        return m.roofline_ms

    def to_dict(self) -> dict:
        return asdict(self)


def _has_qdq(path: Path) -> bool:
    import onnx

    return any(n.op_type == "QuantizeLinear" for n in onnx.load(str(path), load_external_data=False).graph.node)


def measured_on_target(device: DeviceSpec, backend: str) -> bool:
    return (device.kind == "cpu") == (backend in ("torch", "onnxruntime"))


def roofline(macs: float, nbytes: float, device: DeviceSpec, precision: Precision,
             power_mode: str | None) -> tuple[float, str]:
    compute_s = 2 * macs / device.peak_ops_per_s(precision, power_mode)
    memory_s = nbytes / device.bandwidth_bytes_per_s(power_mode)
    return (max(compute_s, memory_s) * 1e3, "compute" if compute_s >= memory_s else "memory")


def profile(model: AT2SELD | None, onnx_path: Path | None, device: DeviceSpec, precision: Precision, backend: str,
            window_s: float, power_mode: str | None = None, warmup: int = 5, runs: int = 30,
            source: str = "", work_dir: Path | None = None, onnx_costs: dict | None = None) -> Profile:
    """Costs per module from the PyTorch model (or, for a bare ONNX file, from its graph), latency
    from the backend, roofline from the device."""
    measure = LATENCY_BACKENDS.get(backend)
    device.power_mode(power_mode)  # an unknown mode fails before any work
    with tempfile.TemporaryDirectory(prefix="edge-profile-") as tmp:
        work = Path(work_dir or tmp)
        if model is not None:
            audio = example_audio(model, window_s).numpy()
        else:
            audio = (0.1 * np.random.default_rng(0).standard_normal((1, 4, onnx_costs["samples"]))).astype(np.float32)
        timing = measure(ProfileInput(model, onnx_path, audio, precision, work), warmup, runs)
    peak_total = None
    if model is not None:
        rows, peak_total = _model_costs(model, window_s, device, precision, power_mode)
    else:
        rows = [_onnx_row(onnx_costs, window_s, device, precision, power_mode)]
    for row in rows:
        samples = timing.per_module.get(row.module)
        row.latency = LatencyStats.of(samples) if samples else None
    e2e = LatencyStats.of(timing.end_to_end)
    per_run_sum = np.sum([timing.per_module[r.module] for r in rows if timing.per_module.get(r.module)], axis=0)
    residue = float(np.median(np.asarray(timing.end_to_end) - per_run_sum))  # run by run: noise cancels
    total = ModuleProfile(
        "total", sum(r.params for r in rows), sum(r.macs_per_second for r in rows), sum(r.weight_bytes for r in rows),
        None, e2e, sum(r.roofline_ms or 0.0 for r in rows), None,
    )
    if peak_total is not None:
        total.peak_activation_bytes = int(peak_total * BYTES[precision] / 4)
    checked = "measured" if measured_on_target(device, backend) else "roofline"
    notes = list(timing.notes)
    if checked == "roofline":
        notes.append(f"latency is checked against the roofline estimate for {device.name} at {precision} "
                     f"(max(2*MACs / peak, bytes / bandwidth), a lower bound); the {backend} times were measured on "
                     "this machine, not on the target")
    if backend != "tensorrt" and precision != "fp32":
        if backend == "onnxruntime" and onnx_path is not None and _has_qdq(onnx_path):
            notes.append(f"{onnx_path.name} is a Q/DQ model: ONNX Runtime runs its quantized nodes in INT8")
        else:
            notes.append(f"the {backend} run executes FP32 on the CPU; {precision} applies to byte counts and the roofline")
    return Profile(source, model.config.name if model is not None else None, device.name, power_mode, precision,
                   backend, window_s, rows, total, residue, checked, notes)


def _model_costs(model: AT2SELD, window_s: float, device: DeviceSpec, precision: Precision,
                 power_mode: str | None) -> tuple[list[ModuleProfile], int]:
    """Rows per module, and the peak live activation bytes (FP32) of the whole inference."""
    summary = summarize(model, window_s)
    acts, peak_total = activation_costs(model, window_s)
    rows = []
    for cost in summary.modules:
        p = module_precision(cost.module, precision)
        scale = BYTES[p] / 4
        weight_bytes = cost.params * BYTES[p]
        act = acts[cost.module]
        traffic = weight_bytes + 2 * act.written_bytes * scale  # each tensor written once, read once (unfused)
        ms, bound = roofline(cost.macs_per_second * window_s, traffic, device, p, power_mode)
        rows.append(ModuleProfile(cost.module, cost.params, cost.macs_per_second, weight_bytes,
                                  int(act.peak_bytes * scale), None, ms, bound))
    return rows, peak_total


def _onnx_row(costs: dict, window_s: float, device: DeviceSpec, precision: Precision,
              power_mode: str | None) -> ModuleProfile:
    weight_bytes = costs["params"] * BYTES[precision]
    traffic = weight_bytes + 2 * costs["activation_bytes"] * BYTES[precision] / 4
    ms, bound = roofline(costs["macs"], traffic, device, precision, power_mode)
    return ModuleProfile(WHOLE_MODEL, costs["params"], costs["macs"] / window_s, weight_bytes, None, None, ms, bound)


def onnx_graph_costs(path: Path, samples: int) -> dict:
    """Parameters, MACs (Conv, MatMul, Gemm) and produced activation bytes of a bare ONNX file,
    from shape inference at a fixed input length: for files without an at2seld-edge manifest."""
    import onnx
    from onnx import numpy_helper, shape_inference

    proto = onnx.load(str(path))
    graph = proto.graph
    inits = {i.name: numpy_helper.to_array(i).shape for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise EdgeError(f"{path}: expected one audio input, found {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    for d, v in zip(dims, (1, 4, samples)):
        d.ClearField("dim_param")
        d.dim_value = v
    inferred = shape_inference.infer_shapes(proto)
    shapes = dict(inits)
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = tuple(dims)
    macs = 0
    act_bytes = 0
    for n in inferred.graph.node:
        out = shapes.get(n.output[0]) if n.output else None
        if out:
            act_bytes += int(np.prod(out)) * 4
        if n.op_type == "Conv" and out:
            w = shapes.get(n.input[1], ())
            macs += int(np.prod(out)) * int(np.prod(w[1:]))
        elif n.op_type in ("MatMul", "Gemm") and out:
            a = shapes.get(n.input[0], ())
            k = a[-1] if a else 0
            if n.op_type == "Gemm" and any(at.name == "transA" and at.i for at in n.attribute):
                k = a[0]
            macs += int(np.prod(out)) * k
    params = int(sum(np.prod(s) for s in inits.values()))
    return {"params": params, "macs": macs, "activation_bytes": act_bytes, "samples": samples}

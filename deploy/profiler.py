"""Does this model, at this precision, fit this device's budget, and which module is over?

Per module (the seven named submodules of AT2SELD): parameters, MACs per second of audio (torch's
FLOP counter), weight bytes at the precision, peak live activations, latency measured on a local
backend (median and p95 over warm runs: PyTorch on the CPU or on CUDA with events, optionally
replaying CUDA graphs; ONNX Runtime on the CPU or CUDA; TensorRT's layer profiler), and two
figures for the target: the roofline max(2 * MACs / peak ops, bytes / bandwidth), a bound, and
the latency estimate (deploy/latency_model.py: the layers its engine runs, each at least the
device's per-layer floor, plus a fixed cost per inference). The budget is checked against the
measurement where it ran on the target itself (CPU backends for a CPU target; TensorRT, or CUDA
on the target's GPU, for a GPU target), else against the estimate, never the bare roofline; the
report says which.
"""

from __future__ import annotations

import contextlib
import copy
import json
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch

from at2seld_edge.errors import EdgeError, ErrorKind
from at2seld_edge.model import AT2SELD, MODULE_NAMES
from at2seld_edge.onnx_export import module_of_node
from at2seld_edge.registry import Registry
from at2seld_edge.summary import activation_costs, example_audio, summarize
from at2seld_edge.timing import LatencyStats, time_runs
from at2seld_edge.deploy.devices import DeviceSpec, Precision
from at2seld_edge.deploy.latency_model import BYTES, WHOLE_MODEL, Estimate, attribute_nodes, estimate_onnx

__all__ = ["BYTES", "WHOLE_MODEL", "attribute_nodes"]  # re-exported: the profile's callers name them here
ExecDevice = Literal["cpu", "cuda"]


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
    gpu_name: str | None = None  # the CUDA device it ran on; None: the CPU
    kernels: dict[str, int] | None = None  # CUDA kernels per module (torch profiler), "-" outside them


@dataclass(frozen=True)
class Execution:
    """Where a backend runs: the CPU or CUDA, and (torch on CUDA) whether it replays CUDA graphs,
    as a deployed engine does."""

    device: ExecDevice = "cpu"
    cuda_graphs: bool = False


@dataclass
class ProfileInput:
    """What a backend measures: the PyTorch model (if any), an ONNX file (if any), the audio."""

    model: AT2SELD | None
    onnx_path: Path | None
    audio: np.ndarray
    precision: Precision
    work_dir: Path
    execution: Execution = Execution()


LatencyBackend = Callable[[ProfileInput, int, int], Timing]
LATENCY_BACKENDS: Registry[LatencyBackend] = Registry("backend")


@LATENCY_BACKENDS.register("torch")
def torch_latency(inp: ProfileInput, warmup: int, runs: int) -> Timing:
    """Module hooks around each named submodule; the rest of forward() is the residue."""
    if inp.model is None:
        raise EdgeError("--backend torch needs --config or --checkpoint (an ONNX file has no PyTorch model)")
    if inp.execution.device == "cuda":
        return torch_cuda_latency(inp, warmup, runs)
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


# ----------------------------------------------------------------------------- PyTorch on CUDA


def _cuda_event():
    e = torch.cuda.Event(enable_timing=True)
    e.record()
    return e


class _ModuleEvents:
    """Forward hooks that record a CUDA event before and after each named module (a module
    called twice in one forward adds both spans)."""

    def __init__(self, model: torch.nn.Module):
        self.spans: dict[str, list[list]] = defaultdict(list)
        self.handles = []
        for name in MODULE_NAMES:
            module = getattr(model, name)
            self.handles.append(module.register_forward_pre_hook(
                lambda *_, n=name: self.spans[n].append([_cuda_event()])))
            self.handles.append(module.register_forward_hook(lambda *_, n=name: self.spans[n][-1].append(_cuda_event())))

    def take(self) -> dict[str, list[list]]:
        spans, self.spans = self.spans, defaultdict(list)
        return spans

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _timed_runs(forward: Callable[[], object], events: _ModuleEvents, warmup: int, runs: int):
    """Per-module and end-to-end milliseconds from CUDA events, read once after all runs."""
    for _ in range(warmup):
        forward()
    events.take()
    recorded = []
    for _ in range(runs):
        start = _cuda_event()
        forward()
        recorded.append((start, _cuda_event(), events.take()))
    torch.cuda.synchronize()
    per_module = {n: [sum(a.elapsed_time(b) for a, b in spans.get(n, [])) for _, _, spans in recorded]
                  for n in MODULE_NAMES}
    return per_module, [a.elapsed_time(b) for a, b, _ in recorded]


def _capture(fn: Callable[[], object], pool=None):
    """`fn` captured as a CUDA graph after warm-up on a side stream (PyTorch's recipe)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        out = fn()
    return graph, out


class _GraphedForward:
    """A module's forward replaced by the replay of a CUDA graph captured on its first inputs:
    inputs are copied into the captured buffers, outputs are the captured ones."""

    def __init__(self, module: torch.nn.Module, args: tuple, kwargs: dict, pool):
        from torch.utils._pytree import tree_flatten, tree_unflatten

        self.module, self.eager = module, module.forward
        flat, spec = tree_flatten((args, kwargs))
        self.static = [x.clone() if torch.is_tensor(x) else x for x in flat]
        sargs, skwargs = tree_unflatten(self.static, spec)
        self.graph, self.out = _capture(lambda: self.eager(*sargs, **skwargs), pool)

    def __call__(self, *args, **kwargs):
        from torch.utils._pytree import tree_flatten

        for static, x in zip(self.static, tree_flatten((args, kwargs))[0]):
            if torch.is_tensor(static):
                static.copy_(x)
        self.graph.replay()
        return self.out


def _graph_modules(model: torch.nn.Module, forward: Callable[[], object]) -> tuple[list[str], list[str]]:
    """Capture each named module as its own CUDA graph (the glue between them stays eager);
    returns the modules graphed and the notes of those that could not be."""
    inputs: dict[str, tuple] = {}

    def keep(name):
        def hook(_module, args, kwargs):
            inputs.setdefault(name, (args, kwargs))
        return hook

    hooks = [getattr(model, n).register_forward_pre_hook(keep(n), with_kwargs=True) for n in MODULE_NAMES]
    try:
        forward()
    finally:
        for h in hooks:
            h.remove()
    pool, done, notes = torch.cuda.graph_pool_handle(), [], []
    for name in MODULE_NAMES:
        module = getattr(model, name)
        try:
            module.forward = _GraphedForward(module, *inputs[name], pool)
            done.append(name)
        except Exception as e:  # data-dependent control flow, host syncs: the module stays eager
            notes.append(f"{name} could not be captured as a CUDA graph ({type(e).__name__}: {str(e)[:120]}); "
                         "it ran eagerly")
    return done, notes


def _kernels_per_module(model: torch.nn.Module, forward: Callable[[], object]) -> dict[str, int]:
    """CUDA kernels each module launches, from one profiled forward that synchronises at module
    boundaries, so a kernel's GPU timestamp falls inside its module's span."""
    from torch.profiler import ProfilerActivity, profile as torch_profile, record_function

    open_spans: dict[str, object] = {}

    def enter(name):
        def hook(*_):
            torch.cuda.synchronize()
            open_spans[name] = record_function(f"edge::{name}")
            open_spans[name].__enter__()
        return hook

    def leave(name):
        def hook(*_):
            torch.cuda.synchronize()
            open_spans.pop(name).__exit__(None, None, None)
        return hook

    handles = [h for n in MODULE_NAMES for h in (getattr(model, n).register_forward_pre_hook(enter(n)),
                                                getattr(model, n).register_forward_hook(leave(n)))]
    try:
        with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            forward()
            torch.cuda.synchronize()
    finally:
        for h in handles:
            h.remove()
    events = list(prof.events())
    spans = [(e.time_range.start, e.time_range.end, e.name[len("edge::"):]) for e in events
             if e.name.startswith("edge::") and e.device_type.name == "CPU"]
    counts: Counter[str] = Counter()
    for e in events:
        if e.device_type.name == "CUDA" and not e.name.startswith(("Memcpy", "Memset")):
            t = e.time_range.start
            counts[next((n for a, b, n in spans if a <= t <= b), "-")] += 1
    return dict(counts)


@contextlib.contextmanager
def _cuda_numerics(precision: Precision):
    """FP32 runs without TF32 (true FP32); FP16 and INT8 (PyTorch has no INT8 path) run under
    FP16 autocast, which keeps reductions and the front-end's log in FP32 where it should."""
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    try:  # autocast's weight cache must stay off where CUDA graphs are captured (PyTorch's CUDA graphs notes)
        with torch.no_grad(), (torch.autocast("cuda", dtype=torch.float16, cache_enabled=False)
                               if precision != "fp32" else contextlib.nullcontext()):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = tf32


def torch_cuda_latency(inp: ProfileInput, warmup: int, runs: int) -> Timing:
    """CUDA events around each module (eager), or with `cuda_graphs` each module replayed as
    its own CUDA graph and the end-to-end time the replay of one graph of the whole model (what
    a deployed engine does); kernels per module from the torch profiler."""
    if not torch.cuda.is_available():
        raise EdgeError(f"--device cuda: PyTorch {torch.__version__} sees no CUDA GPU here", ErrorKind.USAGE)
    model = copy.deepcopy(inp.model).eval().cuda()
    audio = torch.from_numpy(inp.audio).cuda()
    name = torch.cuda.get_device_name(0)
    notes = [f"torch {torch.__version__} on {name}, CUDA {torch.version.cuda}, "
             f"{'FP32 (no TF32)' if inp.precision == 'fp32' else 'FP16 autocast'}; times from CUDA events"]
    if inp.precision == "int8":
        notes.append("PyTorch has no INT8 CUDA path: the int8 profile ran FP16 autocast")
    with _cuda_numerics(inp.precision):
        forward = lambda: model(audio)  # noqa: E731
        kernels = _kernels_per_module(model, forward)
        whole = _whole_graph_times(model, audio, warmup, runs) if inp.execution.cuda_graphs else None
        if whole is not None:  # after the whole-model capture: no hook may record events inside a capture
            graphed, failed = _graph_modules(model, forward)
            notes += failed + [
                f"end to end: one CUDA graph of the whole model replayed; per module: {len(graphed)} modules each "
                "replayed as its own graph (input copy + replay), the glue between them eager, so the residue is "
                "that glue minus what one graph saves"]
        events = _ModuleEvents(model)
        try:
            per_module, e2e = _timed_runs(forward, events, warmup, runs)
        finally:
            events.remove()
    return Timing(per_module, whole or e2e, notes, name, kernels)


def _whole_graph_times(model, audio, warmup: int, runs: int) -> list[float]:
    """Milliseconds of each replay of one CUDA graph of the whole forward."""
    static = audio.clone()
    whole, _ = _capture(lambda: model(static))
    for _ in range(warmup):
        whole.replay()
    spans = []
    for _ in range(runs):
        start = _cuda_event()
        whole.replay()
        spans.append((start, _cuda_event()))
    torch.cuda.synchronize()
    return [a.elapsed_time(b) for a, b in spans]


@LATENCY_BACKENDS.register("onnxruntime")
def onnxruntime_latency(inp: ProfileInput, warmup: int, runs: int) -> Timing:
    """ONNX Runtime's profiling JSON: each node's kernel time, mapped to a module by its name
    scope in the optimised graph ORT actually ran."""
    import onnx

    from at2seld_edge.onnx_session import ort_session

    if inp.onnx_path is None:
        raise EdgeError("--backend onnxruntime needs an ONNX file")
    device = inp.execution.device
    opt_path = inp.work_dir / "ort_optimized.onnx"
    ort_session(inp.onnx_path, device, optimized_path=opt_path)
    owner = attribute_nodes(onnx.load(str(opt_path)).graph)
    sess = ort_session(inp.onnx_path, device, profile_prefix=str(inp.work_dir / "ort_profile"))
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
    import onnxruntime as ort

    notes = [f"onnxruntime {ort.__version__} {sess.get_providers()[0]}, graph optimisation level ALL, "
             f"{sess.get_session_options().intra_op_num_threads or 'default'} intra-op threads; node times from its "
             "profiling JSON (kernel + dispatch gap before it)"]
    gpu = None
    if inp.execution.device == "cuda":
        from at2seld_edge.deploy.engine import gpu_info

        info = gpu_info()
        gpu = info.name if info is not None else "a CUDA GPU"
        notes.append("with the CUDA provider a node's time is its host-side launch (kernels run asynchronously); "
                     "the end-to-end time is wall time up to the outputs on the host")
    if not scoped:
        notes.append(f"{inp.onnx_path}: no node carries a module scope (/backbone/..., /frontend/...): "
                     "profiled as one module")
    if unscoped_nodes:
        notes.append(f"{len(unscoped_nodes)} nodes without a module scope were left in the residue")
    names = list(MODULE_NAMES) if scoped else [WHOLE_MODEL]
    return Timing({n: list(per_module[n]) for n in names}, [d for _, _, d in run_spans], notes, gpu)


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
    roofline_ms: float | None  # a bound: max(2 * MACs / peak, bytes / bandwidth) on the target
    roofline_bound: str | None  # "compute" or "memory"
    estimate_ms: float | None = None  # the latency model's figure on the target
    layers: int | None = None  # layers the target's executor runs for this module (the estimate's)
    kernels: int | None = None  # CUDA kernels launched (PyTorch on CUDA)

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
    latency_checked: str  # "measured" (on the target) or "estimate"
    notes: list[str]
    estimate: dict | None = None  # the estimate's summary: constants, the file they came from, per module
    measured_on: str = "cpu"  # the CPU, or the name of the GPU the backend ran on

    def module(self, name: str) -> ModuleProfile:
        return next(m for m in self.modules if m.module == name)

    def checked_latency_ms(self, m: ModuleProfile) -> float | None:
        if self.latency_checked == "measured":
            return None if m.latency is None else m.latency.median_ms
        return m.estimate_ms

    def to_dict(self) -> dict:
        return asdict(self)


def _has_qdq(path: Path) -> bool:
    import onnx

    return any(n.op_type == "QuantizeLinear" for n in onnx.load(str(path), load_external_data=False).graph.node)


def measured_on_target(device: DeviceSpec, backend: str, gpu_name: str | None = None) -> bool:
    """A CPU backend on the CPU measures a CPU target; TensorRT measures a GPU target (it runs
    on the target's GPU); PyTorch or ONNX Runtime on CUDA do where the GPU is the target's."""
    if device.kind == "cpu":
        return backend in ("torch", "onnxruntime") and gpu_name is None
    if backend == "tensorrt":
        return True
    return gpu_name is not None and device.gpu is not None and any(t.lower() in gpu_name.lower()
                                                                   for t in device.gpu.match)


def roofline(macs: float, nbytes: float, device: DeviceSpec, precision: Precision,
             power_mode: str | None) -> tuple[float, str]:
    compute_s = 2 * macs / device.peak_ops_per_s(precision, power_mode)
    memory_s = nbytes / device.bandwidth_bytes_per_s(power_mode)
    return (max(compute_s, memory_s) * 1e3, "compute" if compute_s >= memory_s else "memory")


def profile(model: AT2SELD | None, onnx_path: Path | None, device: DeviceSpec, precision: Precision, backend: str,
            window_s: float, power_mode: str | None = None, warmup: int = 5, runs: int = 30,
            source: str = "", work_dir: Path | None = None, onnx_costs: dict | None = None,
            execution: Execution = Execution()) -> Profile:
    """Costs per module from the PyTorch model (or, for a bare ONNX file, from its graph), latency
    from the backend, roofline and estimate from the device."""
    measure = LATENCY_BACKENDS.get(backend)
    device.power_mode(power_mode)  # an unknown mode fails before any work
    with tempfile.TemporaryDirectory(prefix="edge-profile-") as tmp:
        work = Path(work_dir or tmp)
        if model is not None:
            audio = example_audio(model, window_s).numpy()
        else:
            audio = (0.1 * np.random.default_rng(0).standard_normal((1, 4, onnx_costs["samples"]))).astype(np.float32)
        timing = measure(ProfileInput(model, onnx_path, audio, precision, work, execution), warmup, runs)
        graph = onnx_path if onnx_path is not None else trace_onnx(model, audio, work / "estimate.onnx")
        est = estimate_onnx(graph, device, precision, power_mode, samples=audio.shape[-1])
    peak_total = None
    if model is not None:
        rows, peak_total = _model_costs(model, window_s, device, precision, power_mode)
    else:
        rows = [_onnx_row(onnx_costs, window_s, device, precision, power_mode)]
    for row in rows:
        _fill_row(row, timing, est)
    e2e = LatencyStats.of(timing.end_to_end)
    per_run_sum = np.sum([timing.per_module[r.module] for r in rows if timing.per_module.get(r.module)], axis=0)
    residue = float(np.median(np.asarray(timing.end_to_end) - per_run_sum))  # run by run: noise cancels
    total = ModuleProfile(
        "total", sum(r.params for r in rows), sum(r.macs_per_second for r in rows), sum(r.weight_bytes for r in rows),
        None, e2e, sum(r.roofline_ms or 0.0 for r in rows), None, est.total_ms, len(est.layers),
        sum(timing.kernels.values()) if timing.kernels else None,
    )
    if peak_total is not None:
        total.peak_activation_bytes = int(peak_total * BYTES[precision] / 4)
    checked = "measured" if measured_on_target(device, backend, timing.gpu_name) else "estimate"
    notes = list(timing.notes) + _notes(checked, device, precision, backend, onnx_path, timing, est)
    return Profile(source, model.config.name if model is not None else None, device.name, power_mode, precision,
                   backend, window_s, rows, total, residue, checked, notes, est.summary(), timing.gpu_name or "cpu")


def _fill_row(row: ModuleProfile, timing: Timing, est: Estimate) -> None:
    samples = timing.per_module.get(row.module)
    row.latency = LatencyStats.of(samples) if samples else None
    mine = est.module(row.module)
    row.estimate_ms, row.layers = (mine.ms, mine.layers) if mine is not None else (0.0, 0)
    if timing.kernels is not None:
        row.kernels = timing.kernels.get(row.module, 0)


def _notes(checked: str, device: DeviceSpec, precision: Precision, backend: str, onnx_path: Path | None,
           timing: Timing, est: Estimate) -> list[str]:
    where = timing.gpu_name or "this machine's CPU"
    notes = [est.describe()]
    if checked == "estimate":
        notes.append(f"latency is checked against the estimate for {device.name} at {precision} (not the roofline, "
                     f"a lower bound); the {backend} times were measured on {where}, not on the target")
    else:
        notes.append(f"latency is checked against the {backend} measurement on {where}, the target itself")
    if backend != "tensorrt" and precision != "fp32" and timing.gpu_name is None:
        if backend == "onnxruntime" and onnx_path is not None and _has_qdq(onnx_path):
            notes.append(f"{onnx_path.name} is a Q/DQ model: ONNX Runtime runs its quantized nodes in INT8")
        else:
            notes.append(f"the {backend} run executes FP32 on the CPU; {precision} applies to byte counts, the "
                         "roofline and the estimate")
    return notes


def trace_onnx(model: AT2SELD, audio: np.ndarray, path: Path) -> Path:
    """The model's graph for an estimate when there is no exported one: a plain trace (no ORT
    parity check, no onnxslim, which takes half a minute on cnn14); the estimate folds its
    shape arithmetic itself."""
    from at2seld_edge.model import OUTPUT_NAMES
    from at2seld_edge.onnx_export import INPUT_NAME, OutputsOnly

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(OutputsOnly(model.eval()), (torch.from_numpy(audio),), str(path), dynamo=False,
                          opset_version=17, input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                          do_constant_folding=True)
    return path


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

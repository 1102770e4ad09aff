"""`edge profile` as the library resolves it: which model (a config, a checkpoint or an ONNX
file), at which window and sample rate, measured where, checked against which budget, written
where. The CLI fills a `ProfileRequest` and prints the `ProfileOutcome`."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from pydantic import Field, model_validator

from at2seld_edge.checkpoint import load_model, provenance
from at2seld_edge.errors import EdgeError, ErrorKind
from at2seld_edge.io import check_output_dir
from at2seld_edge.options import ExecutionDevice, ProfilePrecision, StageOptions
from at2seld_edge.deploy.budgets import Budget, load_budget
from at2seld_edge.deploy.devices import DeviceSpec, load_device
from at2seld_edge.deploy.profiler import LATENCY_BACKENDS, Execution, Profile, onnx_graph_costs, profile
from at2seld_edge.deploy.report import Check, check_budget, violation_error, write_report

ASSUMED_SAMPLE_RATE = 24000  # a bare ONNX file says nothing of its audio


class ProfileRequest(StageOptions):
    target: str
    budget: str
    config: str | None = None
    checkpoint: Path | None = None
    onnx: Path | None = None
    precision: ProfilePrecision = "fp16"
    backend: Literal["torch", "onnxruntime", "tensorrt"] | None = None  # None: torch, or onnxruntime for --onnx
    iterations: int = Field(30, ge=2)
    warmup: int = Field(5, ge=0)
    out: Path | None = None  # None: reports/profile-SOURCE-DEVICE-PRECISION
    device: ExecutionDevice = "cpu"  # where torch or onnxruntime run (auto: cuda where there is one)
    cuda_graphs: bool = False  # torch on cuda: replay CUDA graphs, as a deployed engine does

    @model_validator(mode="after")
    def _one_source(self) -> "ProfileRequest":
        if sum(x is not None for x in (self.config, self.checkpoint, self.onnx)) > 1:
            raise ValueError("give one of --config, --checkpoint, --onnx")
        if self.onnx is not None and self.backend == "torch":
            raise ValueError("--backend torch profiles a PyTorch model; an --onnx file runs in onnxruntime or tensorrt")
        if self.cuda_graphs and (self.backend not in (None, "torch") or self.device == "cpu"):
            raise ValueError("--cuda-graphs replays CUDA graphs of the PyTorch model: it needs --backend torch "
                             "--device cuda")
        return self

    def execution(self) -> Execution:
        device = self.device
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.cuda_graphs and device == "cpu":
            raise EdgeError("--cuda-graphs: --device auto found no CUDA GPU here", ErrorKind.USAGE)
        return Execution(device, self.cuda_graphs)


@dataclass
class ProfileOutcome:
    profile: Profile
    device: DeviceSpec
    budget: Budget
    checks: list[Check]
    written: list[Path]
    violation: EdgeError | None
    notes: list[str] = field(default_factory=list)


@dataclass
class _Source:
    model: object | None  # AT2SELD
    onnx_path: Path | None
    onnx_costs: dict | None
    window_s: float
    manifest: dict
    name: str
    notes: list[str] = field(default_factory=list)


def run_profile(req: ProfileRequest, status: Callable[[str], None] = lambda m: None) -> ProfileOutcome:
    device, bud = load_device(req.target), load_budget(req.budget)
    backend = req.backend or ("onnxruntime" if req.onnx is not None else "torch")
    LATENCY_BACKENDS.get(backend)
    power_mode, notes = bud.power_mode, []
    if power_mode is not None and power_mode not in {m.name for m in device.power_modes}:
        notes.append(f"budget {bud.name} names power mode {power_mode}, which {device.name} does not have: "
                     "the roofline and the estimate use its maximum clocks")
        power_mode = None
    with tempfile.TemporaryDirectory(prefix="edge-profile-") as tmp:
        src = _resolve_source(req, backend, bud.window_s, Path(tmp), status)
        out = req.out or Path("reports") / f"profile-{src.name}-{device.name}-{req.precision}"
        check_output_dir(out, is_ours=lambda p: (p / "report.json").is_file(), what="profile report folder")
        status(f"profiling on {backend} ({req.warmup} warm-up + {req.iterations} timed runs) ...")
        prof = profile(src.model, src.onnx_path, device, req.precision, backend, src.window_s, power_mode,
                       req.warmup, req.iterations, str(req.onnx or req.checkpoint or req.config or src.name),
                       onnx_costs=src.onnx_costs, execution=req.execution())
    prof.notes += notes + src.notes
    if abs(src.window_s - bud.window_s) > 1e-9:
        prof.notes.append(f"profiled at {src.window_s:g} s (the graph's static input); budget {bud.name} is written "
                          f"for {bud.window_s:g} s")
    checks = check_budget(prof, bud)
    manifest = {**provenance(), "artifact": "profile_report", "target": device.name, "budget": bud.name, **src.manifest}
    written = write_report(prof, bud, checks, out, manifest)
    return ProfileOutcome(prof, device, bud, checks, written, violation_error(checks, bud))


def _resolve_source(req: ProfileRequest, backend: str, window_s: float, tmp: Path, status) -> _Source:
    if req.onnx is not None:
        return _onnx_source(req.onnx, window_s)
    model, manifest = load_model(req.config, req.checkpoint)
    onnx_path = None
    if backend in ("onnxruntime", "tensorrt"):
        from at2seld_edge.onnx_export import export_onnx

        onnx_path = tmp / "model.onnx"
        status("exporting to ONNX ...")
        export_onnx(model, onnx_path, seconds=window_s)
    name = Path(req.checkpoint).stem if req.checkpoint is not None else model.config.name
    return _Source(model, onnx_path, None, window_s, manifest, name)


def _onnx_source(path: Path, window_s: float) -> _Source:
    """An ONNX file: its at2seld-edge manifest rebuilds the model (and gives the sample rate);
    a bare file is one module with graph-counted MACs at an assumed 24 kHz. A static time axis
    sets the window."""
    from at2seld_edge.onnx_export import MANIFEST_KEY, read_manifest

    if not path.is_file():
        raise EdgeError(f"{path}: ONNX file not found")
    try:
        meta = read_manifest(path)
    except EdgeError:
        meta = None
    except Exception as e:
        raise EdgeError(f"{path}: not a readable ONNX file ({type(e).__name__}: {e})") from None
    static = _static_samples(path)
    if meta is not None:
        from at2seld_edge.config import config_from_dict
        from at2seld_edge.model import build_model

        model = build_model(config_from_dict(meta["config"], f"{path} ({MANIFEST_KEY})"))
        rate = model.config.audio.sample_rate
        if static is not None:
            window_s = static / rate
        manifest = {"onnx_manifest": {k: meta[k] for k in ("config_name", "config_fingerprint") if k in meta}}
        return _Source(model, path, None, window_s, manifest, path.stem)
    samples = static if static is not None else round(window_s * ASSUMED_SAMPLE_RATE)
    costs = onnx_graph_costs(path, samples)
    note = (f"{path}: no at2seld-edge manifest: MACs counted from the graph (Conv, MatMul, Gemm) at {samples} "
            f"samples ({ASSUMED_SAMPLE_RATE} Hz assumed); no activation memory")
    return _Source(None, path, costs, samples / ASSUMED_SAMPLE_RATE, {}, path.stem, [note])


def _static_samples(path: Path) -> int | None:
    """The audio input's time axis if the graph fixes it, else None."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise EdgeError(f"{path}: expected one audio input, found {len(inputs)}", ErrorKind.INPUT)
    dims = inputs[0].type.tensor_type.shape.dim
    return dims[-1].dim_value if dims and dims[-1].HasField("dim_value") else None

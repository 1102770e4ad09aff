"""What `edge build` is asked for (`BuildOptions`, filled from flags of the same names) and what
it resolves that into once, before any work (`BuildPlan`): the device and budget, the checkpoint
(an edge compress folder lends its own, its float modules and its calibration), the window, the
TensorRT version to lint for and its opset, the output folder."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

from pydantic import Field, field_validator, model_validator

from at2seld_edge.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint
from at2seld_edge.compress.pipeline import read_compressed
from at2seld_edge.compress.quantize import DEFAULT_CALIBRATION_CLIPS, DEFAULT_CALIBRATION_METHOD, MIN_CALIBRATION_CLIPS
from at2seld_edge.errors import EdgeError, ErrorKind
from at2seld_edge.limits import MAX_OPSET, MAX_WINDOW_S, MIN_OPSET
from at2seld_edge.model import AT2SELD, MODULE_NAMES
from at2seld_edge.options import CalibMethod, Int8Limits, Precision
from at2seld_edge.deploy.budgets import Budget, load_budget
from at2seld_edge.deploy.bundle import Window
from at2seld_edge.deploy.devices import DeviceSpec, load_device
from at2seld_edge.deploy.engine import tensorrt_available
from at2seld_edge.deploy.lint import rules_for

Say = Callable[[str], None]
DEFAULT_CHECKPOINT = "at2seld-nano-synth.pt"  # at2seld_edge/weights/: see the README, "Embedded default"
DEFAULT_CAUSAL_CHECKPOINT = "at2seld-nano-causal-synth.pt"  # the same for --streaming (at2seld-nano-causal)


class BuildOptions(Int8Limits):
    """What `edge build` is asked for (the CLI fills it from flags of the same names)."""

    target: str
    checkpoint: Path | None = None
    config: str | None = None  # an untrained model of this preset (sizing before training)
    compressed: Path | None = None  # an `edge compress` folder: its checkpoint, INT8 module choice and calibration
    precision: Precision = "fp16"
    budget: str = "realtime-100ms"
    dla: bool = False
    seconds: float | None = Field(None, gt=0, le=MAX_WINDOW_S)  # static input of this length; None: dynamic time axis
    out: Path | None = None
    data: Path | None = None  # a dataset spec for INT8 calibration; None: the compression run's, else synthetic
    calib_clips: int | None = Field(None, ge=MIN_CALIBRATION_CLIPS)  # None: the compression run's, else the default
    calib_method: CalibMethod | None = None  # None: the compression run's, else percentile
    tensorrt: str | None = None  # TensorRT version to lint (and build) for; None: the target's newest
    opset: int | None = Field(None, ge=MIN_OPSET, le=MAX_OPSET)  # what torch.onnx exports and the model needs
    implicit_int8: bool = False  # TensorRT 8.x: engine from FP32 + calibration cache
    build_engine: bool = True  # when TensorRT and a GPU are here
    keep_float: tuple[str, ...] = ()  # modules INT8 leaves in floating point (the front-end always)
    streaming: bool = False  # a streaming bundle: a causal model (default: the embedded causal checkpoint)

    @field_validator("keep_float")
    @classmethod
    def _modules(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [m for m in v if m not in MODULE_NAMES]
        if unknown:
            raise ValueError(f"unknown module(s) {', '.join(unknown)} (modules: {', '.join(MODULE_NAMES)})")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "BuildOptions":
        if sum(x is not None for x in (self.checkpoint, self.config, self.compressed)) > 1:
            raise ValueError("give one of --checkpoint, --config, --compressed")
        if self.implicit_int8 and self.precision not in ("int8", "best"):
            raise ValueError("--implicit-int8 goes with --precision int8 or best")
        if self.dla and self.precision == "fp32":
            raise ValueError("--dla: DLA runs FP16 or INT8; choose --precision fp16, int8 or best")
        if self.dla and self.seconds is None:
            raise ValueError("--dla: DLA needs static shapes; give --seconds")
        return self


@dataclass(frozen=True)
class BuildPlan:
    """Everything a build needs, resolved once; the steps read it and nothing else."""

    options: BuildOptions  # with the compression run's calibration filled in
    device: DeviceSpec
    budget: Budget
    checkpoint: Checkpoint
    source: str  # the checkpoint path, or "untrained PRESET"
    source_sha256: str | None  # the checkpoint file's, hashed once here; None for an untrained model
    keep_float: frozenset[str]  # modules INT8 leaves float
    window: Window
    tensorrt: str  # the TensorRT version the graphs are linted for
    opset: int
    out: Path

    @property
    def precision(self) -> str:
        return self.options.precision

    @property
    def int8(self) -> bool:
        return self.precision in ("int8", "best")

    @property
    def window_s(self) -> float:
        return self.window.samples / self.checkpoint.config.audio.sample_rate

    def model(self) -> AT2SELD:
        return model_from_checkpoint(self.checkpoint).eval()


def default_checkpoint(streaming: bool = False) -> Path:
    name = DEFAULT_CAUSAL_CHECKPOINT if streaming else DEFAULT_CHECKPOINT
    path = Path(str(resources.files("at2seld_edge") / "weights" / name))
    if not path.is_file():
        raise EdgeError(f"{path}: the embedded default checkpoint is missing from this installation; give --checkpoint")
    return path


def target_tensorrt(device: DeviceSpec, wanted: str | None) -> str:
    """The TensorRT to lint for: the one asked for, else the one here (whose engine this build
    makes), else the target's newest JetPack's."""
    if wanted is not None:
        return wanted
    if tensorrt_available():
        import tensorrt as trt

        return trt.__version__
    if device.jetpack:
        return device.jetpack[-1].tensorrt
    return "10.3"  # desktop GPUs and CPUs: the oldest TensorRT 10 the lint knows as current


def plan_build(opts: BuildOptions, say: Say = print) -> BuildPlan:
    device, budget = load_device(opts.target), load_budget(opts.budget)
    if opts.dla and device.dla.cores == 0:
        raise EdgeError(f"--dla: {device.name} has no DLA cores (the Orin NX and AGX modules do)", ErrorKind.USAGE)
    keep_float = {"frontend", *opts.keep_float}  # the DSP front-end always stays float
    opts = with_compression(opts, keep_float, say)
    ckpt, source = _checkpoint(opts)
    cfg = ckpt.config
    if opts.streaming and not cfg.causal:
        raise EdgeError(f"--streaming: {source} is {cfg.name}, which is not causal (smoother.causal: false); give a "
                        "causal checkpoint, or none for the embedded causal default", ErrorKind.USAGE)
    hop = cfg.audio.label_hop_samples
    window_s = opts.seconds if opts.seconds is not None else budget.window_s
    samples = hop * round(window_s / cfg.audio.label_hop_s)
    if samples <= 0 or abs(samples - window_s * cfg.audio.sample_rate) > 0.5:
        raise EdgeError(f"--seconds {window_s:g}: a whole number of {cfg.audio.label_hop_s:g} s label hops", ErrorKind.USAGE)
    dynamic = opts.seconds is None
    window = Window(dynamic_time=dynamic, samples=samples, min_samples=hop if dynamic else samples,
                    max_samples=hop * round(MAX_WINDOW_S / cfg.audio.label_hop_s) if dynamic else samples)
    trt = target_tensorrt(device, opts.tensorrt)
    opset = opts.opset or (16 if "LayerNormalization" in rules_for(trt).unsupported else 17)
    label = cfg.name + ("-untrained" if opts.config is not None else "")
    out = Path(opts.out or Path("bundles") / f"{label}-{device.name}-{opts.precision}")
    return BuildPlan(opts, device, budget, ckpt, source, ckpt.sha256(), frozenset(keep_float), window, trt, opset, out)


def with_compression(opts: BuildOptions, keep_float: set[str], say: Say) -> BuildOptions:
    """An `edge compress` folder fills what the user left open: its last checkpoint, the modules
    its sensitivity analysis kept float, and its calibration (dataset, clip count, method), so
    the build quantizes as the compression run did and judges the result the same way."""
    if opts.compressed is None:
        return opts.model_copy(update={"calib_method": opts.calib_method or DEFAULT_CALIBRATION_METHOD,
                                       "calib_clips": opts.calib_clips or DEFAULT_CALIBRATION_CLIPS})
    c = read_compressed(opts.compressed)
    data = opts.data or (c.data if c.data is not None and c.data.is_file() else None)
    if c.float_modules is not None:
        keep_float |= set(c.float_modules)
        say(f"    from {opts.compressed}: {c.checkpoint.name}; its sensitivity analysis keeps "
            f"{', '.join(sorted(keep_float))} in floating point"
            + (f"; calibration on {data} as there" if data is not None and opts.data is None else ""))
    return opts.model_copy(update={"checkpoint": c.checkpoint, "data": data,
                                   "calib_method": opts.calib_method or c.calib_method,
                                   "calib_clips": opts.calib_clips or c.calib_clips})


def _checkpoint(opts: BuildOptions) -> tuple[Checkpoint, str]:
    if opts.config is not None:
        from at2seld_edge.config import load_config
        from at2seld_edge.model import build_model

        cfg = load_config(opts.config)
        n = cfg.num_classes
        return Checkpoint(cfg, build_model(cfg).state_dict(), [f"class_{i}" for i in range(n)], [0.5] * n), \
            f"untrained {opts.config}"
    path = opts.checkpoint or default_checkpoint(opts.streaming)
    return load_checkpoint(path), str(path)

"""`edge build`: from a checkpoint to a deployment bundle for one target device.

Steps, each timed and reported: load, BatchNorm fusion, export (front-end in the graph, checked
against PyTorch in ONNX Runtime), INT8 through the compression stage's calibrator and Q/DQ
quantizer when asked, streaming graphs for causal models, the TensorRT compatibility lint for the
target's TensorRT, golden inputs/outputs and their numerical check in ONNX Runtime, the profile
against the budget, the equivalent `trtexec` command, and the engine itself where TensorRT and a GPU exist.
The bundle is assembled in a hidden folder beside OUT and moved onto OUT only when every step passed,
under a lock on OUT that a concurrent build to the same OUT finds taken.
"""

from __future__ import annotations

import shlex
import shutil
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
from pydantic import Field, field_validator, model_validator

from at2seld_edge.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint, provenance
from at2seld_edge.compress.fuse import fold_batchnorm
from at2seld_edge.compress.pipeline import read_compressed
from at2seld_edge.compress.quantize import (DEFAULT_CALIBRATION_CLIPS, DEFAULT_CALIBRATION_METHOD,
                                            MIN_CALIBRATION_CLIPS, calibrate, calibration_segments,
                                            quantizable_nodes, quantize_qdq, write_tensorrt_cache)
from at2seld_edge.data.synth import synthetic_scenes
from at2seld_edge.errors import EdgeError, ErrorKind
from at2seld_edge.evaluation.agreement import GOLDEN_INPUTS, golden_inputs, tolerances
from at2seld_edge.model import MODULE_NAMES
from at2seld_edge.options import CalibMethod, Int8Limits, Precision
from at2seld_edge.io import atomic_write_text, check_output_dir, output_lock, work_dir_beside
from at2seld_edge.onnx_export import INPUT_NAME, export_onnx, export_stream_graphs
from at2seld_edge.deploy.budgets import load_budget
from at2seld_edge.deploy.bundle import load_bundle, publish, write_manifest
from at2seld_edge.deploy.devices import DeviceSpec, load_device
from at2seld_edge.deploy.engine import build_engine, gpu_info, tensorrt_available
from at2seld_edge.deploy.lint import lint_onnx, rules_for
from at2seld_edge.deploy.trt_check import tensorrt_steps
from at2seld_edge.deploy.verify import verify, write_golden

Say = Callable[[str], None]
DEFAULT_CHECKPOINT = "at2seld-nano-synth.pt"  # at2seld_edge/weights/: see the README, "Embedded default"
MAX_SECONDS = 60.0  # the longest window a dynamic bundle takes in one inference
TRTEXEC_SCRIPT = "trtexec.sh"  # the equivalent trtexec command, for inspection on the device
CALIB_SEED = 20261


def default_checkpoint() -> Path:
    path = Path(str(resources.files("at2seld_edge") / "weights" / DEFAULT_CHECKPOINT))
    if not path.is_file():
        raise EdgeError(f"{path}: the embedded default checkpoint is missing from this installation; give --checkpoint")
    return path


class BuildOptions(Int8Limits):
    """What `edge build` is asked for (the CLI fills it from flags of the same names)."""

    target: str
    checkpoint: Path | None = None
    config: str | None = None  # an untrained model of this preset (sizing before training)
    compressed: Path | None = None  # an `edge compress` folder: its checkpoint, INT8 module choice and calibration
    precision: Precision = "fp16"
    budget: str = "realtime-100ms"
    dla: bool = False
    seconds: float | None = Field(None, gt=0)  # static input of this length; None: dynamic time axis
    out: Path | None = None
    data: Path | None = None  # a dataset spec for INT8 calibration; None: the compression run's, else synthetic
    calib_clips: int | None = Field(None, ge=MIN_CALIBRATION_CLIPS)  # None: the compression run's, else the default
    calib_method: CalibMethod | None = None  # None: the compression run's, else percentile
    tensorrt: str | None = None  # TensorRT version to lint (and build) for; None: the target's newest
    opset: int | None = Field(None, ge=14)
    implicit_int8: bool = False  # TensorRT 8.x: engine from FP32 + calibration cache
    build_engine: bool = True  # when TensorRT and a GPU are here
    keep_float: tuple[str, ...] = ()  # modules INT8 leaves in floating point (the front-end always)

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


@dataclass
class BuildResult:
    out: Path
    manifest: object
    lint: object
    verify: object
    checks: list
    notes: list[str] = field(default_factory=list)


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


def _untrained(config: str) -> Checkpoint:
    from at2seld_edge.config import load_config
    from at2seld_edge.model import build_model

    cfg = load_config(config)
    n = cfg.num_classes
    return Checkpoint(cfg, build_model(cfg).state_dict(), [f"class_{i}" for i in range(n)], [0.5] * n)


def _validate(opts: BuildOptions, device: DeviceSpec) -> None:
    if opts.dla and device.dla.cores == 0:
        raise EdgeError(f"--dla: {device.name} has no DLA cores (the Orin NX and AGX modules do)", ErrorKind.USAGE)


def _with_compression(opts: BuildOptions, keep_float: set[str], say: Say) -> BuildOptions:
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


def build(opts: BuildOptions, say: Say = print) -> BuildResult:
    device = load_device(opts.target)
    budget = load_budget(opts.budget)
    keep_float = {"frontend", *opts.keep_float}  # the DSP front-end always stays float
    opts = _with_compression(opts, keep_float, say)
    _validate(opts, device)
    trt_version = target_tensorrt(device, opts.tensorrt)
    rules = rules_for(trt_version)
    opset = opts.opset or (16 if "LayerNormalization" in rules.unsupported else 17)
    steps: list[dict] = []
    notes: list[str] = []

    def step(name: str, fn, summary: Callable[[object], str] = lambda r: ""):
        t0 = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - t0
        text = summary(result)
        steps.append({"step": name, "seconds": round(seconds, 2), "result": text})
        say(f"[{len(steps)}] {name}: {text} ({seconds:.1f} s)")
        return result

    if opts.config is not None:
        ckpt_path = f"untrained {opts.config}"
        ckpt = step("load", lambda: _untrained(opts.config),
                    lambda c: f"{c.config.name} with untrained weights and 0.5 thresholds: for sizing and "
                              "latency only, its outputs mean nothing")
    else:
        ckpt_path = opts.checkpoint or default_checkpoint()
        ckpt = step("load", lambda: load_checkpoint(ckpt_path),
                    lambda c: f"{Path(ckpt_path).name}: {c.config.name}, {len(c.classes)} classes"
                              + (" (the embedded default)" if opts.checkpoint is None else ""))
    model = model_from_checkpoint(ckpt).eval()
    cfg = model.config
    hop = cfg.audio.label_hop_samples
    window_s = opts.seconds if opts.seconds is not None else budget.window_s
    samples = hop * round(window_s / cfg.audio.label_hop_s)
    if samples <= 0 or abs(samples - window_s * cfg.audio.sample_rate) > 0.5:
        raise EdgeError(f"--seconds {window_s:g}: a whole number of {cfg.audio.label_hop_s:g} s label hops", ErrorKind.USAGE)
    dynamic = opts.seconds is None
    max_samples = hop * round(MAX_SECONDS / cfg.audio.label_hop_s) if dynamic else samples
    min_samples = hop if dynamic else samples
    label = cfg.name + ("-untrained" if opts.config is not None else "")
    out = Path(opts.out or Path("bundles") / f"{label}-{device.name}-{opts.precision}")
    check_output_dir(out, is_ours=lambda p: (p / "manifest.json").is_file(), what="bundle")
    with output_lock(out, "edge build"):
        for stale in out.parent.glob(f".{out.name}.partial-*"):  # left by killed builds: nothing worth resuming
            shutil.rmtree(stale, ignore_errors=True)
        work = work_dir_beside(out)
        try:
            manifest, lint, report, checks = _build(opts, device, budget, trt_version, opset, ckpt, ckpt_path, model,
                                                    samples, min_samples, max_samples, dynamic, work, out, step,
                                                    notes, say, keep_float)
            write_manifest(work, {**manifest, "steps": steps})
            publish(work, out)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        bundle = load_bundle(out)  # the integrity check a device will make
    return BuildResult(out, bundle.manifest, lint, report, checks, notes)


def _build(opts, device, budget, trt_version, opset, ckpt, ckpt_path, model, samples, min_samples, max_samples,
           dynamic, work: Path, out: Path, step, notes, say, keep_float: set[str]) -> tuple[dict, object, object, list]:
    """The steps after loading; returns the manifest (less its steps) and the lint, verify and budget results."""
    cfg = model.config
    precision = opts.precision
    fused, folds = step("fusion", lambda: fold_batchnorm(model), lambda r: f"{r[1]} BatchNorm layers folded into convs")
    ckpt_sha = ckpt.sha256()
    extra = {"source_checkpoint": str(ckpt_path), "source_checkpoint_sha256": ckpt_sha, "classes": ckpt.classes,
             "batchnorm_folded": folds}
    fp32_name = "model.fp32.onnx"
    step("export", lambda: export_onnx(fused, work / fp32_name, seconds=samples / cfg.audio.sample_rate,
                                             dynamic_time=dynamic, opset=opset, manifest_extra=extra),
               lambda r: f"opset {opset}, {'dynamic' if dynamic else 'static'} time; ONNX Runtime vs PyTorch max abs "
                         f"diff {max(r.max_abs_diff.values()):.2e}")
    model_name, calib_name, ranges = fp32_name, None, None
    if precision in ("int8", "best"):
        seg = max(samples, 40 * cfg.audio.label_hop_samples) if dynamic else samples
        model_name, calib_name, _, ranges = step("int8", lambda: _quantize(opts, work / fp32_name, seg, work, keep_float),
                                         lambda r: f"Q/DQ graph {r[0]} (float: {', '.join(sorted(keep_float))}), ranges "
                                                   f"({opts.calib_method}) from {r[2]}, TensorRT calibration cache {r[1]}")
        if opts.implicit_int8:
            notes.append("--implicit-int8: the engine is built from the FP32 graph with the calibration cache "
                         "(TensorRT 8.x); the Q/DQ graph stays in the bundle for ONNX Runtime")
    stream = None
    if cfg.smoother.causal:
        se = step("streaming graphs", lambda: export_stream_graphs(fused, work, opset),
                  lambda s: f"encoder context {s.context_samples} / lookahead {s.lookahead_samples} samples, "
                            f"GRU state {s.state_shape}")
        stream = {**asdict(se), "hop_samples": cfg.audio.label_hop_samples}
    lint_precision = "int8" if precision in ("int8", "best") else precision
    engine_graph = fp32_name if opts.implicit_int8 else model_name
    lint = step("tensorrt lint", lambda: lint_onnx(work / engine_graph, trt_version, opts.dla, lint_precision),
                lambda r: r.summary())
    lint.write(work / "lint.json")
    atomic_write_text(work / "lint.md", lint.markdown())
    lint.raise_on_errors()
    script = _trtexec_script(opts, device, engine_graph, calib_name, samples, min_samples, max_samples, dynamic)
    atomic_write_text(work / TRTEXEC_SCRIPT, script)
    (work / TRTEXEC_SCRIPT).chmod(0o755)

    golden_audio = golden_inputs(samples / cfg.audio.sample_rate)
    step("golden", lambda: write_golden(model, golden_audio, work / "golden.npz"),
         lambda r: f"{GOLDEN_INPUTS} synthetic FOA scenes of {samples} samples through the PyTorch FP32 model")
    manifest = _manifest(opts, device, trt_version, ckpt, ckpt_path, ckpt_sha, cfg, model_name, samples, min_samples,
                         max_samples, dynamic, stream, calib_name, precision)
    write_manifest(work, manifest)  # provisional, so the runtime can verify the unfinished bundle

    from at2seld_edge.deploy.runtime import SeldRuntime

    report = step("numerical check", lambda: verify(SeldRuntime(work, backend="onnxruntime")),
                  lambda r: f"ONNX Runtime vs golden: {'PASS' if r.passed else 'FAIL'} "
                            f"(min SED agreement {min(x.decision_agreement for x in r.rows):.2%}, "
                            f"max |logit diff| {max(x.max_abs_logit for x in r.rows):.2e})")
    atomic_write_text(work / "verify.md", report.markdown())
    if not report.passed:
        hint = ""
        if precision in ("int8", "best"):
            hint = "; " + _int8_diagnosis(model, work / fp32_name, work, keep_float, ranges, manifest)
        raise EdgeError(f"{work / model_name}: ONNX Runtime does not reproduce the golden outputs within the "
                        f"{precision} tolerances: " + "; ".join(report.failures) + hint, ErrorKind.CHECK)
    tensorrt_steps(work, manifest, device, step, keep_engine=opts.build_engine)

    checks = step("profile", lambda: _profile(fused, work / model_name, device, budget, precision, work,
                                              samples / cfg.audio.sample_rate),
                  lambda c: f"budget {budget.name}: "
                            + ("PASS" if all(x.passed for x in c) else f"{sum(not x.passed for x in c)} over"))
    manifest["profile_report"] = "profile/report.md"

    gpu = gpu_info() if tensorrt_available() else None
    if "engine" in manifest:
        pass  # TensorRT-RTX built it for the target's compute capability (tensorrt parse and build)
    elif not opts.build_engine:
        say("TensorRT engine: skipped (--no-engine); run `edge build` on the device to build and record it")
    elif not tensorrt_available() or gpu is None:
        say(f"TensorRT engine: {'TensorRT is not installed' if not tensorrt_available() else 'no CUDA GPU'} here; "
            "the bundle is complete without it: run `edge build` on the device to build and record one")
    else:
        manifest["engine"] = step("engine", lambda: _engine(opts, device, work, out, engine_graph, calib_name,
                                                            precision, samples, min_samples, max_samples, gpu),
                                  lambda e: f"TensorRT {e['tensorrt_version']} on {e['gpu_name']}")
    return manifest, lint, report, checks


def _quantize(opts: BuildOptions, fp32: Path, segment_samples: int, work: Path,
              keep_float: set[str]) -> tuple[str, str, str]:
    if opts.data is not None:
        from at2seld_edge.data.dataset import read_audio
        from at2seld_edge.data.spec import load_dataset

        ds = load_dataset(opts.data)
        clips = ds.clips("train")
        rng = np.random.default_rng(0)  # the clips edge compress picks for the same count
        chosen = sorted(rng.choice(len(clips), size=min(opts.calib_clips, len(clips)), replace=False))
        audios = [read_audio(clips[i]) for i in chosen]
        source = f"{len(audios)} training clips of {ds.spec.name}"
    else:
        audios = synthetic_scenes(opts.calib_clips, 10.0, CALIB_SEED)
        source = f"{len(audios)} synthetic FOA scenes"
    segments = calibration_segments(audios, segment_samples)
    ranges = calibrate(fp32, segments, opts.calib_method)
    write_tensorrt_cache(ranges, work / "calibration.cache")
    groups = quantizable_nodes(fp32)
    nodes = [n for m, ns in groups.items() if m not in keep_float for n in ns]
    quantize_qdq(fp32, work / "model.int8.onnx", ranges, nodes)
    return "model.int8.onnx", "calibration.cache", source, ranges


def _int8_diagnosis(model, fp32: Path, work: Path, keep_float: set[str], ranges, manifest: dict) -> str:
    """Which modules cost the golden check most: each quantized alone (the build's ranges) and
    judged as the check judges, worst first; and what to try."""
    from at2seld_edge.compress.quantize import agreement_judge
    from at2seld_edge.deploy.verify import read_golden

    golden = read_golden(work / manifest["golden"])
    judge = agreement_judge(model, list(golden["audio"]), np.asarray(manifest["thresholds"]), manifest["tolerances"])
    scores = []
    for module, nodes in quantizable_nodes(fp32).items():
        if module in keep_float or not nodes:
            continue
        path = quantize_qdq(fp32, work / f".alone-{module}.onnx", ranges, nodes)
        scores.append((len(judge(path)), module))
        path.unlink()
    worst = [m for n, m in sorted(scores, reverse=True) if n]
    if not worst:
        return ("no module fails alone: their errors add up; try --calib-method percentile, or calibrate on your "
                "own clips with --data")
    return (f"modules most responsible: {', '.join(worst)}; try --keep-float {worst[0]}, calibration on your own "
            "clips (--data), or --calib-method percentile")


def _manifest(opts, device, trt_version, ckpt, ckpt_path, ckpt_sha, cfg, model_name, samples, min_samples, max_samples,
              dynamic, stream, calib_name, precision) -> dict:
    t = "frames" if dynamic else samples // cfg.audio.label_hop_samples
    n, c = cfg.heads.n_tracks, cfg.num_classes
    prov = provenance()
    return {
        "toolkit_version": prov["toolkit_version"], "created_utc": prov["created_utc"],
        "target": device.name, "target_tensorrt": trt_version, "precision": precision, "model": model_name,
        "inputs": [{"name": INPUT_NAME, "shape": [1, 4, "samples" if dynamic else samples], "dtype": "float32"}],
        "outputs": [{"name": "sed_logits", "shape": [1, t, n, c], "dtype": "float32"},
                    {"name": "doa", "shape": [1, t, n, c, 3], "dtype": "float32"}],
        "sample_rate": cfg.audio.sample_rate, "channel_order": "ACN (W, Y, Z, X), SN3D",
        "label_hop_s": cfg.audio.label_hop_s, "label_hop_samples": cfg.audio.label_hop_samples,
        "window": {"dynamic_time": dynamic, "samples": samples, "min_samples": min_samples, "max_samples": max_samples},
        "causal": cfg.smoother.causal, "stream": stream,
        "class_names": list(ckpt.classes), "thresholds": [float(x) for x in ckpt.thresholds],
        "config_name": cfg.name, "config_fingerprint": cfg.fingerprint(),
        "source_checkpoint": str(ckpt_path), "source_checkpoint_sha256": ckpt_sha,
        "calibration_cache": calib_name, "golden": "golden.npz", "tolerances": tolerances(precision, opts.int8_tolerance),
        "build_script": TRTEXEC_SCRIPT,
    }


def _profile(fused, onnx_path: Path, device, budget, precision: str, work: Path, window_s: float) -> list:
    """The budget's checks at the bundle's window (the budget's own, unless --seconds set another)."""
    from at2seld_edge.deploy.profiler import profile
    from at2seld_edge.deploy.report import check_budget, write_report

    prec = {"best": "int8"}.get(precision, precision)
    power_mode = budget.power_mode if budget.power_mode in {m.name for m in device.power_modes} else None
    prof = profile(fused, onnx_path, device, prec, "onnxruntime", window_s, power_mode, warmup=3, runs=20,
                   source=onnx_path.name)
    if abs(window_s - budget.window_s) > 1e-9:
        prof.notes.append(f"profiled at the bundle's {window_s:g} s window; budget {budget.name} is written for "
                          f"{budget.window_s:g} s")
    checks = check_budget(prof, budget)
    write_report(prof, budget, checks, work / "profile", {"artifact": "profile_report", "target": device.name,
                                                          "budget": budget.name, "bundle_model": onnx_path.name})
    return checks


def workspace_bytes(device: DeviceSpec) -> int:
    """A quarter of the device's memory (shared with the CPU on a Jetson), at most 4 GiB."""
    return int(min(device.memory.size_gb * (1 << 30) / 4, 4 << 30))


def _shape(samples: int) -> str:
    return f"{INPUT_NAME}:1x4x{samples}"


def _trtexec_script(opts, device, graph: str, calib: str | None, samples, min_samples, max_samples, dynamic) -> str:
    """The same build as a `trtexec` command, for TensorRT's own timing and layer inspection on the
    device. Its engine goes beside the bundle, never into it: a bundle holds only what its manifest
    lists, and the runtimes load an engine only with the TensorRT version and GPU `edge build`
    records for it."""
    args = ["$TRTEXEC", f"--onnx={graph}", '--saveEngine="$OUT/model.engine"']
    if dynamic:
        args += [f"--minShapes={_shape(min_samples)}", f"--optShapes={_shape(samples)}", f"--maxShapes={_shape(max_samples)}"]
    args += {"fp32": ["--noTF32"], "fp16": ["--fp16"], "int8": ["--int8"], "best": ["--fp16", "--int8"]}[opts.precision]
    if opts.implicit_int8 and calib:
        args.append(f"--calib={calib}")
    args += [f"--memPoolSize=workspace:{workspace_bytes(device) >> 20}", '--timingCacheFile="$OUT/timing.cache"',
             "--profilingVerbosity=detailed", '--exportLayerInfo="$OUT/layers.json"', '--exportProfile="$OUT/profile.json"']
    if opts.dla:
        args += ["--useDLACore=0", "--allowGPUFallback"]
    body = " \\\n  ".join(a if "$" in a else shlex.quote(a) for a in args)
    return (
        "#!/bin/sh\n"
        f"# trtexec with the settings `edge build` uses for {device.name}: TensorRT's own timings and layer\n"
        "# information on the device. It writes into $OUT (default: a folder beside this bundle), never into\n"
        "# the bundle. The runtimes (edge run/verify/bench, the C++ library) load an engine only when\n"
        "# `edge build` built it and recorded its TensorRT version and GPU: run `edge build` on the device.\n"
        "set -e\n"
        'cd "$(dirname "$0")"\n'
        'TRTEXEC="${TRTEXEC:-/usr/src/tensorrt/bin/trtexec}"\n'
        'OUT="${OUT:-../$(basename "$PWD").trtexec}"\n'
        'mkdir -p "$OUT"\n'
        f"{body}\n"
    )


def _engine(opts, device, work: Path, out: Path, graph: str, calib, precision, samples, min_samples, max_samples,
            gpu) -> dict:
    import tensorrt as trt

    cache = out.with_name(out.name + ".timing.cache")  # beside the bundle: rebuilds replace the bundle, not this
    build_engine(work / graph, work / "model.engine", precision, samples, max_samples, min_samples=min_samples,
                 workspace_bytes=workspace_bytes(device), dla_core=0 if opts.dla else None,
                 timing_cache=cache,
                 calibration_cache=work / calib if (opts.implicit_int8 and calib) else None,
                 layer_info=work / "layers.json")
    return {"file": "model.engine", "tensorrt_version": trt.__version__, "gpu_name": gpu.name,
            "compute_capability": gpu.compute_capability, "dla_core": 0 if opts.dla else None,
            "layer_info": "layers.json", "timing_cache": f"../{cache.name}"}


"""`edge build`: from a checkpoint to a deployment bundle for one target device.

The options resolve once into a `BuildPlan` (deploy/build_plan.py); `Builder` then runs the
steps, each timed, reported and recorded in the manifest: load, BatchNorm fusion, export
(front-end in the graph, checked against PyTorch in ONNX Runtime), INT8 through the compression
stage's calibration and Q/DQ quantizer when asked, streaming graphs for causal models, the
TensorRT lint for the target's TensorRT, golden inputs/outputs and their numerical check in ONNX
Runtime, the TensorRT parse and build of every graph (deploy/trt_check.py), the profile against
the budget, the equivalent `trtexec` command, and the engine itself where TensorRT and a GPU
exist. The bundle is assembled in a hidden folder beside OUT and moved onto OUT only when every
step passed, under a lock on OUT that a concurrent build to the same OUT finds taken.
"""

from __future__ import annotations

import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from at2seld_edge.checkpoint import provenance
from at2seld_edge.compress.fuse import fold_batchnorm
from at2seld_edge.compress.quantize import (agreement_judgement, calibrate_with_cache, pick_calibration_audio,
                                            quantize_judged)
from at2seld_edge.data.synth import synthetic_scenes
from at2seld_edge.errors import EdgeError, ErrorKind
from at2seld_edge.evaluation.agreement import GOLDEN_INPUTS, golden_inputs, tolerances
from at2seld_edge.options import CALIBRATION_METHODS
from at2seld_edge.io import atomic_write_text, check_output_dir, output_lock, work_dir_beside
from at2seld_edge.onnx_export import INPUT_NAME, export_onnx
from at2seld_edge.deploy.build_plan import (BuildOptions, BuildPlan, default_checkpoint, plan_build,  # noqa: F401
                                            target_tensorrt, with_compression)
from at2seld_edge.deploy.bundle import BundleManifest, load_bundle, publish, write_manifest
from at2seld_edge.deploy.devices import DeviceSpec
from at2seld_edge.deploy.engine import build_engine, gpu_info, tensorrt_available
from at2seld_edge.deploy.lint import LintReport, lint_onnx
from at2seld_edge.deploy.streaming import stream_graph
from at2seld_edge.deploy.trt_check import record_engine_build, tensorrt_steps
from at2seld_edge.deploy.verify import VerifyReport, verify, write_golden

Say = Callable[[str], None]
TRTEXEC_SCRIPT = "trtexec.sh"  # the equivalent trtexec command, for inspection on the device
FP32_GRAPH, INT8_GRAPH, CALIBRATION_CACHE, GOLDEN = "model.fp32.onnx", "model.int8.onnx", "calibration.cache", "golden.npz"
CALIB_SEED = 20261


@dataclass
class BuildResult:
    out: Path
    manifest: BundleManifest
    lint: LintReport
    verify: VerifyReport
    checks: list
    notes: list[str] = field(default_factory=list)


def build(opts: BuildOptions, say: Say = print) -> BuildResult:
    plan = plan_build(opts, say)
    out = plan.out
    check_output_dir(out, is_ours=lambda p: (p / "manifest.json").is_file(), what="bundle", may_be_bundle=True)
    with output_lock(out, "edge build"):
        for stale in out.parent.glob(f".{out.name}.partial-*"):  # left by killed builds: nothing worth resuming
            shutil.rmtree(stale, ignore_errors=True)
        work = work_dir_beside(out)
        try:
            builder = Builder(plan, work, say)
            builder.run()
            write_manifest(work, builder.manifest.model_copy(update={"steps": builder.steps}))
            publish(work, out)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        bundle = load_bundle(out)  # the integrity check a device will make
    return BuildResult(out, bundle.manifest, builder.lint, builder.report, builder.checks, builder.notes)


class Builder:
    """The steps of one build, in `work`; each reads the plan and the artifacts before it."""

    def __init__(self, plan: BuildPlan, work: Path, say: Say):
        self.plan, self.work, self.say = plan, work, say
        self.steps: list[dict] = []
        self.notes: list[str] = []
        self.graph, self.calibration, self.ranges, self.stream = FP32_GRAPH, None, None, None

    def step(self, name: str, fn, summary: Callable[[object], str] = lambda r: ""):
        t0 = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - t0
        text = summary(result)
        self.steps.append({"step": name, "status": "ran", "seconds": round(seconds, 2), "result": text})
        self.say(f"[{len(self.steps)}] {name}: {text} ({seconds:.1f} s)")
        return result

    def skip(self, name: str, reason: str) -> None:
        """A step that could not run here: listed, in the output, the manifest and the notes."""
        self.steps.append({"step": name, "status": "skipped", "seconds": 0.0, "result": reason})
        self.say(f"[{len(self.steps)}] {name}: skipped: {reason}")
        self.notes.append(f"{name} skipped: {reason}")

    def run(self) -> None:
        plan = self.plan
        ckpt = plan.checkpoint
        self.model = self.step("load", plan.model, lambda m: (
            f"{m.config.name} with untrained weights and 0.5 thresholds: for sizing and latency only, its outputs "
            "mean nothing" if plan.options.config is not None else
            f"{Path(plan.source).name}: {m.config.name}, {len(ckpt.classes)} classes"
            + (" (the embedded default)" if plan.options.checkpoint is None and plan.options.compressed is None
               else "")))
        self.fused, folds = self.step("fusion", lambda: fold_batchnorm(self.model),
                                      lambda r: f"{r[1]} BatchNorm layers folded into convs")
        self.export(folds)
        if plan.int8:
            self.int8()
        self.lint_graph()
        if self.model.config.smoother.causal:
            self.stream_graphs()
        self.golden()
        self.numerical_check()
        updates = self.manifest.model_dump(mode="json")
        tensorrt_steps(self.work, updates, plan.device, self.step, self.skip,
                       keep_engine=plan.options.build_engine,
                       engine_builds=self.engine_graph if self.builds_engine() else None)
        self.manifest = BundleManifest.model_validate(updates)
        self.checks = self.step("profile", self.profile, lambda c: f"budget {plan.budget.name}: " + (
            "PASS" if all(x.passed for x in c) else f"{sum(not x.passed for x in c)} over"))
        self.manifest = self.manifest.model_copy(update={"profile_report": "profile/report.md"})
        self.engine()

    def export(self, folds: int) -> None:
        plan, ckpt = self.plan, self.plan.checkpoint
        extra = {"source_checkpoint": plan.source, "source_checkpoint_sha256": plan.source_sha256,
                 "classes": ckpt.classes, "batchnorm_folded": folds}
        w = plan.window
        self.step("export", lambda: export_onnx(self.fused, self.work / FP32_GRAPH, seconds=plan.window_s,
                                                dynamic_time=w.dynamic_time, opset=plan.opset, manifest_extra=extra),
                  lambda r: f"opset {plan.opset}, {'dynamic' if w.dynamic_time else 'static'} time; ONNX Runtime vs "
                            f"PyTorch max abs diff {max(r.max_abs_diff.values()):.2e}")

    def int8(self) -> None:
        opts = self.plan.options
        self.step("int8", self.quantize, lambda r: f"Q/DQ graph {INT8_GRAPH} (float: {', '.join(r[1])}), ranges "
                  f"({opts.calib_method}) from {r[0]}, TensorRT calibration cache {CALIBRATION_CACHE}")
        self.graph, self.calibration = INT8_GRAPH, CALIBRATION_CACHE
        if opts.implicit_int8:
            self.notes.append("--implicit-int8: the engine is built from the FP32 graph with the calibration cache "
                              "(TensorRT 8.x); the Q/DQ graph stays in the bundle for ONNX Runtime")

    def quantize(self) -> tuple[str, list[str]]:
        """Calibrate (the compression stage's sequence) and quantize all but the float modules;
        where that fails the golden check's judgement, also keep float the modules that fail it
        alone, as edge compress does. Returns (calibration source, float modules)."""
        plan, opts, cfg = self.plan, self.plan.options, self.model.config
        if opts.data is not None:
            from at2seld_edge.data.spec import load_dataset

            ds = load_dataset(opts.data)
            audios = pick_calibration_audio(ds.clips("train"), opts.calib_clips)
            source = f"{len(audios)} training clips of {ds.spec.name}"
        else:
            audios = synthetic_scenes(opts.calib_clips, 10.0, CALIB_SEED)
            source = f"{len(audios)} synthetic FOA scenes"
        w = plan.window
        samples = max(w.samples, 40 * cfg.audio.label_hop_samples) if w.dynamic_time else w.samples
        fp32 = self.work / FP32_GRAPH
        self.ranges = calibrate_with_cache(fp32, audios, samples, opts.calib_method, self.work / CALIBRATION_CACHE)
        judgement = agreement_judgement(self.model, golden_inputs(plan.window_s),  # the golden check's judgement
                                        np.asarray(plan.checkpoint.thresholds),
                                        tolerances(plan.precision, opts.int8_tolerance))
        try:
            mixed = quantize_judged(fp32, self.work / INT8_GRAPH, self.ranges, judgement, plan.keep_float, self.work,
                                    lambda m: self.say(f"    {m}"))
        except EdgeError as e:
            raise EdgeError(f"{self.work / INT8_GRAPH}: {e}; {int8_hint(opts)}", ErrorKind.CHECK) from None
        added = [r for r in mixed.rows if not r.quantized]
        if added:
            self.notes.append("INT8 kept in floating point what fails the golden check's judgement: " + "; ".join(
                f"{r.module} ({r.agreement or 'dropped from the combined graph'})" for r in added))
        return source, mixed.float_modules

    def stream_graphs(self) -> None:
        self.stream = self.step("stream graph", lambda: stream_graph(self.fused, self.work, self.plan.tensorrt,
                                                                     self.plan.opset), lambda r: r.summary).manifest

    @property
    def engine_graph(self) -> str:
        return FP32_GRAPH if self.plan.options.implicit_int8 else self.graph

    def builds_engine(self) -> bool:
        """Whether the engine step builds a TensorRT engine here: asked to, with TensorRT and a GPU."""
        return self.plan.options.build_engine and tensorrt_available() and gpu_info() is not None

    def lint_graph(self) -> None:
        plan = self.plan
        precision = "int8" if plan.int8 else plan.precision
        self.lint = lint = self.step("tensorrt lint", lambda: lint_onnx(self.work / self.engine_graph, plan.tensorrt,
                                                                       plan.options.dla, precision),
                                     lambda r: r.summary())
        lint.write(self.work / "lint.json")
        atomic_write_text(self.work / "lint.md", lint.markdown())
        lint.raise_on_errors()
        atomic_write_text(self.work / TRTEXEC_SCRIPT, trtexec_script(plan, self.engine_graph, self.calibration))
        (self.work / TRTEXEC_SCRIPT).chmod(0o755)

    def golden(self) -> None:
        w = self.plan.window
        self.step("golden", lambda: write_golden(self.model, golden_inputs(self.plan.window_s), self.work / GOLDEN),
                  lambda r: f"{GOLDEN_INPUTS} synthetic FOA scenes of {w.samples} samples through the PyTorch FP32 model")
        self.manifest = bundle_manifest(self.plan, self.graph, self.calibration, self.stream)
        write_manifest(self.work, self.manifest)  # provisional, so the runtime can verify the unfinished bundle

    def numerical_check(self) -> None:
        from at2seld_edge.deploy.runtime import SeldRuntime

        plan = self.plan
        self.report = report = self.step(
            "numerical check", lambda: verify(SeldRuntime(self.work, backend="onnxruntime")),
            lambda r: f"ONNX Runtime vs golden: {'PASS' if r.passed else 'FAIL'} (min SED agreement "
                      f"{min(x.decision_agreement for x in r.rows):.2%}, max |logit diff| "
                      f"{max(x.max_abs_logit for x in r.rows):.2e})")
        atomic_write_text(self.work / "verify.md", report.markdown())
        if not report.passed:
            hint = "; " + int8_hint(plan.options) if plan.int8 else ""
            raise EdgeError(f"{self.work / self.graph}: ONNX Runtime does not reproduce the golden outputs within the "
                            f"{plan.precision} tolerances: " + "; ".join(report.failures) + hint, ErrorKind.CHECK)

    def profile(self) -> list:
        """The budget's checks at the bundle's window (the budget's own, unless --seconds set another)."""
        from at2seld_edge.deploy.latency_model import layer_precision
        from at2seld_edge.deploy.profiler import profile
        from at2seld_edge.deploy.report import check_budget, write_report

        plan, onnx_path = self.plan, self.work / self.graph
        device, budget, window_s = plan.device, plan.budget, plan.window_s
        precision = layer_precision(plan.precision)
        power_mode = budget.power_mode if budget.power_mode in {m.name for m in device.power_modes} else None
        prof = profile(self.fused, onnx_path, device, precision, "onnxruntime", window_s, power_mode, warmup=3,
                       runs=20, source=onnx_path.name)
        if abs(window_s - budget.window_s) > 1e-9:
            prof.notes.append(f"profiled at the bundle's {window_s:g} s window; budget {budget.name} is written for "
                              f"{budget.window_s:g} s")
        checks = check_budget(prof, budget)
        write_report(prof, budget, checks, self.work / "profile", {"artifact": "profile_report", "target": device.name,
                                                                   "budget": budget.name, "bundle_model": onnx_path.name})
        return checks

    def engine(self) -> None:
        opts = self.plan.options
        if self.manifest.engine is not None:
            return  # TensorRT-RTX built it for the target's compute capability (tensorrt parse and build)
        gpu = gpu_info() if opts.build_engine and tensorrt_available() else None  # CUDA is asked only when needed
        if not opts.build_engine:
            self.say("TensorRT engine: skipped (--no-engine); run `edge build` on the device to build and record it")
        elif not tensorrt_available() or gpu is None:
            self.say(f"TensorRT engine: {'TensorRT is not installed' if not tensorrt_available() else 'no CUDA GPU'} "
                     "here; the bundle is complete without it: run `edge build` on the device to build and record one")
        else:
            t0 = time.perf_counter()
            engine = self.step("engine", lambda: _engine(self.plan, self.work, self.engine_graph, self.calibration, gpu),
                               lambda e: f"TensorRT {e['tensorrt_version']} on {e['gpu_name']}")
            updates = {**self.manifest.model_dump(mode="json"), "engine": engine}
            # the graph the TensorRT check only parsed (tensorrt_steps' engine_builds) was built here
            record_engine_build(self.work, updates, self.engine_graph, time.perf_counter() - t0,
                                (self.work / engine["file"]).stat().st_size)
            self.manifest = BundleManifest.model_validate(updates)


def int8_hint(opts: BuildOptions) -> str:
    """What else to try when INT8 fails its judgement: options other than the ones this build used
    (it has already kept float every module that fails alone)."""
    tries = ["--calib-method " + " or ".join(m for m in CALIBRATION_METHODS if m != opts.calib_method)]
    if opts.data is None:
        tries.append("calibration on your own clips (--data)")
    tries += [f"more calibration clips (--calib-clips {2 * opts.calib_clips})", "looser --int8-* limits",
              "or --precision fp16"]
    return "try " + ", ".join(tries)


def bundle_manifest(plan: BuildPlan, graph: str, calibration: str | None, stream: dict | None) -> BundleManifest:
    """What the bundle holds and promises, from the plan (files are hashed when it is written)."""
    cfg, ckpt, w = plan.checkpoint.config, plan.checkpoint, plan.window
    t = "frames" if w.dynamic_time else w.samples // cfg.audio.label_hop_samples
    n, c = cfg.heads.n_tracks, cfg.num_classes
    prov = provenance()
    return BundleManifest.model_validate({
        "toolkit_version": prov["toolkit_version"], "created_utc": prov["created_utc"],
        "target": plan.device.name, "target_tensorrt": plan.tensorrt, "precision": plan.precision, "model": graph,
        "inputs": [{"name": INPUT_NAME, "shape": [1, 4, "samples" if w.dynamic_time else w.samples], "dtype": "float32"}],
        "outputs": [{"name": "sed_logits", "shape": [1, t, n, c], "dtype": "float32"},
                    {"name": "doa", "shape": [1, t, n, c, 3], "dtype": "float32"}],
        "sample_rate": cfg.audio.sample_rate, "channel_order": "ACN (W, Y, Z, X), SN3D",
        "label_hop_s": cfg.audio.label_hop_s, "label_hop_samples": cfg.audio.label_hop_samples,
        "window": w.model_dump(), "causal": cfg.smoother.causal, "stream": stream,
        "class_names": list(ckpt.classes), "thresholds": [float(x) for x in ckpt.thresholds],
        "config_name": cfg.name, "config_fingerprint": cfg.fingerprint(),
        "source_checkpoint": plan.source, "source_checkpoint_sha256": plan.source_sha256,
        "calibration_cache": calibration, "golden": GOLDEN,
        "tolerances": tolerances(plan.precision, plan.options.int8_tolerance), "build_script": TRTEXEC_SCRIPT,
    })


def workspace_bytes(device: DeviceSpec) -> int:
    """A quarter of the device's memory (shared with the CPU on a Jetson), at most 4 GiB."""
    return int(min(device.memory.size_gb * (1 << 30) / 4, 4 << 30))


def _shape(samples: int) -> str:
    return f"{INPUT_NAME}:1x4x{samples}"


def trtexec_script(plan: BuildPlan, graph: str, calib: str | None) -> str:
    """The same build as a `trtexec` command, for TensorRT's own timing and layer inspection on the
    device. Its engine goes beside the bundle, never into it: a bundle holds only what its manifest
    lists, and the runtimes load an engine only with the TensorRT version and GPU `edge build`
    records for it."""
    opts, device, w = plan.options, plan.device, plan.window
    args = ["$TRTEXEC", f"--onnx={graph}", '--saveEngine="$OUT/model.engine"']
    if w.dynamic_time:
        args += [f"--minShapes={_shape(w.min_samples)}", f"--optShapes={_shape(w.samples)}",
                 f"--maxShapes={_shape(w.max_samples)}"]
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


def _engine(plan: BuildPlan, work: Path, graph: str, calib: str | None, gpu) -> dict:
    import tensorrt as trt

    opts, w = plan.options, plan.window
    cache = plan.out.with_name(plan.out.name + ".timing.cache")  # beside the bundle: rebuilds replace the bundle
    build_engine(work / graph, work / "model.engine", plan.precision, w.samples, w.max_samples,
                 min_samples=w.min_samples, workspace_bytes=workspace_bytes(plan.device),
                 dla_core=0 if opts.dla else None, timing_cache=cache,
                 calibration_cache=work / calib if (opts.implicit_int8 and calib) else None,
                 layer_info=work / "layers.json")
    return {"file": "model.engine", "tensorrt_version": trt.__version__, "gpu_name": gpu.name,
            "compute_capability": gpu.compute_capability, "dla_core": 0 if opts.dla else None,
            "layer_info": "layers.json", "timing_cache": f"../{cache.name}"}

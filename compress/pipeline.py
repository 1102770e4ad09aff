"""`edge compress`: checkpoint in, smaller and faster model out, with its accuracy loss measured.

Stages, each from the previous one's artifact: prune the backbone (passive filter pruning) ->
fine-tune with the training code -> fold BatchNorm and export the FP32 ONNX -> calibrate and
quantize to Q/DQ INT8 with the mixed-precision fallback. Every variant is scored on the test
split and timed in ONNX Runtime on CPU in the same run, so the report compares like with like.

Work happens in `OUT.partial/`; a killed run resumes there (fine-tuning included) and `OUT`
appears only when everything is written, so the output folder is never half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from pydantic import Field, ValidationError, field_validator, model_validator

from at2seld_edge.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint, provenance, save_checkpoint
from at2seld_edge.compress.artifact import (MANIFEST, CompressionManifest, read_compression_manifest,
                                            write_compression_manifest)
from at2seld_edge.compress.fuse import fold_batchnorm
from at2seld_edge.compress.report import write_report
from at2seld_edge.compress.prune import IMPORTANCE, PruneResult, passive_filter_prune, pruning_plan
from at2seld_edge.compress.quantize import (
    DEFAULT_CALIBRATION_CLIPS, DEFAULT_CALIBRATION_METHOD, MIN_CALIBRATION_CLIPS, agreement_judge, calibrate_with_cache,
    mixed_precision, pick_calibration_audio, quantize_except, seld_judgement,
)
from at2seld_edge.data.dataset import read_audio
from at2seld_edge.data.spec import Dataset
from at2seld_edge.errors import EdgeError
from at2seld_edge.evaluation.agreement import golden_inputs
from at2seld_edge.devices_torch import TorchDevice
from at2seld_edge.options import CalibMethod, Int8Limits, flag_errors
from at2seld_edge.evaluation.evaluate import predict_clips, score_outputs
from at2seld_edge.io import atomic_path, atomic_write_text, check_output_dir, output_lock, sha256_file
from at2seld_edge.model import AT2SELD
from at2seld_edge.onnx_export import OnnxRuntimeModel, export_onnx
from at2seld_edge.summary import summarize
from at2seld_edge.timing import LatencyStats, Spread, time_interleaved

Say = Callable[[str], None]
TIMING_ROUNDS, TIMING_RUNS = 5, 5  # every graph: rounds x runs, interleaved with the others


class CompressOptions(Int8Limits):
    prune_ratio: float | None = Field(None, gt=0, lt=1)
    target_macs: float | None = Field(None, gt=0)  # MACs per second of audio, whole model ("150M" accepted)
    prune_method: str = "passive"
    finetune_epochs: int = Field(0, ge=0)
    int8: bool = False
    calib_clips: int = Field(DEFAULT_CALIBRATION_CLIPS, ge=MIN_CALIBRATION_CLIPS)
    calib_method: CalibMethod = DEFAULT_CALIBRATION_METHOD
    tolerance: float = Field(0.01, ge=0)  # largest SELD-score increase an INT8 module may cause
    calib_seconds: float = Field(4.0, gt=0)
    device: TorchDevice = "auto"  # where fine-tuning runs (not part of a run's identity: resume anywhere)

    @field_validator("target_macs", mode="before")
    @classmethod
    def _macs(cls, v):
        return parse_macs(v) if isinstance(v, str) else v

    @field_validator("prune_method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        return IMPORTANCE.require(v)

    @model_validator(mode="after")
    def _one_pruning(self) -> "CompressOptions":
        if self.prune_ratio is not None and self.target_macs is not None:
            raise ValueError("give --prune-ratio or --target-macs, not both")
        return self


@dataclass
class Variant:
    name: str
    onnx: str
    params: int
    backbone_macs_per_second: float
    macs_per_second: float
    size_bytes: int
    metrics: dict[str, float]
    latency: LatencyStats | None = None  # every timed run pooled
    notes: str = ""
    sha256: str = ""  # of the ONNX file
    same_graph_as: str | None = None  # an earlier variant whose graph is byte-identical: timed once, shared
    round_ms: Spread | None = None  # the median of each timing round, over the rounds
    speedup: Spread | None = None  # the original's round median over this one's, round by round

    def timing_cells(self) -> tuple[str, str]:
        """(median ms, speed-up) as the tables print them: the median over the rounds, their range."""
        return self.round_ms.text(), self.speedup.text(unit="x")


@dataclass
class CompressReport:
    manifest: dict
    options: dict
    variants: list[Variant] = field(default_factory=list)
    sensitivity: list[dict] = field(default_factory=list)
    float_modules: list[str] = field(default_factory=list)
    pruned_channels: list[int] | None = None


def parse_macs(text: str) -> float:
    """`250M`, `1.5G`, `3e8` -> MACs."""
    m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([kKmMgG]?)\s*", text)
    if not m:
        raise EdgeError(f"--target-macs {text!r}: expected a number with an optional k/M/G suffix")
    try:
        value = float(m.group(1))
    except ValueError:
        raise EdgeError(f"--target-macs {text!r}: not a number") from None
    return value * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2).lower()]


def validate(ckpt: Checkpoint, model: AT2SELD, data: Dataset, opts: CompressOptions, train_clips: int) -> None:
    """The mistakes that need the checkpoint and the data, before anything is written."""
    if ckpt.classes != data.classes:
        raise EdgeError(f"{ckpt.path}: trained on classes {ckpt.classes}, but the dataset has {data.classes}")
    if opts.prune_ratio is not None or opts.target_macs is not None:
        pruning_plan(model)  # a backbone without a plan fails here
    if opts.int8 and opts.calib_clips > train_clips:
        raise EdgeError(f"--calib-clips {opts.calib_clips}: the training split has only {train_clips} clips")


def ratio_for_target(model: AT2SELD, target: float, method: str) -> float:
    """The uniform prune ratio whose pruned model costs at most `target` MACs per second."""
    floor = summarize(passive_filter_prune(model, 0.999, method).build()).total_macs_per_second
    full = summarize(model).total_macs_per_second
    if target < floor:
        raise EdgeError(f"--target-macs {target:.4g} is below what the model costs with its backbone pruned to the "
                        f"minimum ({floor:.4g} MACs/s: front-end, spatial branch and heads are not pruned)")
    if target >= full:
        raise EdgeError(f"--target-macs {target:.4g} is not below the unpruned model's {full:.4g} MACs/s")
    lo, hi = 0.0, 0.999
    for _ in range(12):
        mid = (lo + hi) / 2
        cost = summarize(passive_filter_prune(model, mid, method).build()).total_macs_per_second
        lo, hi = (lo, mid) if cost <= target else (mid, hi)
    return hi


def time_variants(variants: list[Variant], folder: Path, samples: int, rounds: int = TIMING_ROUNDS,
                  runs: int = TIMING_RUNS) -> None:
    """Time every distinct graph in turn with the others (`time_interleaved`), so that the load
    of the machine weighs on them alike, and give each variant its figures: a byte-identical graph
    shares the first one's. The speed-up is taken round by round against the first variant."""
    audio = torch.from_numpy((0.1 * np.random.default_rng(0).standard_normal((1, 4, samples))).astype(np.float32))
    distinct = {v.name: OnnxRuntimeModel(folder / v.onnx, None) for v in variants if v.same_graph_as is None}
    samples_ms = time_interleaved({name: (lambda m=m: m(audio)) for name, m in distinct.items()}, rounds, runs)
    medians = {name: [float(np.median(r)) for r in per_round] for name, per_round in samples_ms.items()}
    base = medians[variants[0].name]
    for v in variants:
        timed = v.same_graph_as or v.name
        v.latency = LatencyStats.of([t for r in samples_ms[timed] for t in r])
        v.round_ms = Spread.of(medians[timed])
        v.speedup = Spread.of([b / m for b, m in zip(base, medians[timed])])


def _scorer(cfg, clips, thresholds: np.ndarray) -> Callable[[Path], dict[str, float]]:
    """A graph's metrics on `clips`; the graph by its path, or already opened (`_SharedGraph`)."""
    def score(path_or_graph) -> dict[str, float]:
        graph = OnnxRuntimeModel(path_or_graph, cfg) if isinstance(path_or_graph, (str, Path)) else path_or_graph
        return score_outputs(predict_clips(graph, clips), thresholds).results()
    return score


class _SharedGraph:
    """One INT8 candidate in ONNX Runtime for the validation scorer and the agreement judge both:
    one session, and an input run once. The judge's validation clips are the scorer's inputs
    (a clip the scorer runs whole, up to MAX_WINDOW_S), so the judge reads the scorer's raw
    outputs: the same numbers as a run of its own. Longer clips, which the scorer runs in
    windows, and the golden scenes are run for the judge."""

    def __init__(self, path: Path, cfg):
        self.config = cfg
        self._model = OnnxRuntimeModel(path, cfg)
        self._outputs: dict[tuple, dict[str, torch.Tensor]] = {}

    def eval(self) -> "_SharedGraph":
        return self

    def __call__(self, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        x = np.ascontiguousarray(audio.numpy(), dtype=np.float32)  # what the session is fed
        key = (x.shape, hashlib.blake2b(x.data, digest_size=32).digest())
        if key not in self._outputs:
            self._outputs[key] = self._model(audio)
        return self._outputs[key]


def _export(model: AT2SELD, path: Path, manifest: dict) -> Path:
    if not path.exists():
        fused, folds = fold_batchnorm(model)
        export_onnx(fused, path, seconds=1.0, dynamic_time=True, manifest_extra={**manifest, "batchnorm_folded": folds})
    return path


def compress(ckpt_path: Path, data: Dataset, out_dir: Path, opts: CompressOptions, say: Say = print,
             train_reporter=None) -> CompressReport:
    """Everything is checked before anything is written; the run works in OUT.partial under a
    lock on OUT (a second run to the same OUT fails at once) and moves it onto OUT when done."""
    check_output_dir(out_dir, is_ours=lambda p: False, what="empty folder")
    ckpt = load_checkpoint(ckpt_path)
    original = model_from_checkpoint(ckpt).eval()
    train_clips = data.clips("train")
    validate(ckpt, original, data, opts, len(train_clips))
    ratio = opts.prune_ratio
    if opts.target_macs is not None:
        ratio = ratio_for_target(original, opts.target_macs, opts.prune_method)
    with output_lock(out_dir, "edge compress"):
        work = out_dir.with_name(out_dir.name + ".partial")
        ckpt_sha256 = ckpt.sha256()  # reads the whole file: once
        stamp = json.dumps({"checkpoint_sha256": ckpt_sha256,
                            "options": opts.model_dump(mode="json", exclude={"device"})}, sort_keys=True)
        if work.exists() and (not (work / "options.json").is_file() or (work / "options.json").read_text() != stamp):
            raise EdgeError(f"{work}: holds an unfinished run of another checkpoint or other options; "
                            "remove it or give another --out")
        if work.exists():
            say(f"resuming the unfinished run in {work}")
        work.mkdir(parents=True, exist_ok=True)
        atomic_write_text(work / "options.json", stamp)
        run = _Compression(ckpt, ckpt_sha256, Path(ckpt_path), original, data, opts, work, say, train_reporter)
        report = run.run(ratio, train_clips)
        write_report(report, work)
        write_compression_manifest(work, run.manifest())
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(work, out_dir)
    return report


class _Compression:
    """One run's stages, each from the last one's artifact in `work` (reused when resuming)."""

    def __init__(self, ckpt: Checkpoint, ckpt_sha256: str | None, ckpt_path: Path, original: AT2SELD, data: Dataset,
                 opts: CompressOptions, work: Path, say: Say, train_reporter):
        self.ckpt, self.data, self.opts, self.work, self.say = ckpt, data, opts, work, say
        self.train_reporter = train_reporter
        self.test_clips, self.val_clips = data.clips("test"), data.clips("val")
        cfg = original.config
        self.samples_1s = cfg.audio.label_hop_samples * round(1.0 / cfg.audio.label_hop_s)
        self.base_manifest = {"source_checkpoint": str(ckpt_path), "source_checkpoint_sha256": ckpt_sha256,
                              "classes": ckpt.classes}
        self.report = CompressReport({**provenance(), "artifact": "compression_report", **self.base_manifest,
                                      "data": str(data.spec_path.resolve())}, opts.model_dump(mode="json"))
        self.model, self.thresholds = original, np.array(ckpt.thresholds)  # the last stage's

    def run(self, ratio: float | None, train_clips: list) -> CompressReport:
        onnx = _export(self.model, self.work / "original.fp32.onnx", self.base_manifest)
        self.add_variant("original FP32", self.model, onnx, self.thresholds)
        if ratio is not None:
            onnx = self.prune(ratio)
        fp32_path = self.work / "model.fp32.onnx"  # the last stage's fused FP32 export, under its deployable name
        with atomic_path(fp32_path) as tmp:
            shutil.copyfile(onnx, tmp)
        if self.opts.int8:
            self.int8(fp32_path, train_clips)
        self.say(f"timing {len(self.report.variants)} variants in ONNX Runtime, in turn ({TIMING_ROUNDS} rounds)")
        time_variants(self.report.variants, self.work, self.samples_1s)
        return self.report

    def manifest(self) -> CompressionManifest:
        """What the folder holds, for `edge build --compressed`."""
        final = next((n for n in ("pruned_finetuned.pt", "pruned.pt") if (self.work / n).is_file()), None)
        int8 = self.opts.int8
        return CompressionManifest(
            toolkit_version=self.report.manifest["toolkit_version"], created_utc=self.report.manifest["created_utc"],
            **{k: self.base_manifest[k] for k in ("source_checkpoint", "source_checkpoint_sha256", "classes")},
            data=str(self.data.spec_path.resolve()), options=self.opts.model_dump(mode="json"), checkpoint=final,
            fp32_model="model.fp32.onnx", int8_model="model.int8.onnx" if int8 else None,
            calibration_cache="calibration.cache" if int8 else None,
            float_modules=list(self.report.float_modules) if int8 else None)

    def add_variant(self, name: str, model: AT2SELD, onnx_path: Path, thr: np.ndarray, notes: str = "") -> None:
        self.say(f"scoring {name} on the test split")
        s = summarize(model)
        backbone = next(m.macs_per_second for m in s.modules if m.module == "backbone")
        metrics = _scorer(model.config, self.test_clips, thr)(onnx_path)
        digest = sha256_file(onnx_path)
        twin = next((v.name for v in self.report.variants if v.sha256 == digest), None)
        if twin is not None:
            notes = f"same graph as {twin} (sha256 {digest[:12]}); " + notes
        self.report.variants.append(Variant(name, onnx_path.name, s.total_params, backbone, s.total_macs_per_second,
                                            onnx_path.stat().st_size, metrics, notes=notes, sha256=digest,
                                            same_graph_as=twin))

    def prune(self, ratio: float) -> Path:
        opts, ckpt = self.opts, self.ckpt
        self.say(f"pruning {ratio:.0%} of each backbone conv's filters ({opts.prune_method})")
        pruned: PruneResult = passive_filter_prune(self.model, ratio, opts.prune_method)
        self.report.pruned_channels = list(pruned.config.backbone.channels)
        pruned_model = pruned.build().eval()
        manifest = {**self.base_manifest, "pruned": {"method": opts.prune_method, "ratio": ratio,
                                                     "channels": self.report.pruned_channels}}
        save_checkpoint(self.work / "pruned.pt", pruned_model, ckpt.classes, ckpt.thresholds, manifest)
        onnx = _export(pruned_model, self.work / "pruned.fp32.onnx", manifest)
        self.add_variant("pruned", pruned_model, onnx, self.thresholds, f"{ratio:.0%} of filters, no fine-tuning")
        self.model = pruned_model
        return self.finetune(pruned, manifest) if opts.finetune_epochs > 0 else onnx

    def finetune(self, pruned: PruneResult, manifest: dict) -> Path:
        from at2seld_edge.training.trainer import train

        epochs = self.opts.finetune_epochs
        self.say(f"fine-tuning the pruned model for {epochs} epochs")
        tc = pruned.config.training
        ft_cfg = pruned.config.model_copy(update={"training": tc.model_copy(update={
            "lr": tc.lr * 0.5, "restart_epochs": epochs, "patience": epochs})})
        result = train(ft_cfg, self.data, self.work / "finetune", epochs=epochs, reporter=self.train_reporter,
                       initial_model=pruned.build(), device=self.opts.device)
        ft = load_checkpoint(result.run_dir / "best.pt")
        self.model, self.thresholds = model_from_checkpoint(ft).eval(), np.array(ft.thresholds)
        save_checkpoint(self.work / "pruned_finetuned.pt", self.model, ft.classes, ft.thresholds,
                        {**manifest, "finetuned_epochs": result.best_epoch})
        onnx = _export(self.model, self.work / "pruned_finetuned.fp32.onnx", manifest)
        self.add_variant("pruned + fine-tuned", self.model, onnx, self.thresholds,
                         f"best of {len(result.history)} epochs: {result.best_epoch}")
        return onnx

    def int8(self, fp32_path: Path, train_clips: list) -> None:
        opts, work, cfg = self.opts, self.work, self.model.config
        hop = cfg.audio.label_hop_samples
        audios = pick_calibration_audio(train_clips, opts.calib_clips)
        self.say(f"calibrating activation ranges ({opts.calib_method}) on {len(audios)} training clips")
        samples = hop * round(opts.calib_seconds / cfg.audio.label_hop_s)
        ranges = calibrate_with_cache(fp32_path, audios, samples, opts.calib_method, work / "calibration.cache")
        quantize_except(fp32_path, work / "model.int8_all.onnx", ranges, {"frontend"})
        self.add_variant("INT8 (all but the DSP)", self.model, work / "model.int8_all.onnx", self.thresholds,
                         "every Conv/MatMul/Gemm outside the front-end and STFT/mel")
        val_score = _scorer(cfg, self.val_clips, self.thresholds)
        judged = golden_inputs(1.0) + [a[:, : a.shape[1] // hop * hop] for a in map(read_audio, self.val_clips)]
        judge = agreement_judge(self.model, judged, self.thresholds, opts.int8_tolerance)
        judgement = seld_judgement(lambda g: val_score(g)["SELD"], opts.tolerance, judge,
                                   open_graph=lambda p: _SharedGraph(p, cfg))  # one run of each input a candidate
        mixed = mixed_precision(fp32_path, work / "model.int8.onnx", ranges, judgement, work_dir=work,
                                progress=self.say)
        self.report.sensitivity = [asdict(r) for r in mixed.rows]
        self.report.float_modules = mixed.float_modules
        self.add_variant("INT8 mixed precision", self.model, work / "model.int8.onnx", self.thresholds,
                         "FP32 modules: " + ", ".join(mixed.float_modules))


# ----------------------------------------------------------------------------- reading the artifact


@dataclass
class CompressedModel:
    """What `edge build --compressed` takes from an `edge compress` folder: the last stage's
    checkpoint, the modules the sensitivity analysis kept in floating point, its calibration."""

    checkpoint: Path
    float_modules: list[str] | None  # None: the run had no --int8
    calib_method: str
    calib_clips: int
    data: Path | None  # the dataset spec it calibrated on


def read_compressed(folder: Path) -> CompressedModel:
    m = read_compression_manifest(folder)
    try:
        opts = CompressOptions.model_validate(m.options)
    except ValidationError as e:
        raise EdgeError(f"{folder / MANIFEST}: options: {flag_errors(e)}") from None
    return CompressedModel(m.checkpoint_path(folder), m.float_modules, opts.calib_method, opts.calib_clips,
                           Path(m.data))

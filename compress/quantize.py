"""Post-training INT8 quantization to an explicit Q/DQ ONNX graph, with accuracy control.

ONNX Runtime's quantization tooling does the work: its calibrators (minmax, entropy, percentile)
collect activation ranges on clips of the training split, and its QDQ quantizer inserts
QuantizeLinear/DequantizeLinear pairs: symmetric per-channel INT8 weights, symmetric per-tensor
INT8 activations (zero point 0), on the inputs of Conv, MatMul and Gemm. That is the explicit
quantization TensorRT 8.6+ builds from and ONNX Runtime runs on CPU.

Ranges are collected once; every quantization below (one module at a time for the sensitivity
analysis, then the mixed-precision model) reuses them. The DSP of the graph (the front-end and
the backbone's own STFT and mel projection, whose DFT kernels would lose their precision) stays
in floating point. The same ranges are written as a TensorRT calibration cache for users who
build with implicit INT8 calibration.
"""

from __future__ import annotations

import contextlib
import io
import math
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import onnx

from at2seld_edge.errors import EdgeError
from at2seld_edge.io import atomic_path, atomic_write_text
from at2seld_edge.model import MODULE_NAMES
from at2seld_edge.onnx_export import INPUT_NAME, module_of_node
from at2seld_edge.options import CALIBRATION_METHODS

QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
DSP_SCOPES = ("/frontend/", "/spectrogram_extractor/", "/logmel_extractor/")
TRT_CALIBRATOR_NAMES = {"minmax": "MinMaxCalibration", "entropy": "EntropyCalibration2",
                        "percentile": "EntropyCalibration2"}
MIN_CALIBRATION_CLIPS = 4
DEFAULT_CALIBRATION_CLIPS = 16  # `edge compress` and `edge build` alike
# Percentile (99.999th), not entropy: the DOA heads regress directions from activations whose
# rare large values carry them; on the golden scenes KL-entropy clipping gave the INT8 nano a
# mean DOA error of 1.4-4.1 deg, percentile and minmax 0.4-0.7 deg (README, "Compress").
DEFAULT_CALIBRATION_METHOD = "percentile"
ENTROPY_BINS = 512


def _ort_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    if method not in CALIBRATION_METHODS:
        raise EdgeError(f"--calib-method {method!r}: expected one of {', '.join(CALIBRATION_METHODS)}")
    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[method]


class AudioCalibrationReader:
    """ONNX Runtime CalibrationDataReader over fixed-length segments of calibration audio."""

    def __init__(self, segments: list[np.ndarray], progress: Callable[[], None] | None = None):
        self._segments = segments
        self._it: Iterator[np.ndarray] = iter(segments)
        self._progress = progress

    def get_next(self) -> dict[str, np.ndarray] | None:
        seg = next(self._it, None)
        if seg is None:
            return None
        if self._progress:
            self._progress()
        return {INPUT_NAME: seg[None].astype(np.float32)}

    def rewind(self) -> None:
        self._it = iter(self._segments)

    def __len__(self) -> int:
        return len(self._segments)


def calibration_segments(audios: list[np.ndarray], samples: int) -> list[np.ndarray]:
    """The first `samples` of each clip (a whole number of label hops), zero-padded if short."""
    if len(audios) < MIN_CALIBRATION_CLIPS:
        raise EdgeError(f"{len(audios)} calibration clips are too few for stable ranges (at least {MIN_CALIBRATION_CLIPS})")
    out = []
    for a in audios:
        seg = np.zeros((a.shape[0], samples), np.float32)
        n = min(samples, a.shape[1])
        seg[:, :n] = a[:, :n]
        out.append(seg)
    return out


@dataclass
class Ranges:
    """Activation ranges per tensor name, as ONNX Runtime's calibrator computed them."""

    method: str
    tensors: object  # onnxruntime.quantization.TensorsData

    def amax(self) -> dict[str, float]:
        out = {}
        for name, data in self.tensors.items():
            lo, hi = (float(np.asarray(v).item()) for v in data.range_value)
            out[name] = max(abs(lo), abs(hi))
        return out


def calibrate(fp32_onnx: Path, segments: list[np.ndarray], method: str, percentile: float = 99.999,
              progress: Callable[[], None] | None = None) -> Ranges:
    from onnxruntime.quantization.calibrate import create_calibrator

    ort_method = _ort_method(method)
    extra = {"symmetric": True}
    if method == "entropy":
        # ONNX Runtime's default of 128 histogram bins for 128 quantized bins leaves the KL search
        # one candidate, the full range: entropy would equal minmax. TensorRT's entropy
        # calibrator searches 2048 bins; ORT's search over them is Python, ~0.3 s a tensor, so we
        # take 512 (192 candidate thresholds, a quarter of the time).
        extra.update(num_bins=ENTROPY_BINS, num_quantized_bins=128)
    if method == "percentile":
        extra["percentile"] = percentile
    with tempfile.TemporaryDirectory(prefix="edge-calib-") as tmp:
        calibrator = create_calibrator(Path(fp32_onnx), list(QUANTIZED_OPS), Path(tmp, "augmented.onnx").as_posix(),
                                       ort_method, extra_options=extra)
        with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print their bin counts
            calibrator.collect_data(AudioCalibrationReader(segments, progress))
            tensors = calibrator.compute_data()
        del calibrator
    return Ranges(method, tensors)


def pick_calibration_audio(clips: list, count: int) -> list[np.ndarray]:
    """`count` training clips, the same ones for the same count in `edge compress` and `edge build`."""
    from at2seld_edge.data.dataset import read_audio

    chosen = sorted(np.random.default_rng(0).choice(len(clips), size=min(count, len(clips)), replace=False))
    return [read_audio(clips[i]) for i in chosen]


def calibrate_with_cache(fp32_onnx: Path, audios: list[np.ndarray], samples: int, method: str,
                         cache: Path) -> Ranges:
    """Ranges from the first `samples` of each clip, also written as TensorRT's calibration cache:
    the one calibration sequence compress and build share."""
    ranges = calibrate(fp32_onnx, calibration_segments(audios, samples), method)
    write_tensorrt_cache(ranges, cache)
    return ranges


def quantize_except(fp32_onnx: Path, out: Path, ranges: Ranges, keep_float: Iterable[str]) -> Path:
    """Q/DQ INT8 on every quantizable node outside the `keep_float` modules."""
    keep = set(keep_float)
    nodes = [n for m, ns in quantizable_nodes(fp32_onnx).items() if m not in keep for n in ns]
    return quantize_qdq(fp32_onnx, out, ranges, nodes)


def quantizable_nodes(fp32_onnx: Path) -> dict[str, list[str]]:
    """Module -> names of its Conv/MatMul/Gemm nodes that may be quantized (not the DSP)."""
    graph = onnx.load(str(fp32_onnx), load_external_data=False).graph
    out: dict[str, list[str]] = {m: [] for m in MODULE_NAMES}
    for node in graph.node:
        module = module_of_node(node.name)
        if node.op_type in QUANTIZED_OPS and module is not None and not any(s in node.name for s in DSP_SCOPES):
            out[module].append(node.name)
    return out


def quantize_qdq(fp32_onnx: Path, out: Path, ranges: Ranges, nodes: list[str]) -> Path:
    """Explicit Q/DQ INT8 on `nodes` (everything else stays FP32); written atomically."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

    if not nodes:
        raise EdgeError("nothing to quantize: every module was kept in floating point")
    model = load_model_with_shape_infer(Path(fp32_onnx))
    quantizer = QDQQuantizer(model, True, False, QuantType.QInt8, QuantType.QInt8, ranges.tensors, list(nodes), [],
                             list(QUANTIZED_OPS), {"ActivationSymmetric": True, "WeightSymmetric": True,
                                                   "QuantizeBias": False,  # TensorRT keeps biases in float
                                                   "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1}})
    quantizer.quantize_model()
    with atomic_path(out) as tmp:
        quantizer.model.save_model_to_file(str(tmp))
        onnx.checker.check_model(str(tmp))
    return out


def write_tensorrt_cache(ranges: Ranges, path: Path, trt_version_tag: str = "8601") -> Path:
    """TensorRT's calibration cache: a `TRT-<version>-<calibrator>` header, then one
    `tensor: <scale as big-endian IEEE-754 hex>` line per tensor, scale = amax / 127."""
    lines = [f"TRT-{trt_version_tag}-{TRT_CALIBRATOR_NAMES[ranges.method]}"]
    for name, amax in sorted(ranges.amax().items()):
        scale = max(amax, 1e-12) / 127.0
        lines.append(f"{name}: {struct.pack('>f', scale).hex()}")
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def read_tensorrt_cache(path: Path) -> tuple[str, dict[str, float]]:
    """(header, tensor -> scale): what TensorRT reads back."""
    lines = Path(path).read_text().splitlines()
    scales = {}
    for i, line in enumerate(lines[1:], start=2):
        name, sep, hexval = line.rpartition(": ")
        if not sep or len(hexval) != 8:
            raise EdgeError(f"{path}:{i}: not a `tensor: hex` line: {line!r}")
        scales[name] = struct.unpack(">f", bytes.fromhex(hexval))[0]
    return lines[0], scales


# ----------------------------------------------------------------------------- sensitivity


@dataclass
class SensitivityRow:
    module: str
    nodes: int
    seld: float
    delta: float
    quantized: bool  # in the final mixed-precision model
    agreement: str = ""  # the first output-agreement failure (evaluation.agreement), if any


Judge = Callable[[Path], list[str]]  # an INT8 graph -> its output-agreement failures (none: acceptable)
# What `seld_judgement`'s `open_graph` gives `score` and `judge` in place of a candidate's path:
# the candidate opened once (an ONNX Runtime session, called like the model) for both to share.
OpenGraph = Callable[[Path], object]


@dataclass(frozen=True)
class Int8Judgement:
    """How a candidate INT8 graph is judged. `evaluate` gives its score (lower is better) and its
    output-agreement failures; a candidate passes when it has no failure and its score is at
    most `tolerance` above the FP32 graph's. `measure` names the score in messages."""

    evaluate: Callable[[Path], tuple[float, list[str]]]
    tolerance: float
    measure: str

    def passes(self, score: float, fp32_score: float, failures: list[str]) -> bool:
        return not failures and score - fp32_score <= self.tolerance


def agreement_check(reference, inputs: list[np.ndarray], thresholds: np.ndarray, tol: dict):
    """A graph (its path, or the graph already opened and called like the model) -> one
    `evaluation.agreement.Comparison` per input against `reference`, the FP32 PyTorch model:
    the definition `edge build`'s golden check applies too."""
    import torch

    from at2seld_edge.evaluation.agreement import compare
    from at2seld_edge.model import OUTPUT_NAMES
    from at2seld_edge.onnx_export import OnnxRuntimeModel

    reference.eval()
    tensors = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None] for a in inputs]
    with torch.no_grad():
        refs = [{k: v[0].numpy() for k, v in reference(t).items() if k in OUTPUT_NAMES} for t in tensors]

    def check(path_or_graph) -> list:
        graph = (OnnxRuntimeModel(path_or_graph, reference.config) if isinstance(path_or_graph, (str, Path))
                 else path_or_graph)
        return [compare(ref, {k: v[0].numpy() for k, v in graph(t).items()}, thresholds, tol, i)
                for i, (t, ref) in enumerate(zip(tensors, refs))]

    return check


def agreement_judge(reference, inputs: list[np.ndarray], thresholds: np.ndarray, tol: dict) -> Judge:
    """The output-agreement failures of a graph against `reference` on `inputs` (`agreement_check`)."""
    check = agreement_check(reference, inputs, thresholds, tol)
    return lambda path_or_graph: [f for c in check(path_or_graph) for f in c.failures]


def agreement_judgement(reference, inputs: list[np.ndarray], thresholds: np.ndarray, tol: dict) -> Int8Judgement:
    """`edge build`'s judgement, its golden check's: the output agreement alone; the score, how
    near the worst input comes to the limits (`Comparison.severity`), only orders the modules."""
    check = agreement_check(reference, inputs, thresholds, tol)

    def evaluate(path: Path) -> tuple[float, list[str]]:
        comparisons = check(path)
        return max(c.severity(tol) for c in comparisons), [f for c in comparisons for f in c.failures]

    return Int8Judgement(evaluate, math.inf, "share of the INT8 limits")


def seld_judgement(score: Callable[[object], float], tolerance: float, judge: Judge | None = None,
                   open_graph: OpenGraph | None = None) -> Int8Judgement:
    """`edge compress`'s judgement: the validation SELD score (`score`) within `tolerance` of
    FP32's, and `judge`'s output agreement. With `open_graph`, each candidate is opened once and
    `score` and `judge` both get what it returns instead of the path."""
    opened, judge = open_graph or (lambda p: p), judge or (lambda _g: [])

    def evaluate(path: Path) -> tuple[float, list[str]]:
        graph = opened(path)
        return score(graph), judge(graph)

    return Int8Judgement(evaluate, tolerance, f"SELD (--tolerance {tolerance:g})")


@dataclass
class MixedPrecisionResult:
    path: Path
    fp32_seld: float
    seld: float
    rows: list[SensitivityRow] = field(default_factory=list)
    float_modules: list[str] = field(default_factory=list)


def mixed_precision(fp32_onnx: Path, out: Path, ranges: Ranges, judgement: Int8Judgement,
                    keep_float: Iterable[str] = ("frontend",), work_dir: Path | None = None,
                    progress: Callable[[str], None] | None = None) -> MixedPrecisionResult:
    """Quantize one module at a time and judge it (`judgement`: its score's change and its
    outputs' agreement with the FP32 model); modules that fail stay FP32. If the combined model
    still fails, the quantized module whose score rose most goes back to FP32 until it passes."""
    say = progress or (lambda _m: None)
    keep = set(keep_float)
    groups = quantizable_nodes(fp32_onnx)
    fp32 = judgement.evaluate(fp32_onnx)[0]
    rows: list[SensitivityRow] = []
    with tempfile.TemporaryDirectory(prefix="edge-sens-", dir=work_dir) as tmp:
        for module in MODULE_NAMES:
            if module in keep or not groups[module]:
                continue
            say(f"sensitivity: {module} in INT8")
            path = quantize_qdq(fp32_onnx, Path(tmp) / f"{module}.onnx", ranges, groups[module])
            s, failures = judgement.evaluate(path)
            rows.append(SensitivityRow(module, len(groups[module]), s, s - fp32, judgement.passes(s, fp32, failures),
                                       failures[0] if failures else ""))
    chosen = [r for r in rows if r.quantized]
    while True:
        nodes = [n for r in chosen for n in groups[r.module]]
        if not nodes:
            raise EdgeError(f"no module passes INT8 on its own ({judgement.measure} and the --int8-* output "
                            "agreement); alone in INT8: " + ", ".join(
                                f"{r.module} {r.delta:+.4f}{' ' + r.agreement if r.agreement else ''}" for r in rows))
        say("mixed precision: " + ", ".join(r.module for r in chosen) + " in INT8")
        quantize_qdq(fp32_onnx, out, ranges, nodes)
        final, failures = judgement.evaluate(out)
        if judgement.passes(final, fp32, failures) or len(chosen) == 1:
            break
        worst = max(chosen, key=lambda r: r.delta)
        worst.quantized = False
        chosen.remove(worst)
    if not judgement.passes(final, fp32, failures):
        raise EdgeError(f"INT8 with only {chosen[0].module} quantized still fails: {judgement.measure} {final:.4f} vs "
                        f"FP32 {fp32:.4f}{'; ' + failures[0] if failures else ''}")
    float_modules = [m for m in MODULE_NAMES if m not in {r.module for r in chosen}]
    return MixedPrecisionResult(out, fp32, final, rows, float_modules)


def quantize_judged(fp32_onnx: Path, out: Path, ranges: Ranges, judgement: Int8Judgement,
                    keep_float: Iterable[str], work_dir: Path | None = None,
                    progress: Callable[[str], None] | None = None) -> MixedPrecisionResult:
    """Q/DQ INT8 on every module outside `keep_float`; where that graph fails `judgement`, the
    mixed-precision fallback keeps in floating point the modules that fail it (`mixed_precision`)."""
    keep, groups = set(keep_float), quantizable_nodes(fp32_onnx)
    quantize_except(fp32_onnx, out, ranges, keep)
    score, failures = judgement.evaluate(out)
    fp32 = judgement.evaluate(fp32_onnx)[0] if math.isfinite(judgement.tolerance) else -math.inf
    if judgement.passes(score, fp32, failures):  # float: what was kept, and what has nothing to quantize
        return MixedPrecisionResult(out, fp32, score, [], [m for m in MODULE_NAMES if m in keep or not groups[m]])
    why = failures[0] if failures else f"{judgement.measure} {score:.4f} vs FP32 {fp32:.4f}"
    (progress or (lambda _m: None))(f"INT8 outside {', '.join(sorted(keep))} fails ({why}): judging each module alone")
    return mixed_precision(fp32_onnx, out, ranges, judgement, keep, work_dir, progress)

"""`edge bench`: latency, throughput, real-time factor, memory and (on a Jetson) power of a bundle
on a local backend, measured in one run and written as JSON and Markdown.

A deployment re-runs the model every label hop on the last window of audio, so the time of one
window's inference is also the time per hop; the real-time factor per hop (that time over the
hop) must stay below 1. Causal bundles also time the streaming path, one hop of audio per call.

The JSON also records what `edge devices calibrate` fits the latency model's constants from
(`fit`): the layers of the bundle's graph as the device's executor runs them (from the engine's
`layers.json` where there is one) and measurements over them: the end-to-end time, and per-layer
times from TensorRT's layer profiler or per-module times from ONNX Runtime's profiling.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from at2seld_edge.checkpoint import provenance
from at2seld_edge.errors import EdgeError, ErrorKind
from at2seld_edge.io import atomic_write_text, markdown_table
from at2seld_edge.timing import LatencyStats, time_runs

if TYPE_CHECKING:
    from at2seld_edge.deploy.devices import DeviceSpec

_POWER = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)mW/(\d+)mW")  # tegrastats: "VDD_IN 5124mW/5124mW"


def parse_tegrastats(line: str) -> dict[str, float]:
    """Rail -> instantaneous watts from one tegrastats line (JetPack 5/6 name the rails VDD_*,
    JetPack 4 POM_*)."""
    return {m.group(1): int(m.group(2)) / 1000.0 for m in _POWER.finditer(line)}


class PowerSampler:
    """Samples board power while a benchmark runs: tegrastats where installed, else jtop."""

    def __init__(self, interval_ms: int = 100):
        self.interval_ms = interval_ms
        self.samples: list[dict[str, float]] = []
        self.source: str | None = None
        self._proc = None
        self._thread = None
        self._jtop = None

    def __enter__(self) -> "PowerSampler":
        exe = shutil.which("tegrastats")
        if exe is not None:
            self.source = "tegrastats"
            self._proc = subprocess.Popen([exe, "--interval", str(self.interval_ms)], stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, text=True)
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        else:
            try:
                from jtop import jtop  # type: ignore

                self._jtop = jtop(interval=self.interval_ms / 1000)
                self._jtop.start()
                self.source = "jtop"
                self._thread = threading.Thread(target=self._poll_jtop, daemon=True)
                self._stop = False
                self._thread.start()
            except Exception:
                self._jtop = None
        return self

    def _read(self) -> None:
        for line in self._proc.stdout:
            rails = parse_tegrastats(line)
            if rails:
                self.samples.append(rails)

    def _poll_jtop(self) -> None:
        while not self._stop and self._jtop.ok():
            total = self._jtop.power.get("tot", {})
            if "power" in total:
                self.samples.append({"total": total["power"] / 1000.0})

    def __exit__(self, *exc) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=5)
        if self._jtop is not None:
            self._stop = True
            self._jtop.close()

    def summary(self) -> dict | None:
        if not self.samples:
            return None
        rails = sorted({k for s in self.samples for k in s})
        main = next((r for r in ("VDD_IN", "POM_5V_IN", "total") if r in rails), rails[0])
        values = [s[main] for s in self.samples if main in s]
        return {"source": self.source, "rail": main, "mean_w": float(np.mean(values)), "max_w": float(np.max(values)),
                "samples": len(values)}


def _rss_mb() -> tuple[float | None, float | None]:
    """Current and peak resident memory of this process (Linux)."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None, None
    vals = {k: int(v.split()[0]) / 1024 for k, v in (ln.split(":", 1) for ln in text.splitlines() if ":" in ln)
            if k in ("VmRSS", "VmHWM")}
    return vals.get("VmRSS"), vals.get("VmHWM")


def _device_memory_mb() -> float | None:
    from at2seld_edge.deploy.engine import cudart_module

    cudart = cudart_module()
    if cudart is None:
        return None
    try:
        err, free, total = cudart.cudaMemGetInfo()
        return (total - free) / 2**20 if int(err) == 0 else None
    except Exception:
        return None


@dataclass
class BenchReport:
    bundle: str
    backend: str
    precision: str
    window_s: float
    hop_s: float
    window: LatencyStats
    stream_hop: LatencyStats | None
    throughput_windows_per_s: float
    audio_seconds_per_s: float
    rtf_window: float
    rtf_hop: float
    host_rss_mb: float | None
    host_peak_rss_mb: float | None
    device_memory_mb: float | None
    power: dict | None
    machine: dict = field(default_factory=dict)
    fit: dict | None = None  # calibrate.FitRecord: what `edge devices calibrate` needs
    notes: list[str] = field(default_factory=list)
    stream_state_bytes: int | None = None  # causal bundles: the state one stream carries (fixed)
    sound_to_detection_ms: float | None = None  # causal bundles: lookahead + one hop's compute (median)

    def rows(self) -> list[list[str]]:
        def lat(name, x: LatencyStats):
            return [name, f"{x.median_ms:.2f}", f"{x.p95_ms:.2f}", f"{x.p99_ms:.2f}", f"{x.mean_ms:.2f}", str(x.runs)]
        rows = [lat(f"window ({self.window_s:g} s) = per hop, sliding window", self.window)]
        if self.stream_hop is not None:
            rows.append(lat(f"streaming, one {self.hop_s * 1000:g} ms hop", self.stream_hop))
        return rows

    def summary_rows(self) -> list[list[str]]:
        mb = lambda x: "n/a" if x is None else f"{x:.0f}"  # noqa: E731
        power = "n/a (no tegrastats or jtop)" if self.power is None else (
            f"{self.power['mean_w']:.2f} W mean, {self.power['max_w']:.2f} W max ({self.power['rail']}, {self.power['source']})")
        return [["throughput", f"{self.throughput_windows_per_s:.1f} windows/s, {self.audio_seconds_per_s:.1f} s of audio per s"],
                ["real-time factor (window)", f"{self.rtf_window:.4f}"],
                ["real-time factor (per hop, sliding window)", f"{self.rtf_hop:.3f}"],
                ["host memory (RSS now / peak)", f"{mb(self.host_rss_mb)} / {mb(self.host_peak_rss_mb)} MB"],
                ["device memory in use", mb(self.device_memory_mb) + (" MB" if self.device_memory_mb is not None else
                                                                      " (CPU backend or no cuda-python)")],
                ["power", power]] + ([] if self.stream_hop is None else [
                ["streaming: sound to detection (lookahead + hop compute)", f"{self.sound_to_detection_ms:.2f} ms"],
                ["streaming: state carried between hops", f"{self.stream_state_bytes:,} bytes"]])

    def markdown(self) -> str:
        where = self.machine.get("processor") or self.machine.get("system", "")
        fit = "" if self.fit is None else (
            f"\nCalibration data for {self.fit['device']} ({self.fit['method']}): {len(self.fit['layers'])} layers, "
            f"{len(self.fit['measurements'])} measurements; `edge devices calibrate --bench` this JSON fits the "
            "latency model's constants.\n")
        notes = "".join(f"\n- {n}" for n in self.notes)
        return (f"# Benchmark: {self.bundle}\n\nBackend {self.backend}, {self.precision} bundle, batch 1, "
                f"machine {self.machine.get('machine', '')} ({where}).\n\n"
                + markdown_table(["latency", "median ms", "p95 ms", "p99 ms", "mean ms", "runs"], self.rows()) + "\n\n"
                + markdown_table(["measure", "value"], self.summary_rows()) + "\n" + fit + notes + ("\n" if notes else ""))

    def to_dict(self) -> dict:
        return {**provenance(), "artifact": "bench_report", **asdict(self)}


def bench(runtime, iterations: int = 100, warmup: int = 10, fit_device: str | None = None) -> BenchReport:
    """`fit_device`: the device spec the measurements calibrate (default: the bundle's target for a
    TensorRT engine, x86-cpu for ONNX Runtime on the CPU)."""
    m = runtime.manifest
    device, notes = fit_target(runtime, fit_device)  # a wrong --fit-device fails before the timing runs
    w = m.window
    samples = w.samples
    window_s = samples / m.sample_rate
    audio = (0.1 * np.random.default_rng(0).standard_normal((1, 4, samples))).astype(np.float32)
    with PowerSampler() as power:
        times = time_runs(lambda: runtime.infer(audio), warmup, iterations)
        stream_times = None
        if m.stream is not None:
            streamer = runtime.stream()
            hop = m.label_hop_samples
            streamer.push(np.zeros((4, m.stream.context_samples + m.stream.lookahead_samples), np.float32))
            piece = audio[0, :, :hop]
            stream_times = time_runs(lambda: streamer.push(piece), warmup, iterations)
    window = LatencyStats.of(times)
    hop_stats = LatencyStats.of(stream_times) if stream_times else None
    rss, peak = _rss_mb()
    machine = {"machine": platform.machine(), "processor": platform.processor(), "system": platform.platform()}
    fit = fit_record(runtime, audio, window, device, min(iterations, 20)) if device is not None else None
    return BenchReport(
        str(runtime.bundle.root), runtime.session.name, m.precision, window_s, m.label_hop_s, window,
        hop_stats,
        1000.0 / window.median_ms, window_s * 1000.0 / window.median_ms, window.median_ms / 1000.0 / window_s,
        window.median_ms / 1000.0 / m.label_hop_s, rss, peak, _device_memory_mb(), power.summary(), machine,
        fit, notes, m.stream.state_bytes if m.stream else None,
        1000.0 * m.stream.lookahead_samples / m.sample_rate + hop_stats.median_ms if hop_stats else None,
    )


def fit_target(runtime, fit_device: str | None) -> tuple["DeviceSpec | None", list[str]]:
    """The device spec this bench's measurements calibrate (default: the bundle's target for a
    TensorRT engine, x86-cpu for ONNX Runtime on the CPU), or None and why there is none."""
    from at2seld_edge.deploy.devices import CPU_DEVICE, load_device

    engine = runtime.backend.startswith("tensorrt")
    on_cpu = not engine and getattr(runtime.session, "provider", "") == "CPUExecutionProvider"
    if not engine and not on_cpu:
        return None, ["no calibration data: the latency model has no executor for ONNX Runtime on CUDA"]
    device = load_device(fit_device or (runtime.manifest.target if engine else CPU_DEVICE))
    wanted = "tensorrt" if engine else "onnxruntime"
    if device.executor() != wanted:
        raise EdgeError(f"--fit-device {device.name}: its estimate models {device.executor()} layers, this bench ran "
                        f"{runtime.session.name}", ErrorKind.USAGE)
    return device, []


def fit_record(runtime, audio: np.ndarray, window: LatencyStats, device: "DeviceSpec", runs: int) -> dict:
    """The bench's `fit` section: the layers and their measured times, for `device`."""
    from at2seld_edge.deploy.calibrate import FitRecord, LayerRecord
    from at2seld_edge.deploy.latency_model import layer_precision, load_graph

    m = runtime.manifest
    engine = runtime.backend.startswith("tensorrt")
    precision = layer_precision(m.precision)
    graph = load_graph(runtime.bundle.path(m.model), samples=audio.shape[-1])
    layers, measurements, method = (_engine_measurements(runtime, graph, precision, audio, window, runs) if engine
                                    else _ort_measurements(runtime, graph, precision, audio, runs))
    record = FitRecord(
        device=device.name, executor=device.executor(), precision=precision, method=method,
        machine=platform.node() or platform.machine(), date=date.today().isoformat(),
        layers=[LayerRecord.of(layer) for layer in layers], measurements=measurements)
    return record.model_dump(mode="json")


def _ort_measurements(runtime, graph, precision: str, audio: np.ndarray, runs: int):
    """ONNX Runtime's layers, its profiled time per module (kernel + dispatch gap) and the same
    runs' end-to-end time: one pass, so a shared machine's load is the same in both."""
    from at2seld_edge.deploy.calibrate import module_measurements
    from at2seld_edge.deploy.latency_model import graph_layers
    from at2seld_edge.deploy.profiler import ProfileInput, onnxruntime_latency

    layers = graph_layers(graph, "onnxruntime", precision)
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        timing = onnxruntime_latency(ProfileInput(None, runtime.bundle.path(runtime.manifest.model), audio,
                                                  precision, Path(tmp)), 3, runs)
    per_module = {m: float(np.median(t)) for m, t in timing.per_module.items() if t}
    measured = module_measurements(layers, per_module, float(np.median(timing.end_to_end)))
    return layers, measured, "ONNX Runtime profiling, time per module and end to end"


def _engine_measurements(runtime, graph, precision: str, audio: np.ndarray, window: LatencyStats, runs: int):
    """The engine's own layers (its layers.json, else the graph's TensorRT fusion), TensorRT's
    layer profiler (each layer's median time) and the bench's end-to-end time (profiling
    serialises the layers, so the profiled runs' own total would overstate it)."""
    from at2seld_edge.deploy.calibrate import Measurement, module_measurements
    from at2seld_edge.deploy.engine import TensorRTRunner
    from at2seld_edge.deploy.latency_model import engine_layers, graph_layers, read_engine_layers

    bundle, engine = runtime.bundle, runtime.manifest.engine
    info = bundle.path(engine.layer_info) if engine.layer_info else None
    layers = (engine_layers(read_engine_layers(info), graph, precision) if info is not None and info.is_file()
              else graph_layers(graph, "tensorrt", precision))
    runner = TensorRTRunner(bundle.path(engine.file), layer_profiling=True, builder=engine.builder)
    per_layer: dict[str, list[float]] = {}
    for _ in range(runs):
        runner.layer_times.clear()
        runner.run(audio)
        for name, ms in runner.layer_times:
            per_layer.setdefault(name, []).append(ms)
    index = {layer.name: k for k, layer in enumerate(layers)}
    out = [Measurement(label=name[:200], ms=float(np.median(t)), layers=[index[name]], fixed=False)
           for name, t in per_layer.items() if name in index and np.median(t) > 0]
    method = "TensorRT layer profiler, time per layer" if out else "end to end only (no layer matched the profiler's)"
    return layers, [*module_measurements(layers, {}, window.median_ms), *out], method


def write_bench(report: BenchReport, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "bench-" + report.backend.split(" ")[0]
    paths = [out_dir / f"{stem}.json", out_dir / f"{stem}.md"]
    atomic_write_text(paths[0], json.dumps(report.to_dict(), indent=2) + "\n")
    atomic_write_text(paths[1], report.markdown())
    return paths


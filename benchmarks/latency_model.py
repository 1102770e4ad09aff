"""The latency estimate against measurement, per preset, in one run: constants fitted on one preset
and checked on the others.

CPU (always): ONNX Runtime on this machine, per module (its profiling) and end to end. On a shared
machine another process's load only ever adds time, and with ONNX Runtime's two threads on two
cores it adds a lot (a thread descheduled mid-kernel stalls the other), so each preset is measured
in rounds interleaved with the others and the figures are those of its quietest runs: the median
over the `--quickest` runs with the lowest end-to-end time (per module: over the same runs). The
estimate uses the `--device` file's constants and, second, the constants fitted on `--fit-on` alone.

CUDA (`--cuda`, where PyTorch sees a GPU): PyTorch FP16 with CUDA graphs, end to end and per
module, against the estimate for `--gpu-device`, fitted on `--fit-on` the same way.

Always printed last: the estimate for the H100 (devices/nvidia-h100.yaml) next to issue 13's
measured H100 table, which is where those constants come from (fitted on at2seld-cnn14).

    python benchmarks/latency_model.py [--presets ...] [--fit-on at2seld-mobilenetv1] [--rounds 12] [--runs 12] [--quickest 10]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from at2seld_edge.config import load_config
from at2seld_edge.model import build_model
from at2seld_edge.summary import example_audio
from at2seld_edge.deploy.calibrate import fit, module_measurements, predict, samples_from
from at2seld_edge.deploy.devices import load_device
from at2seld_edge.deploy.latency_model import estimate_layers, graph_layers, load_graph
from at2seld_edge.deploy.profiler import Execution, ProfileInput, onnxruntime_latency, torch_cuda_latency, trace_onnx

PRESETS = ["at2seld-nano", "at2seld-cnn10", "at2seld-mobilenetv1", "at2seld-cnn14"]
# Issue 13: NVIDIA H100, PyTorch 2.11, CUDA 13, batch 1, 1 s window, medians of 100 (two machines of
# the same kind, hence the nano range); "fused FP16 + CUDA graph" column, measured with
# shared/gpu-probes/probe3.py. Reference data, not results of this script.
H100_MEASURED_MS = {"at2seld-nano": (0.60, 1.23), "at2seld-cnn10": (2.23, 2.23), "at2seld-mobilenetv1": (2.01, 2.01),
                    "at2seld-cnn14": (1.95, 1.95)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=PRESETS)
    ap.add_argument("--fit-on", default="at2seld-mobilenetv1", help="the one preset the constants are fitted on")
    ap.add_argument("--device", default="x86-cpu", help="device file of this CPU")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--runs", type=int, default=12)
    ap.add_argument("--quickest", type=int, default=10, help="runs per preset the figures come from")
    ap.add_argument("--cuda", action="store_true", help="also measure PyTorch FP16 + CUDA graphs on this GPU")
    ap.add_argument("--gpu-device", default="nvidia-h100", help="device file of this GPU (with --cuda)")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    a = ap.parse_args()
    if a.fit_on not in a.presets:
        ap.error(f"--fit-on {a.fit_on} is not among --presets")
    results = {}
    with tempfile.TemporaryDirectory(prefix="latency-model-") as tmp:
        graphs = {name: _trace(name, Path(tmp)) for name in a.presets}
        results["cpu"] = _cpu(graphs, a)
        if a.cuda:
            results["cuda"] = _cuda(graphs, a)
        results["h100"] = _h100(graphs)
    if a.out:
        a.out.write_text(json.dumps(results, indent=2, default=float) + "\n")


def _trace(name: str, tmp: Path) -> tuple[Path, object, np.ndarray]:
    torch.manual_seed(0)
    model = build_model(load_config(name)).eval()
    audio = example_audio(model, 1.0).numpy()
    return trace_onnx(model, audio, tmp / f"{name}.onnx"), model, audio


def _cpu(graphs: dict, a) -> dict:
    device = load_device(a.device)
    runs: dict[str, list[tuple[float, dict]]] = {n: [] for n in graphs}
    for r in range(a.rounds):
        for name, (path, _, audio) in graphs.items():
            with tempfile.TemporaryDirectory() as work:
                t = onnxruntime_latency(ProfileInput(None, path, audio, "fp32", Path(work)), 3, a.runs)
            runs[name] += [(e2e, {m: v[k] for m, v in t.per_module.items()}) for k, e2e in enumerate(t.end_to_end)]
        print(f"round {r + 1}/{a.rounds}: " + ", ".join(f"{n} {_quietest(runs[n], a.quickest)[0]:.2f} ms"
                                                         for n in graphs), flush=True)
    measured = {n: _quietest(v, a.quickest) for n, v in runs.items()}
    return _compare(graphs, measured, device, "fp32", a.fit_on, f"ONNX Runtime on this CPU ({a.device}), FP32, "
                    f"median of the {a.quickest} quickest of {a.rounds} x {a.runs} runs")


def _quietest(runs: list[tuple[float, dict]], count: int) -> tuple[float, dict]:
    """Median end-to-end and per-module times over the `count` runs with the lowest end-to-end."""
    quiet = sorted(runs, key=lambda r: r[0])[:count]
    modules = quiet[0][1].keys()
    return float(np.median([e for e, _ in quiet])), {m: float(np.median([p[m] for _, p in quiet])) for m in modules}


def _cuda(graphs: dict, a) -> dict:
    if not torch.cuda.is_available():
        print("--cuda: PyTorch sees no CUDA GPU here; skipped")
        return {}
    device = load_device(a.gpu_device)
    measured = {}
    for name, (_, model, audio) in graphs.items():
        with tempfile.TemporaryDirectory() as work:
            t = torch_cuda_latency(ProfileInput(model, None, audio, "fp16", Path(work), Execution("cuda", True)),
                                   20, 100)
        measured[name] = (float(np.median(t.end_to_end)), {m: float(np.median(v)) for m, v in t.per_module.items()})
    return _compare(graphs, measured, device, "fp16", a.fit_on,
                    f"PyTorch FP16 + CUDA graphs on {torch.cuda.get_device_name(0)}, estimate for {a.gpu_device}")


def _compare(graphs: dict, measured: dict, device, precision: str, fit_on: str, title: str) -> dict:
    """Estimate with the device file's constants, and with those fitted on `fit_on` alone."""
    layers = {n: graph_layers(load_graph(p, audio.shape[-1]), device.executor(), precision)
              for n, (p, _, audio) in graphs.items()}
    samples = {n: samples_from(layers[n], module_measurements(layers[n], measured[n][1], measured[n][0]), device)
               for n in graphs}
    fitted = fit(samples[fit_on], device.estimate_constants(), f"fitted on {fit_on}").constants
    print(f"\n{title}; constants fitted on {fit_on}: per layer {fitted.per_layer_us:.2f} us, per inference "
          f"{fitted.per_inference_us:.1f} us, compute efficiency {fitted.compute_efficiency:.3f}, memory efficiency "
          f"{fitted.memory_efficiency:.3f}")
    print("| preset | GMACs | layers | roofline ms | measured ms | estimate ms (file) | ratio | estimate ms (fitted) "
          "| ratio |\n|---|---|---|---|---|---|---|---|---|")
    rows = {}
    for n in graphs:
        est = estimate_layers(layers[n], device, precision, device.executor())
        e2e = samples[n][0]
        after = predict(e2e, fitted)
        rows[n] = {"gmacs": sum(x.macs for x in layers[n]) / 1e9, "layers": len(layers[n]), "roofline_ms": est.roofline_ms,
                   "measured_ms": measured[n][0], "estimate_ms": est.total_ms, "fitted_ms": after,
                   "fitted_on": n == fit_on}
        r = rows[n]
        print(f"| {n}{' (fit)' if n == fit_on else ''} | {r['gmacs']:.2f} | {r['layers']} | {r['roofline_ms']:.3f} | "
              f"{r['measured_ms']:.2f} | {r['estimate_ms']:.2f} | {r['estimate_ms'] / r['measured_ms']:.2f} | "
              f"{after:.2f} | {after / r['measured_ms']:.2f} |")
    worst = max(max(r["fitted_ms"] / r["measured_ms"], r["measured_ms"] / r["fitted_ms"]) for r in rows.values())
    print(f"worst ratio with the fitted constants: {worst:.2f}x")
    return {"title": title, "fitted": fitted.model_dump(mode="json"), "presets": rows, "worst_fitted_ratio": worst}


def _h100(graphs: dict) -> dict:
    device = load_device("nvidia-h100")
    print(f"\nNVIDIA H100: estimate (TensorRT layers at FP16, {device.origin}) next to issue 13's measured "
          "\"fused FP16 + CUDA graph\" (torch.compile, no GPU here)")
    print("| preset | layers | roofline FP16 ms | estimate ms | measured ms (issue 13) | estimate / measured |\n"
          "|---|---|---|---|---|---|")
    rows = {}
    for n, (path, _, audio) in graphs.items():
        layers = graph_layers(load_graph(path, audio.shape[-1]), "tensorrt", "fp16")
        est = estimate_layers(layers, device, "fp16", "tensorrt")
        lo, hi = H100_MEASURED_MS.get(n, (None, None))
        ratio = "-" if lo is None else (f"{est.total_ms / hi:.2f}" if lo == hi
                                        else f"{est.total_ms / hi:.2f}-{est.total_ms / lo:.2f}")
        shown = "-" if lo is None else (f"{lo:.2f}" if lo == hi else f"{lo:.2f}-{hi:.2f}")
        print(f"| {n} | {len(layers)} | {est.roofline_ms:.4f} | {est.total_ms:.2f} | {shown} | {ratio} |")
        rows[n] = {"layers": len(layers), "roofline_ms": est.roofline_ms, "estimate_ms": est.total_ms,
                   "measured_ms": [lo, hi]}
    return rows


if __name__ == "__main__":
    main()

"""PyTorch eager vs ONNX Runtime FP32 vs ONNX Runtime INT8 (Q/DQ) on this CPU, measured in one run.

Reads the output folder of `edge compress` (its fused FP32 and INT8 ONNX files and the checkpoint
they came from) and prints latency per inference over a window of audio, with ratios to PyTorch
eager.

    python benchmarks/runtime_ratios.py --compressed COMPRESSED [--seconds 1] [--runs 50] [--threads 0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from at2seld_edge.checkpoint import load_checkpoint, model_from_checkpoint
from at2seld_edge.onnx_export import OnnxRuntimeModel
from at2seld_edge.timing import LatencyStats, time_runs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--compressed", type=Path, required=True)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: its default)")
    a = ap.parse_args()
    d = a.compressed
    report = json.loads((d / "compression_report.json").read_text())
    ckpt_path = next((d / n for n in ("pruned_finetuned.pt", "pruned.pt") if (d / n).exists()),
                     Path(report["manifest"]["source_checkpoint"]))
    model = model_from_checkpoint(load_checkpoint(ckpt_path)).eval()
    samples = round(a.seconds / model.config.audio.label_hop_s) * model.config.audio.label_hop_samples
    audio = torch.from_numpy((0.1 * np.random.default_rng(0).standard_normal((1, 4, samples))).astype(np.float32))

    def eager():
        with torch.no_grad():
            model(audio)

    candidates = [("PyTorch eager FP32", eager)]
    for name, file in (("ONNX Runtime FP32 (BN folded)", "model.fp32.onnx"), ("ONNX Runtime INT8 Q/DQ", "model.int8.onnx")):
        if (d / file).exists():
            ort_model = OnnxRuntimeModel(d / file, model.config, a.threads)
            candidates.append((name, lambda m=ort_model: m(audio)))
    stats = {name: LatencyStats.of(time_runs(fn, 5, a.runs)) for name, fn in candidates}
    base = stats["PyTorch eager FP32"].median_ms
    print(f"{ckpt_path} ({model.config.name}), {a.seconds:g} s window, torch threads {torch.get_num_threads()}, "
          f"{a.runs} runs")
    print(f"{'runtime':32s} {'median ms':>10s} {'p95 ms':>8s} {'vs eager':>9s}")
    for name, s in stats.items():
        print(f"{name:32s} {s.median_ms:10.2f} {s.p95_ms:8.2f} {base / s.median_ms:8.2f}x")


if __name__ == "__main__":
    main()

"""The compression report: every variant side by side (Markdown for people, JSON for tools)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from at2seld_edge.io import atomic_write_text, markdown_table

if TYPE_CHECKING:
    from at2seld_edge.compress.pipeline import CompressReport


def write_report(report: CompressReport, work: Path) -> None:
    base = report.variants[0]
    rows = []
    for v in report.variants:
        m = v.metrics
        rows.append([v.name, f"{v.params:,}", f"{v.backbone_macs_per_second / 1e6:,.1f}",
                     f"{v.macs_per_second / 1e6:,.1f}", f"{v.size_bytes / 1e6:.2f}",
                     f"{m['ER']:.3f}", f"{m['F']:.3f}", f"{m['LE']:.1f}", f"{m['LR']:.3f}", f"{m['SELD']:.4f}",
                     f"{m['SELD'] - base.metrics['SELD']:+.4f}", *v.timing_cells(), f"{v.latency.p95_ms:.2f}", v.notes])
    r = base.round_ms.rounds
    parts = [
        "# Compression report",
        f"Source: `{report.manifest['source_checkpoint']}`. Metrics on the test split with each model's calibrated "
        "thresholds, all run in ONNX Runtime (CPU). Latency: one inference over 1 s of audio; the graphs are timed "
        f"in turn, one run each and again, {r} rounds of {base.latency.runs // r} runs, each round starting with "
        "another, so the machine's load weighs on all alike. *median ms*: the median of the rounds' medians, in "
        "brackets their range; *speed-up*: the original's round median over the variant's, round by round, median "
        "(range): a range that spans 1.00x is no measured difference. *p95 ms*: over every run. Byte-identical graphs "
        "(same sha256) are timed once and share their figures.",
        markdown_table(["variant", "params", "backbone MMAC/s", "total MMAC/s", "ONNX MB", "ER", "F", "LE", "LR", "SELD",
                   "dSELD", "median ms", "speed-up", "p95 ms", "notes"], rows),
    ]
    if report.pruned_channels is not None:
        parts.append(f"Pruned backbone channels: {report.pruned_channels}")
    if report.sensitivity:
        parts += ["## INT8 sensitivity (one module quantized at a time, validation split)",
                  markdown_table(["module", "quantized nodes", "SELD", "dSELD vs FP32", "INT8 in the final model"],
                            [[r["module"], str(r["nodes"]), f"{r['seld']:.4f}", f"{r['delta']:+.4f}",
                              "yes" if r["quantized"] else "no (kept FP32)"] for r in report.sensitivity]),
                  f"Kept in floating point: {', '.join(report.float_modules)} (the front-end always; a module with "
                  "no sensitivity row has no Conv/MatMul/Gemm to quantize, e.g. the smoother's ONNX GRU; the others "
                  f"when their change exceeds the tolerance {report.options['tolerance']:g})."]
    atomic_write_text(work / "compression_report.md", "\n\n".join(parts) + "\n")
    atomic_write_text(work / "compression_report.json", json.dumps(asdict(report), indent=2, default=float))

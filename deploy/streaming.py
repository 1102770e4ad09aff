"""`edge build`'s stream step for causal models: the stream graph (one hop of audio and explicit,
fixed-shape state in; the hop's frame and the next state out), proven equal to the whole clip in
ONNX Runtime by the export, then linted for the target's TensorRT like the model graph (its
findings appended to lint.md; an error stops the build). The TensorRT parse and build of
deploy/trt_check.py builds it like every other graph."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from at2seld_edge.io import atomic_write_text
from at2seld_edge.model import AT2SELD
from at2seld_edge.onnx_export import StreamExport, export_stream_graph
from at2seld_edge.deploy.lint import lint_onnx


@dataclass
class StreamBuild:
    manifest: dict  # the manifest's `stream` entry
    summary: str


def stream_entry(se: StreamExport) -> dict:
    """The manifest's `stream` entry for an exported stream graph."""
    return {k: v for k, v in asdict(se).items() if k not in ("max_abs_diff", "hops_checked")}  # the check's figures


def stream_graph(fused: AT2SELD, work: Path, tensorrt: str, opset: int) -> StreamBuild:
    """Export, check and lint the stream graph into the bundle folder `work` (the exporter refuses
    a model that is not causal)."""
    se = export_stream_graph(fused, work, opset)
    lint = lint_onnx(work / se.graph, tensorrt, precision="fp32")
    lint_md = work / "lint.md"
    atomic_write_text(lint_md, (lint_md.read_text() if lint_md.is_file() else "") + "\n## Stream graph\n\n"
                      + lint.markdown())
    lint.raise_on_errors()
    diff = max(se.max_abs_diff.values())
    summary = (f"{se.graph}: {len(se.states)} state tensors ({se.state_bytes / 1024:.0f} KiB), lookahead "
               f"{se.lookahead_samples} samples, attention window {se.history_frames} frames; streamed "
               f"{se.hops_checked} hops in ONNX Runtime vs whole clip in PyTorch: max abs diff {diff:.1e}; "
               f"{lint.summary()}")
    return StreamBuild(stream_entry(se), summary)

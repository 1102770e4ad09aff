"""One way to open an ONNX Runtime session, for the exporter's parity check, compression's
scoring, the runtime, the profiler and the TensorRT checks alike: quiet logging, a thread count,
the providers a device choice allows, optional profiling."""

from __future__ import annotations

from pathlib import Path

from at2seld_edge.errors import EdgeError, ErrorKind


def providers_for(device: str) -> list[str]:
    """`cpu`, `cuda` (refused where this onnxruntime has no CUDA provider) or `auto` (CUDA where
    available, else CPU)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise EdgeError("--device cuda: this onnxruntime has no CUDA provider (install onnxruntime-gpu)", ErrorKind.USAGE)
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def session_options(threads: int = 0, profile_prefix: str | None = None, optimized_path: str | Path | None = None,
                    basic_optimizations: bool = False):
    """Quiet options (errors only: ONNX Runtime's warnings about unused initializers are noise
    here); `profile_prefix` turns on its profiling JSON, `optimized_path` saves the graph it runs."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    if optimized_path is not None:
        so.optimized_model_filepath = str(optimized_path)
    if basic_optimizations:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return so


def ort_session(path: str | Path | bytes, device: str = "cpu", **options):
    """A session on `path` (or a serialized model) with `session_options(**options)`."""
    import onnxruntime as ort

    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, session_options(**options), providers=providers_for(device))

"""Does a bundle's manifest describe its files? The ONNX graph's inputs and outputs (names,
ranks, element types, static dimensions), Q/DQ nodes exactly when the precision is INT8, graphs
that hold their own weights, a stream graph whose inputs and outputs are exactly the hop of audio,
the frame and the manifest's states (names, shapes, types, all fixed), and golden arrays of the
shapes the manifest promises. A bundle
is untrusted input: these are checked before anything in it runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from at2seld_edge.deploy.bundle import BundleManifest, TensorSpec

ONNX_DTYPES = {"float32": 1, "float16": 10, "int64": 7, "int32": 6}  # TensorProto element types
QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}
GOLDEN_KEYS = {"audio", "sed_logits", "doa"}


def check_contract(root: Path, m: "BundleManifest") -> list[str]:
    problems = _graph_problems(root, m.model, m.inputs, m.outputs, m.precision)
    if m.stream is not None:
        inputs, outputs = stream_io(m)
        problems += _graph_problems(root, m.stream.graph, inputs, outputs, None, static=True)
    return problems + _golden_problems(root / m.golden, m)


def stream_io(m: "BundleManifest") -> tuple[list["TensorSpec"], list["TensorSpec"]]:
    """What the manifest says the stream graph takes and gives: one hop of audio and every state
    in; one frame of outputs and every next state out; all shapes fixed."""
    from at2seld_edge.deploy.bundle import TensorSpec

    s = m.stream
    tracks, classes = m.outputs[0].shape[2], len(m.class_names)
    frames = s.hop_samples // m.label_hop_samples
    inputs = [TensorSpec(name="audio", shape=[1, 4, s.hop_samples], dtype="float32")]
    outputs = [TensorSpec(name="sed_logits", shape=[1, frames, tracks, classes], dtype="float32"),
               TensorSpec(name="doa", shape=[1, frames, tracks, classes, 3], dtype="float32")]
    inputs += [TensorSpec(name=x.input, shape=x.shape, dtype=x.dtype) for x in s.states]
    outputs += [TensorSpec(name=x.output, shape=x.shape, dtype=x.dtype) for x in s.states]
    return inputs, outputs


def _load_graph(path: Path):
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as e:  # a protobuf that does not parse
        raise ValueError(f"not a readable ONNX model ({type(e).__name__})") from None


def _graph_problems(root: Path, name: str, inputs, outputs, precision: str | None, static: bool = False) -> list[str]:
    """`inputs`/`outputs`/`precision` None: not checked; `static`: every axis of every input and
    output must be fixed in the graph."""
    import onnx

    try:
        model = _load_graph(root / name)
    except ValueError as e:
        return [f"{name}: {e}"]
    g = model.graph
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in g.initializer):
        return [f"{name}: its weights point to external data files; a bundle's graphs hold their own weights"]
    problems = []
    if inputs is not None:
        init = {t.name for t in g.initializer}
        problems += _io_problems(name, "input", [v for v in g.input if v.name not in init], inputs, static)
        problems += _io_problems(name, "output", list(g.output), outputs, static)
    if precision is not None:
        has_qdq = any(n.op_type in QDQ_OPS for n in g.node)
        if precision in ("int8", "best") and not has_qdq:
            problems.append(f"{name}: the manifest says {precision}, but the graph has no QuantizeLinear/"
                            "DequantizeLinear nodes")
        elif precision in ("fp32", "fp16") and has_qdq:
            problems.append(f"{name}: the manifest says {precision}, but the graph is quantized (Q/DQ nodes)")
    return problems


def _io_problems(graph: str, kind: str, values: list, specs: list["TensorSpec"], static: bool = False) -> list[str]:
    got = [v.name for v in values]
    want = [s.name for s in specs]
    if got != want:
        return [f"{graph}: {kind}s {got}, the manifest says {want}"]
    problems = []
    for v, spec in zip(values, specs):
        t = v.type.tensor_type
        if t.elem_type != ONNX_DTYPES[spec.dtype]:
            problems.append(f"{graph}: {kind} {v.name} has element type {t.elem_type}, the manifest says {spec.dtype}")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if len(dims) != len(spec.shape):
            problems.append(f"{graph}: {kind} {v.name} has rank {len(dims)}, the manifest says {len(spec.shape)}")
            continue
        for i, (d, s) in enumerate(zip(dims, spec.shape)):
            if d is None and static:
                problems.append(f"{graph}: {kind} {v.name} axis {i} is dynamic in the graph, {s!r} in the manifest")
            elif d is not None and (isinstance(s, str) or d != s):
                problems.append(f"{graph}: {kind} {v.name} axis {i} is {d} in the graph, {s!r} in the manifest")
    return problems


def _golden_problems(path: Path, m: "BundleManifest") -> list[str]:
    name = path.name
    try:
        with np.load(path, allow_pickle=False) as z:
            if set(z.files) != GOLDEN_KEYS:
                return [f"{name}: arrays {sorted(z.files)}, expected {sorted(GOLDEN_KEYS)}"]
            arrays = {k: z[k] for k in GOLDEN_KEYS}
    except ValueError as e:
        reason = "it holds pickled objects (refused)" if "pickle" in str(e) else str(e)
        return [f"{name}: not a golden file: {reason}"]
    except Exception as e:  # not a zip, a damaged member
        return [f"{name}: not a readable .npz ({type(e).__name__}: {e})"]
    audio, logits, doa = arrays["audio"], arrays["sed_logits"], arrays["doa"]
    if audio.dtype != np.float32 or audio.ndim != 3 or audio.shape[1] != 4 or not len(audio):
        return [f"{name}: audio is {audio.dtype} {audio.shape}, expected float32 (inputs, 4, samples)"]
    w, hop = m.window, m.label_hop_samples
    n = audio.shape[2]
    if n % hop or not w.min_samples <= n <= w.max_samples or (not w.dynamic_time and n != w.samples):
        return [f"{name}: inputs of {n} samples do not fit the window the manifest gives"]
    tracks, classes = m.outputs[0].shape[2], len(m.class_names)
    t = n // hop
    want = {"sed_logits": (len(audio), t, tracks, classes), "doa": (len(audio), t, tracks, classes, 3)}
    problems = []
    for key, arr in (("sed_logits", logits), ("doa", doa)):
        shape = want[key]
        ok = arr.dtype == np.float32 and arr.ndim == len(shape) and all(
            isinstance(s, str) or a == s for a, s in zip(arr.shape, shape))
        if not ok:
            problems.append(f"{name}: {key} is {arr.dtype} {arr.shape}, expected float32 {shape}")
    if not problems and not all(np.isfinite(a).all() for a in arrays.values()):
        problems.append(f"{name}: holds NaN or Inf")
    return problems

"""Does a bundle's manifest describe its files? The ONNX graphs' inputs and outputs (names,
ranks, element types, static dimensions), Q/DQ nodes exactly when the precision is INT8, graphs
(the FP16 one too) that hold their own weights and use standard ONNX operators only, a stream
graph whose inputs and outputs are exactly the hop of audio, the frame and the manifest's states
(names, shapes, types, all fixed), engines that are serialized TensorRT plans, and golden arrays
of the shapes the manifest promises, their sizes read from the zip's and the .npy headers before
any data is. A bundle is untrusted input: these are checked before anything in it runs."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from at2seld_edge.deploy.bundle import BundleManifest, TensorSpec

ONNX_DTYPES = {"float32": 1, "float16": 10, "int64": 7, "int32": 6}  # TensorProto element types
QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}
STANDARD_DOMAINS = ("", "ai.onnx")  # ONNX's own operators; anything else needs a plugin no runtime here loads
GOLDEN_KEYS = {"audio", "sed_logits", "doa"}
MAX_GOLDEN_BYTES = 1 << 30  # a golden file is ~1 MB (three 1 s inputs and their outputs)
# The tags a serialized TensorRT plan begins with (TensorRT-RTX 1.7's serializer writes these three;
# NVIDIA does not document the format). A TensorRT-RTX plan records its own size at byte 16.
ENGINE_TAGS = (b"ftrt", b"vtrt", b"qtrt")
ENGINE_TITLES = {"tensorrt": "TensorRT", "tensorrt-rtx": "TensorRT-RTX"}


def check_contract(root: Path, m: "BundleManifest") -> list[str]:
    problems = _graph_problems(root, m.model, m.inputs, m.outputs, m.precision)
    if m.fp16_model is not None:  # the same model with FP16 weights: the same inputs and outputs
        problems += _graph_problems(root, m.fp16_model, m.inputs, m.outputs, None)
    if m.stream is not None:
        inputs, outputs = stream_io(m)
        problems += _graph_problems(root, m.stream.graph, inputs, outputs, None, static=True)
    return problems + _engine_problems(root, m) + _golden_problems(root / m.golden, m)


def runtime_problem(m: "BundleManifest") -> str | None:
    """What both runtimes rely on beyond the contract: one float32 input and the outputs
    sed_logits and doa with a fixed number of tracks (as the C++ runtime's manifest.cpp)."""
    outputs = {}
    for t in reversed(m.outputs):
        outputs[t.name] = t  # the first of a repeated name, as the C++ runtime finds it
    sed, doa = outputs.get("sed_logits"), outputs.get("doa")
    ok = (len(m.inputs) == 1 and len(m.inputs[0].shape) == 3 and m.inputs[0].dtype == "float32"
          and sed is not None and doa is not None and sed.dtype == doa.dtype == "float32"
          and len(sed.shape) == 4 and len(doa.shape) == 5 and isinstance(sed.shape[2], int)
          and doa.shape[2] == sed.shape[2] and doa.shape[4] == 3)
    return None if ok else ("the runtime takes one float32 input (1, 4, samples) and float32 outputs sed_logits "
                            "(1, frames, tracks, classes) and doa (1, frames, tracks, classes, 3) with a fixed number "
                            "of tracks")


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
    custom = _custom_node(g)
    if custom is not None:
        return [f"{name}: node {custom.name!r} is the custom operator {custom.domain}::{custom.op_type}; a bundle's "
                "graphs use standard ONNX operators only"]
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


def _custom_node(graph):
    """The first node outside ONNX's own domains, subgraphs (If, Loop, Scan bodies) included."""
    import onnx

    stack = [graph]
    while stack:
        g = stack.pop()
        for n in g.node:
            if n.domain not in STANDARD_DOMAINS:
                return n
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    stack.append(a.g)
                stack.extend(a.graphs)
    return None


def _engine_problems(root: Path, m: "BundleManifest") -> list[str]:
    """An engine entry must name a serialized plan (its tag, and for TensorRT-RTX its recorded
    size), not any file renamed: deserializing one is the runtime's first step on the device."""
    if m.engine is None:
        return []
    title = ENGINE_TITLES[m.engine.builder]
    names = [m.engine.file] + ([m.stream.engine] if m.stream is not None and m.stream.engine else [])
    problems = []
    for name in names:
        path = root / name
        with open(path, "rb") as f:
            head = f.read(24)
        size = path.stat().st_size
        if len(head) < 24 or head[:4] not in ENGINE_TAGS:
            problems.append(f"{name}: not a {title} engine (a serialized plan begins with the tag ftrt, vtrt or qtrt)")
        elif m.engine.builder == "tensorrt-rtx" and int.from_bytes(head[16:24], "little") != size:
            problems.append(f"{name}: not a whole {title} engine (its header records "
                            f"{int.from_bytes(head[16:24], 'little'):,} bytes, the file holds {size:,})")
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


def npz_headers(path: Path) -> dict[str, tuple[np.dtype, tuple[int, ...], int]]:
    """Each array of a .npz by name: (dtype, shape, bytes the zip declares for its member), read
    from the zip's directory and the .npy headers alone; no array data is read."""
    from numpy.lib import format as npy

    readers = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0,
               (3, 0): npy.read_array_header_2_0}  # 3.0 differs from 2.0 only in the header's text encoding
    out = {}
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if not info.filename.endswith(".npy") or len(info.filename) < 5:
                raise ValueError(f"{info.filename}: not a .npy member")
            with z.open(info) as f:
                version = npy.read_magic(f)
                if version not in readers:
                    raise ValueError(f"{info.filename}: .npy format version {version[0]} is not supported")
                shape, fortran, dtype = readers[version](f)
            if fortran:
                raise ValueError(f"{info.filename}: Fortran-order array; expected C order")
            out[info.filename[:-4]] = (dtype, shape, info.file_size)
    return out


def _golden_problems(path: Path, m: "BundleManifest") -> list[str]:
    name = path.name
    try:
        headers = npz_headers(path)
    except Exception as e:  # not a zip, a damaged member or header
        return [f"{name}: not a readable .npz ({type(e).__name__}: {e})"]
    if set(headers) != GOLDEN_KEYS:
        return [f"{name}: arrays {sorted(headers)}, expected {sorted(GOLDEN_KEYS)}"]
    if any(dtype.hasobject for dtype, _, _ in headers.values()):
        return [f"{name}: not a golden file: it holds pickled objects (refused)"]
    declared = max(sum(z for _, _, z in headers.values()),
                   sum(math.prod(shape) * dtype.itemsize for dtype, shape, _ in headers.values()))
    if declared > MAX_GOLDEN_BYTES:
        return [f"{name}: its arrays hold {declared:,} bytes; a golden file holds at most {MAX_GOLDEN_BYTES:,}"]
    problems = _golden_shape_problems(name, {k: (dtype, shape) for k, (dtype, shape, _) in headers.items()}, m)
    if problems:
        return problems
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = [z[k] for k in sorted(GOLDEN_KEYS)]  # sizes bounded above: reading is safe now
    except Exception as e:
        return [f"{name}: not a readable .npz ({type(e).__name__}: {e})"]
    return [] if all(np.isfinite(a).all() for a in arrays) else [f"{name}: holds NaN or Inf"]


def _golden_shape_problems(name: str, arrays: dict[str, tuple[np.dtype, tuple]], m: "BundleManifest") -> list[str]:
    (audio_dtype, audio), (logits_dtype, logits), (doa_dtype, doa) = (arrays[k] for k in ("audio", "sed_logits", "doa"))
    if audio_dtype != np.float32 or len(audio) != 3 or audio[1] != 4 or not audio[0]:
        return [f"{name}: audio is {audio_dtype} {audio}, expected float32 (inputs, 4, samples)"]
    w, hop = m.window, m.label_hop_samples
    n = audio[2]
    if n % hop or not w.min_samples <= n <= w.max_samples or (not w.dynamic_time and n != w.samples):
        return [f"{name}: inputs of {n} samples do not fit the window the manifest gives"]
    tracks, classes = m.outputs[0].shape[2], len(m.class_names)
    t = n // hop
    want = {"sed_logits": (audio[0], t, tracks, classes), "doa": (audio[0], t, tracks, classes, 3)}
    problems = []
    for key, dtype, shape in (("sed_logits", logits_dtype, logits), ("doa", doa_dtype, doa)):
        expected = want[key]
        ok = dtype == np.float32 and len(shape) == len(expected) and all(
            isinstance(s, str) or a == s for a, s in zip(shape, expected))
        if not ok:
            problems.append(f"{name}: {key} is {dtype} {shape}, expected float32 {expected}")
    return problems

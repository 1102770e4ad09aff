"""Export AT2SELD (front-end included) to ONNX and prove the file computes what PyTorch does.

Uses torch's TorchScript-based exporter (`dynamo=False`): its node names carry the module path
(`/backbone/conv_block1/conv1/Conv`), which the profiler maps back to the seven named modules,
and it needs no extra dependency. Lives in `at2seld_edge` because compression and deployment
both export.

Every exported graph is simplified before it is checked (`simplify_graph`): onnxslim folds
constants and static shape arithmetic, and reshapes that keep leading axes of their own input
say so with Reshape's 0 (copy this axis) instead of computing them from the input's shape (on a
dynamic time axis each of those computations costs TensorRT's parser tens of shape layers), and
constants of element-wise operations get the rank of the other operand (else the parser adds a
broadcast layer for each).

Causal models also export a stream graph (`export_stream_graph`): one hop of audio and the
model's stream state in, the hop's frame and the next state out, every shape fixed (see
model/stream.py); it is proven by streaming it in ONNX Runtime against the whole clip in PyTorch.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from at2seld_edge.checkpoint import provenance
from at2seld_edge.errors import EdgeError, ErrorKind
from at2seld_edge.io import check_output_file, atomic_path
from at2seld_edge.model import AT2SELD, MODULE_NAMES, OUTPUT_NAMES
from at2seld_edge.model.stream import StreamState, streaming
from at2seld_edge.summary import example_audio

INPUT_NAME = "audio"
MANIFEST_KEY = "at2seld_edge.manifest"
DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-4


class OutputsOnly(nn.Module):
    """The deployable outputs only, as a tuple in OUTPUT_NAMES order."""

    def __init__(self, model: AT2SELD):
        super().__init__()
        self.model = model

    def forward(self, audio: torch.Tensor):
        out = self.model(audio)
        return tuple(out[k] for k in OUTPUT_NAMES)


@dataclass
class ExportResult:
    path: str
    samples: int
    dynamic_time: bool
    max_abs_diff: dict[str, float] = field(default_factory=dict)  # output name -> worst over checked lengths
    checked_lengths: list[int] = field(default_factory=list)


def onnx_manifest(model: AT2SELD, samples: int, dynamic_time: bool, opset: int, extra: dict[str, Any]) -> dict[str, Any]:
    cfg = model.config
    n_frames = model.num_frames(samples)
    t = "frames" if dynamic_time else n_frames
    return {
        **provenance(),
        "artifact": "onnx",
        "opset": opset,
        "config_name": cfg.name,
        "config_fingerprint": cfg.fingerprint(),
        "config": cfg.model_dump(mode="json"),
        "input": {"name": INPUT_NAME, "shape": ["batch", 4, "samples" if dynamic_time else samples], "dtype": "float32"},
        "outputs": {
            "sed_logits": {"shape": ["batch", t, cfg.heads.n_tracks, cfg.num_classes], "dtype": "float32"},
            "doa": {"shape": ["batch", t, cfg.heads.n_tracks, cfg.num_classes, 3], "dtype": "float32"},
        },
        "sample_rate": cfg.audio.sample_rate,
        "channel_order": "ACN (W, Y, Z, X), SN3D",
        "label_hop_s": cfg.audio.label_hop_s,
        "samples_multiple_of": cfg.audio.label_hop_samples,
        "dynamic_time": dynamic_time,
        **extra,
    }


def finish_graph(tmp: Path, out: Path, manifest: dict, what: str) -> None:
    """The traced graph at `tmp`, simplified, with its manifest embedded, checked and saved in place."""
    proto = simplify_graph(onnx.load(str(tmp)))
    del proto.metadata_props[:]
    proto.metadata_props.add(key=MANIFEST_KEY, value=json.dumps(manifest, sort_keys=True))
    proto.producer_name = "at2seld-edge"
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:
        raise EdgeError(f"{out}: exported {what} fails onnx.checker: {e}", ErrorKind.CHECK) from None
    onnx.save(proto, str(tmp))

def export_onnx(model: AT2SELD, out: str | Path, *, seconds: float = 1.0, dynamic_time: bool = False,
                opset: int = DEFAULT_OPSET, tolerance: float = DEFAULT_TOLERANCE,
                manifest_extra: dict[str, Any] | None = None) -> ExportResult:
    """Export, check with onnx.checker, compare with PyTorch in ONNX Runtime; the file appears at
    `out` only if every check passed."""
    model = model.eval()
    audio = example_audio(model, seconds)
    samples = audio.shape[-1]
    dynamic_axes = None
    if dynamic_time:
        dynamic_axes = {INPUT_NAME: {0: "batch", 2: "samples"}}
        dynamic_axes.update({name: {0: "batch", 1: "frames"} for name in OUTPUT_NAMES})
    out = Path(out)
    check_output_file(out)
    with atomic_path(out) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
            torch.onnx.export(
                OutputsOnly(model), (audio,), str(tmp), dynamo=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES), dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
        finish_graph(tmp, out, onnx_manifest(model, samples, dynamic_time, opset, manifest_extra or {}), "graph")
        result = ExportResult(str(out), samples, dynamic_time)
        lengths = [samples]
        if dynamic_time:  # a second, different length proves the time axis is really dynamic
            lengths.append(samples + 2 * model.config.audio.label_hop_samples)
        for n in lengths:
            diffs = compare_with_torch(model, tmp, n)
            for k, v in diffs.items():
                result.max_abs_diff[k] = max(v, result.max_abs_diff.get(k, 0.0))
            result.checked_lengths.append(n)
        worst = max(result.max_abs_diff.values())
        if not worst <= tolerance:
            raise EdgeError(
                f"{out}: ONNX Runtime differs from PyTorch by {worst:.3g} (> {tolerance:g}): "
                + ", ".join(f"{k} {v:.3g}" for k, v in result.max_abs_diff.items()),
                ErrorKind.CHECK,
            )
    return result


def simplify_graph(proto: onnx.ModelProto) -> onnx.ModelProto:
    """onnxslim's constant folding, shape simplification and dead-node removal, then Reshape's
    copy-axis zeros (`reshape_copies_axes`), then onnxslim again to drop the shape arithmetic
    nothing reads any more, then full-rank element-wise constants (`broadcast_constants`).
    Node names (module scopes) and outputs are kept."""
    import onnxslim

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slim = onnxslim.slim(proto)
        if reshape_copies_axes(slim):
            slim = onnxslim.slim(slim, no_shape_infer=True)  # shapes are known from the first pass
    broadcast_constants(slim)
    del slim.metadata_props[:]
    slim.metadata_props.extend(proto.metadata_props)
    return slim


def _constant_values(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            values[n.output[0]] = onnx.numpy_helper.to_array(n.attribute[0].t)
    return values


def _copied_axes(piece: str, data: str, first: int, producers: dict, values: dict) -> int:
    """How many axes from `first` on a piece of a Reshape's shape copies from `data` itself: a
    `Slice(Shape(data), [first], [end])` copies end - first; `Unsqueeze(Gather(Shape(data), first))`
    one; anything else 0."""
    node = producers.get(piece)

    def shape_of_data(name: str) -> bool:
        src = producers.get(name)
        return src is not None and src.op_type == "Shape" and src.input[0] == data and not src.attribute

    if node is not None and node.op_type == "Slice" and shape_of_data(node.input[0]):
        args = [values.get(i) if i else None for i in node.input[1:]] + [None] * 4
        starts, ends, axes, steps = args[:4]
        if (starts is not None and ends is not None and starts.tolist() == [first] and 0 < int(ends[0]) - first < 64
                and (axes is None or axes.tolist() == [0]) and (steps is None or steps.tolist() == [1])):
            return int(ends[0]) - first
    if node is not None and node.op_type == "Unsqueeze":
        gather = producers.get(node.input[0])
        if gather is not None and gather.op_type == "Gather" and shape_of_data(gather.input[0]):
            index = values.get(gather.input[1])
            if index is not None and index.size == 1 and int(index) == first:
                return 1
    return 0


def reshape_copies_axes(proto: onnx.ModelProto) -> int:
    """Rewrite Reshape shapes `Concat(<axes 0..k of the input's own shape>, constants)` as the
    constant `[0]*k + constants`: ONNX Reshape's 0 copies the input's axis (allowzero=0), so the
    result is the same, and TensorRT needs no shape arithmetic for it. Returns how many changed."""
    graph = proto.graph
    producers = {o: n for n in graph.node for o in n.output}
    values = _constant_values(graph)
    changed = 0
    for node in graph.node:
        if node.op_type != "Reshape" or any(a.name == "allowzero" and a.i for a in node.attribute):
            continue
        concat = producers.get(node.input[1])
        if concat is None or concat.op_type != "Concat":
            continue
        shape: list[int] = []
        for piece in concat.input:
            if piece in values:
                shape += values[piece].reshape(-1).tolist()
            elif copied := _copied_axes(piece, node.input[0], len(shape), producers, values):
                shape += [0] * copied
            else:
                break
        else:
            if shape.count(-1) <= 1:
                name = f"{node.input[1]}_copy_axes"
                graph.initializer.append(onnx.numpy_helper.from_array(np.array(shape, np.int64), name))
                node.input[1] = name
                changed += 1
    return changed


_ELEMENTWISE = ("Add", "Sub", "Mul", "Div")


def broadcast_constants(proto: onnx.ModelProto) -> int:
    """Give each initializer operand of an element-wise op the other operand's rank, with leading
    1s (the broadcast ONNX and numpy do implicitly; TensorRT's parser adds a shuffle layer for
    it). Needs the ranks shape inference recorded. Returns how many operands changed."""
    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in (*graph.value_info, *graph.input, *graph.output)
             if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape")}
    changed = 0
    for node in graph.node:
        if node.op_type not in _ELEMENTWISE:
            continue
        for i, name in enumerate(node.input):
            rank = ranks.get(node.input[1 - i])
            if name not in inits or rank is None or len(inits[name].dims) >= rank:
                continue
            full = f"{name}_rank{rank}"
            if full not in inits:
                array = onnx.numpy_helper.to_array(inits[name])
                inits[full] = onnx.numpy_helper.from_array(array.reshape((1,) * (rank - array.ndim) + array.shape), full)
                graph.initializer.append(inits[full])
            node.input[i] = full
            changed += 1
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return changed


def compare_with_torch(model: AT2SELD, onnx_path: str | Path, samples: int, seed: int = 1) -> dict[str, float]:
    """Max abs difference per output between ONNX Runtime (CPU) and PyTorch on random audio."""
    from at2seld_edge.onnx_session import ort_session

    g = torch.Generator().manual_seed(seed)
    audio = 0.1 * torch.randn(1, 4, samples, generator=g)
    with torch.no_grad():
        ref = model.eval()(audio)
    sess = ort_session(onnx_path)
    got = sess.run(list(OUTPUT_NAMES), {INPUT_NAME: audio.numpy()})
    return {name: float(np.max(np.abs(ref[name].numpy() - g_))) for name, g_ in zip(OUTPUT_NAMES, got)}


def read_manifest(path: str | Path) -> dict[str, Any]:
    proto = onnx.load(str(path), load_external_data=False)
    for prop in proto.metadata_props:
        if prop.key == MANIFEST_KEY:
            return json.loads(prop.value)
    raise EdgeError(f"{path}: no at2seld-edge manifest in the ONNX metadata")


def module_of_node(name: str, modules: tuple[str, ...] = MODULE_NAMES) -> str | None:
    """`/model/backbone/conv_block1/conv1/Conv` -> `backbone`: the exporter's name scopes."""
    for part in name.strip("/").split("/")[:-1]:
        if part in modules:
            return part
    return None


class OnnxRuntimeModel:
    """An exported (or quantized) ONNX file in ONNX Runtime on CPU, called like the PyTorch model
    (audio tensor -> dict of output tensors), so evaluation code runs on either."""

    def __init__(self, path: str | Path, config, threads: int = 0):
        from at2seld_edge.onnx_session import ort_session

        self.path = str(path)
        self.config = config
        self.session = ort_session(path, "cpu", threads=threads)

    def eval(self) -> "OnnxRuntimeModel":
        return self

    def __call__(self, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        got = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: audio.numpy().astype(np.float32, copy=False)})
        return {k: torch.from_numpy(v) for k, v in zip(OUTPUT_NAMES, got)}


# ----------------------------------------------------------------------------- the stream graph

STREAM_GRAPH = "stream.onnx"
STATE_IN, STATE_OUT = "state_in.", "state_out."


@dataclass
class StateTensor:
    """One piece of stream state: the layer's name, the graph input that takes it, the graph
    output that gives its next value, its fixed shape."""

    name: str
    input: str
    output: str
    shape: list[int]
    dtype: str = "float32"

    @property
    def bytes(self) -> int:
        return math.prod(self.shape) * 4


@dataclass
class StreamExport:
    """The stream graph: one hop of audio (1, 4, hop_samples) and every state in; the hop's
    frames and every next state out. No lookahead: a frame is out once its hop is in."""

    graph: str
    hop_samples: int
    lookahead_samples: int
    context_samples: int  # how far back the encoders reach (held by the per-layer caches)
    history_frames: int  # the track transformer's attention window
    states: list[StateTensor]
    max_abs_diff: dict[str, float] = field(default_factory=dict)  # streamed vs whole-clip PyTorch
    hops_checked: int = 0

    @property
    def state_bytes(self) -> int:
        return sum(s.bytes for s in self.states)


def initial_stream_state(model: AT2SELD) -> dict[str, torch.Tensor]:
    """Every causal layer's state at the start of a stream (zeros), by name, in the order one
    step uses them."""
    state = StreamState()
    with torch.no_grad(), streaming(state):
        model.eval()(torch.zeros(1, 4, model.config.audio.label_hop_samples))
    return {k: torch.zeros_like(v) for k, v in state.next.items()}


class _StreamStep(nn.Module):
    """One hop: (audio, *states) -> (sed_logits, doa, *next states), states in `names` order."""

    def __init__(self, model: AT2SELD, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, audio: torch.Tensor, *states: torch.Tensor):
        state = StreamState(dict(zip(self.names, states)))
        with streaming(state):
            out = self.model(audio)
        return (*(out[k] for k in OUTPUT_NAMES), *(state.next[n] for n in self.names))


def encoder_receptive_field(model: AT2SELD, seconds: float = 6.0) -> tuple[int, int]:
    """(past, future) label frames the fused features of one frame depend on, found by changing
    the audio of one frame and seeing which fused frames move."""
    hop = model.config.audio.label_hop_samples
    n = int(round(seconds / model.config.audio.label_hop_s))
    g = torch.Generator().manual_seed(0)
    audio = 0.1 * torch.randn(1, 4, n * hop, generator=g, dtype=torch.float64)
    mid = n // 2
    bumped = audio.clone()
    bumped[..., mid * hop: (mid + 1) * hop] += 0.1 * torch.randn(1, 4, hop, generator=g, dtype=torch.float64)
    m = model.eval().double()
    try:
        with torch.no_grad():
            diff = (m.encode(audio)[0] - m.encode(bumped)[0]).abs().amax(dim=(0, 2))
    finally:
        model.float()
    moved = torch.nonzero(diff > 1e-12).flatten()
    first, last = int(moved.min()), int(moved.max())
    if first == 0 or last == n - 1:
        raise EdgeError(f"{model.config.name}: the encoders' receptive field exceeds {seconds:g} s; "
                        "streaming needs a finite one", ErrorKind.CHECK)
    return last - mid, mid - first  # a frame sees this many frames back (past) and ahead (future)


def export_stream_graph(model: AT2SELD, out_dir: str | Path, opset: int = DEFAULT_OPSET,
                        tolerance: float = DEFAULT_TOLERANCE) -> StreamExport:
    """Export the stream graph of a causal model (fixed shapes throughout) and prove that
    streaming it in ONNX Runtime from the zero state gives the whole-clip PyTorch outputs; the
    file appears in `out_dir` only if it does."""
    cfg = model.config
    if not cfg.causal:
        raise EdgeError(f"{cfg.name}: streaming needs a causal model (smoother.causal: true), e.g. the preset "
                        "at2seld-nano-causal", ErrorKind.USAGE)
    model = model.eval()
    hop = cfg.audio.label_hop_samples
    past, future = encoder_receptive_field(model)
    if future:
        raise EdgeError(f"{cfg.name}: the encoders look {future} frame(s) ahead; a causal model's must not",
                        ErrorKind.CHECK)
    init = initial_stream_state(model)
    states = [StateTensor(k, STATE_IN + k, STATE_OUT + k, list(v.shape)) for k, v in init.items()]
    result = StreamExport(STREAM_GRAPH, hop, 0, (past + 1) * hop, cfg.track_transformer.history_frames, states)
    out = Path(out_dir) / STREAM_GRAPH
    check_output_file(out)
    with atomic_path(out) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(_StreamStep(model, list(init)), (torch.zeros(1, 4, hop), *init.values()), str(tmp),
                              dynamo=False, opset_version=opset, input_names=[INPUT_NAME, *(s.input for s in states)],
                              output_names=[*OUTPUT_NAMES, *(s.output for s in states)], do_constant_folding=True)
        finish_graph(tmp, out, {**provenance(), "artifact": "stream_graph", "opset": opset, "config_name": cfg.name,
                                "config_fingerprint": cfg.fingerprint(), **asdict(result)}, "stream graph")
        result.hops_checked = cfg.track_transformer.history_frames + 10  # past the attention window's fill
        result.max_abs_diff = compare_stream_with_torch(model, tmp, states, result.hops_checked)
        worst = max(result.max_abs_diff.values())
        if not worst <= tolerance:
            raise EdgeError(f"{out}: streaming it in ONNX Runtime differs from the whole clip in PyTorch by "
                            f"{worst:.3g} (> {tolerance:g})", ErrorKind.CHECK)
    return result


def compare_stream_with_torch(model: AT2SELD, graph: str | Path, states: list[StateTensor], hops: int,
                              seed: int = 1) -> dict[str, float]:
    """Max abs difference per output between the stream graph in ONNX Runtime (CPU), one hop per
    call from the zero state, and PyTorch on the whole clip of random audio."""
    from at2seld_edge.onnx_session import ort_session

    hop = model.config.audio.label_hop_samples
    g = torch.Generator().manual_seed(seed)
    audio = 0.1 * torch.randn(1, 4, hops * hop, generator=g)
    with torch.no_grad():
        ref = model.eval()(audio)
    sess = ort_session(graph)
    feeds = {s.input: np.zeros(s.shape, np.float32) for s in states}
    got = {k: [] for k in OUTPUT_NAMES}
    for i in range(hops):
        feeds[INPUT_NAME] = audio[..., i * hop: (i + 1) * hop].numpy()
        out = sess.run(None, feeds)
        for k, v in zip(OUTPUT_NAMES, out):
            got[k].append(v)
        feeds.update({s.input: v for s, v in zip(states, out[len(OUTPUT_NAMES):])})
    return {k: float(np.max(np.abs(ref[k].numpy() - np.concatenate(got[k], axis=1)))) for k in OUTPUT_NAMES}

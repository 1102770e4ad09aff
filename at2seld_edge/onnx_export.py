"""Export AT2SELD (front-end included) to ONNX and prove the file computes what PyTorch does.

Uses torch's TorchScript-based exporter (`dynamo=False`): its node names carry the module path
(`/backbone/conv_block1/conv1/Conv`), which the profiler maps back to the seven named modules,
and it needs no extra dependency. Lives in `at2seld_edge` because compression and deployment
both export.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from at2seld_edge.checkpoint import provenance
from at2seld_edge.errors import EdgeError, ErrorKind
from at2seld_edge.io import atomic_path
from at2seld_edge.model import AT2SELD, MODULE_NAMES, OUTPUT_NAMES
from at2seld_edge.summary import example_audio

INPUT_NAME = "audio"
MANIFEST_KEY = "at2seld_edge.manifest"
DEFAULT_OPSET = 17
DEFAULT_TOLERANCE = 1e-4


class _Outputs(nn.Module):
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
    with atomic_path(out) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
            torch.onnx.export(
                _Outputs(model), (audio,), str(tmp), dynamo=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES), dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
        proto = onnx.load(str(tmp))
        manifest = onnx_manifest(model, samples, dynamic_time, opset, manifest_extra or {})
        del proto.metadata_props[:]
        proto.metadata_props.add(key=MANIFEST_KEY, value=json.dumps(manifest, sort_keys=True))
        proto.producer_name = "at2seld-edge"
        try:
            onnx.checker.check_model(proto, full_check=True)
        except Exception as e:
            raise EdgeError(f"{out}: exported graph fails onnx.checker: {e}", ErrorKind.CHECK) from None
        onnx.save(proto, str(tmp))
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


def compare_with_torch(model: AT2SELD, onnx_path: str | Path, samples: int, seed: int = 1) -> dict[str, float]:
    """Max abs difference per output between ONNX Runtime (CPU) and PyTorch on random audio."""
    import onnxruntime as ort

    g = torch.Generator().manual_seed(seed)
    audio = 0.1 * torch.randn(1, 4, samples, generator=g)
    with torch.no_grad():
        ref = model.eval()(audio)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
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
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = threads
        self.path = str(path)
        self.config = config
        self.session = ort.InferenceSession(self.path, so, providers=["CPUExecutionProvider"])

    def eval(self) -> "OnnxRuntimeModel":
        return self

    def __call__(self, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        got = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: audio.numpy().astype(np.float32, copy=False)})
        return {k: torch.from_numpy(v) for k, v in zip(OUTPUT_NAMES, got)}


# ----------------------------------------------------------------------------- streaming graphs

STREAM_ENCODER, STREAM_DECODER = "stream_encoder.onnx", "stream_decoder.onnx"


class _StreamEncoder(nn.Module):
    def __init__(self, model: AT2SELD):
        super().__init__()
        self.model = model

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.model.encode(audio)[0]


class _StreamDecoder(nn.Module):
    """Track transformer over the fused history, then the GRU over the newest `new_frames`
    frames only, from the carried state."""

    def __init__(self, model: AT2SELD):
        super().__init__()
        self.model = model

    def forward(self, fused: torch.Tensor, new_frames: torch.Tensor, state_in: torch.Tensor):
        m = self.model
        tracks = m.track_transformer(fused)
        tracks = tracks[:, tracks.shape[1] - new_frames:]
        y, state = m.smoother.step(tracks, state_in)
        return m.heads.sed(y), torch.tanh(m.heads.doa(y)).unflatten(-1, (m.heads.num_classes, 3)), state


@dataclass
class StreamExport:
    encoder: str
    decoder: str
    context_samples: int
    lookahead_samples: int
    state_shape: list[int]


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


def export_stream_graphs(model: AT2SELD, out_dir: str | Path, opset: int = DEFAULT_OPSET) -> StreamExport:
    """The two graphs a causal model streams with (see deploy.runtime.Streamer)."""
    cfg = model.config
    if not cfg.smoother.causal:
        raise EdgeError(f"{cfg.name}: streaming needs a causal model (smoother.causal: true)", ErrorKind.USAGE)
    model = model.eval()
    hop = cfg.audio.label_hop_samples
    past, future = encoder_receptive_field(model)
    context, lookahead = (past + 1) * hop, (future + 1) * hop  # one frame of margin each side
    out_dir = Path(out_dir)
    audio = example_audio(model, 2.0)
    with torch.no_grad():
        fused = model.encode(audio)[0]
    gru = model.smoother.gru
    state = torch.zeros(gru.num_layers * (2 if gru.bidirectional else 1), cfg.heads.n_tracks, gru.hidden_size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        with atomic_path(out_dir / STREAM_ENCODER) as tmp:
            torch.onnx.export(_StreamEncoder(model), (audio,), str(tmp), dynamo=False, opset_version=opset,
                              input_names=["audio"], output_names=["fused"],
                              dynamic_axes={"audio": {2: "samples"}, "fused": {1: "frames"}}, do_constant_folding=True)
        with atomic_path(out_dir / STREAM_DECODER) as tmp:
            torch.onnx.export(_StreamDecoder(model), (fused, torch.tensor(4), state), str(tmp), dynamo=False,
                              opset_version=opset, input_names=["fused", "new_frames", "state_in"],
                              output_names=["sed_logits", "doa", "state_out"],
                              dynamic_axes={"fused": {1: "history"}, "sed_logits": {1: "frames"}, "doa": {1: "frames"}},
                              do_constant_folding=True)
    for name in (STREAM_ENCODER, STREAM_DECODER):
        try:
            onnx.checker.check_model(str(out_dir / name), full_check=True)
        except Exception as e:
            raise EdgeError(f"{out_dir / name}: exported graph fails onnx.checker: {e}", ErrorKind.CHECK) from None
    return StreamExport(STREAM_ENCODER, STREAM_DECODER, context, lookahead, list(state.shape))

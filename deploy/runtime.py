"""The Python runtime: a bundle, loaded after its integrity check, run by ONNX Runtime (CPU or
CUDA provider) or by its TensorRT engine, on whole clips or as a stream.

Backends are looked up by name in `RUNTIMES`; `auto` takes the bundle's engine where its builder
(TensorRT or TensorRT-RTX) imports and a GPU is visible, else ONNX Runtime. Each backend runs one graph:
`run(feeds) -> outputs`, numpy in and out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from at2seld_edge.errors import EdgeError, ErrorKind
from at2seld_edge.evaluation.decode import sigmoid
from at2seld_edge.registry import Registry
from at2seld_edge.deploy.bundle import Bundle, load_bundle
from at2seld_edge.deploy.engine import check_engine_compatible, engine_backend, engine_runner


class GraphSession(Protocol):
    name: str

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


RUNTIMES: Registry[Callable[[Bundle, str, str], GraphSession]] = Registry("runtime backend")


@RUNTIMES.register("onnxruntime")
class OnnxRuntimeSession:
    """ONNX Runtime on the bundle's ONNX file: CUDA provider where it is installed and
    `device` allows, else CPU."""

    def __init__(self, bundle: Bundle, graph: str, device: str = "auto", threads: int = 0):
        import onnxruntime as ort

        available = ort.get_available_providers()
        if device == "cuda" and "CUDAExecutionProvider" not in available:
            raise EdgeError("--device cuda: this onnxruntime has no CUDA provider (install onnxruntime-gpu)", ErrorKind.USAGE)
        providers = ["CPUExecutionProvider"]
        if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
            providers.insert(0, "CUDAExecutionProvider")
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(bundle.path(graph)), so, providers=providers)
        self.provider = self.session.get_providers()[0]
        self.name = f"onnxruntime ({self.provider})"
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))


@RUNTIMES.register("tensorrt")
def tensorrt_session(bundle: Bundle, graph: str, device: str = "auto") -> GraphSession:
    from at2seld_edge.deploy.engine import TensorRTRunner

    engine = bundle.manifest.engine
    if engine is None or graph != bundle.manifest.model:
        raise EdgeError(f"{bundle.root}: no TensorRT engine for {graph} in this bundle (built where TensorRT was "
                        "absent): run `edge build` on the device, or use --backend onnxruntime", ErrorKind.USAGE)
    check_engine_compatible(engine, bundle.root)
    return TensorRTRunner(bundle.path(engine.file))


@RUNTIMES.register("tensorrt-rtx")
def tensorrt_rtx_session(bundle: Bundle, graph: str, device: str = "auto") -> GraphSession:
    return engine_runner(bundle, graph, "tensorrt-rtx")


def choose_backend(bundle: Bundle, backend: str) -> str:
    if backend != "auto":
        RUNTIMES.get(backend)
        return backend
    return engine_backend(bundle) or "onnxruntime"


class SeldRuntime:
    """A loaded bundle: whole-clip inference in the bundle's windows, decoding with its
    thresholds, and streaming for causal models."""

    def __init__(self, bundle: Bundle | str | Path, backend: str = "auto", device: str = "auto"):
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        m = self.bundle.manifest
        self.backend = choose_backend(self.bundle, backend)
        self._make = lambda graph: RUNTIMES.get(self.backend)(self.bundle, graph, device)
        self.session = self._make(m.model)
        self.input_name = m.inputs[0].name
        self.hop = m.label_hop_samples
        self.n_tracks, self.n_classes = m.outputs[0].shape[2], m.outputs[0].shape[3]

    @property
    def manifest(self):
        return self.bundle.manifest

    def check_audio(self, audio: np.ndarray, source: str) -> np.ndarray:
        """(4, samples) float32 of finite values: a NaN would spread through every frame of its
        window and come out as confident nonsense, so it is refused here (silence is fine)."""
        if audio.ndim != 2 or audio.shape[0] != 4:
            raise EdgeError(f"{source}: {audio.shape[0] if audio.ndim == 2 else audio.ndim} channels, the bundle "
                            f"expects 4 (FOA, {self.manifest.channel_order})")
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        bad = non_finite(audio)
        if bad is not None:
            raise EdgeError(f"{source}: {describe_non_finite(bad)}; `edge run --repair` zeros them")
        return audio

    def infer(self, audio: np.ndarray) -> dict[str, np.ndarray]:
        """One inference: audio (B, 4, samples) in a length the bundle accepts."""
        w = self.manifest.window
        if audio.ndim != 3 or audio.shape[1] != 4:
            raise EdgeError(f"{self.bundle.root}: input of shape {tuple(audio.shape)}; the bundle takes "
                            "(batch, 4, samples)", ErrorKind.USAGE)
        n = audio.shape[-1]
        if (not w.dynamic_time and n != w.samples) or not w.min_samples <= n <= w.max_samples or n % self.hop:
            allowed = (f"{w.samples}" if not w.dynamic_time else
                       f"a multiple of {self.hop} in [{w.min_samples}, {w.max_samples}]")
            raise EdgeError(f"{self.bundle.root}: input of {n} samples; the bundle takes {allowed}", ErrorKind.USAGE)
        return self.session.run({self.input_name: np.ascontiguousarray(audio, dtype=np.float32)})

    def predict(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A whole clip (4, samples) -> SED probabilities (T, N, C) and DOA (T, N, C, 3): the clip's
        whole label frames, in windows of the bundle's maximum length (zero-padding a static
        bundle's last window), as `edge evaluate` does in PyTorch."""
        audio = self.check_audio(audio, "audio")
        w = self.manifest.window
        n_frames = audio.shape[1] // self.hop
        probs = np.zeros((n_frames, self.n_tracks, self.n_classes), np.float32)
        doa = np.zeros((n_frames, self.n_tracks, self.n_classes, 3), np.float32)
        step = (w.max_samples if w.dynamic_time else w.samples) // self.hop
        for f0 in range(0, n_frames, step):
            f1 = min(f0 + step, n_frames)
            chunk = audio[:, f0 * self.hop: f1 * self.hop]
            if not w.dynamic_time and chunk.shape[1] < w.samples:
                chunk = np.pad(chunk, ((0, 0), (0, w.samples - chunk.shape[1])))
            elif chunk.shape[1] < w.min_samples:
                chunk = np.pad(chunk, ((0, 0), (0, w.min_samples - chunk.shape[1])))
            out = self.infer(chunk[None])
            probs[f0:f1] = _sigmoid(out["sed_logits"][0, : f1 - f0])
            doa[f0:f1] = out["doa"][0, : f1 - f0]
        return probs, doa

    def stream(self) -> "Streamer":
        if self.manifest.stream is None:
            raise EdgeError(f"{self.bundle.root}: this model is not causal (bidirectional smoother), so it does not "
                            "stream; build a causal config (smoother.causal: true)", ErrorKind.USAGE)
        return Streamer(self)


def non_finite(audio: np.ndarray) -> tuple[int, int, int] | None:
    """(count, channel, sample) of the non-finite values of (channels, samples) audio, or None."""
    bad = ~np.isfinite(audio)
    if not bad.any():
        return None
    ch, idx = np.nonzero(bad)
    first = int(np.argmin(idx))
    return int(bad.sum()), int(ch[first]), int(idx[first])


def describe_non_finite(bad: tuple[int, int, int]) -> str:
    return f"{bad[0]} non-finite sample(s) (NaN or Inf), the first at sample {bad[2]} of channel {bad[1]}"


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return sigmoid(x).astype(np.float32)


class Streamer:
    """Feed audio in any pieces; get each label frame's SED probabilities and DOA as soon as the
    encoders' lookahead allows. The encoders see `context_samples` of past audio and
    `lookahead_samples` of future audio around each new hop; the track transformer sees the fused
    history and the GRU smoother carries its state, so the frames equal a whole-clip inference."""

    def __init__(self, rt: SeldRuntime):
        s = rt.manifest.stream
        self.rt, self.spec = rt, s
        self.encoder, self.decoder = rt._make(s.encoder), rt._make(s.decoder)
        self.hop = rt.hop
        self.audio = np.zeros((4, 0), np.float32)  # from self.offset on
        self.offset = 0  # absolute sample index of self.audio[:, 0]
        self.next_frame = 0  # first label frame not yet emitted
        self.history = None  # fused frames so far (1, T, d)
        self.state = np.zeros(s.state_shape, np.float32)

    def push(self, audio: np.ndarray, final: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Append audio (4, n); return the frames it completes (T_new, N, C), (T_new, N, C, 3).
        `final` marks the end of the stream: the last whole frames are emitted without lookahead."""
        audio = self.rt.check_audio(audio, "stream")
        self.audio = np.concatenate([self.audio, audio], axis=1)
        end = self.offset + self.audio.shape[1]  # samples received
        total_frames = end // self.hop
        if final:
            ready = total_frames
        else:
            ready = max(0, (end - self.spec.lookahead_samples) // self.hop)
        if ready <= self.next_frame:
            return self._empty()
        f0, f1 = self.next_frame, ready
        start = max(0, f0 * self.hop - self.spec.context_samples)
        stop = min(end, f1 * self.hop + self.spec.lookahead_samples)
        stop -= (stop - start) % self.hop
        window = self.audio[:, start - self.offset: stop - self.offset]
        fused = self.encoder.run({"audio": window[None]})["fused"]
        first = f0 - start // self.hop
        new = fused[:, first: first + (f1 - f0)]
        self.history = new if self.history is None else np.concatenate([self.history, new], axis=1)
        out = self.decoder.run({"fused": self.history, "new_frames": np.array(f1 - f0, np.int64),
                                "state_in": self.state})
        self.state = out["state_out"]
        self.next_frame = f1
        keep_from = max(0, f1 * self.hop - self.spec.context_samples)  # drop audio no window needs again
        self.audio = self.audio[:, keep_from - self.offset:]
        self.offset = keep_from
        return _sigmoid(out["sed_logits"][0]), out["doa"][0]

    def _empty(self):
        n, c = self.rt.n_tracks, self.rt.n_classes
        return np.zeros((0, n, c), np.float32), np.zeros((0, n, c, 3), np.float32)

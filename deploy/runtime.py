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
from at2seld_edge.onnx_session import ort_session
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
        stream = bundle.manifest.stream
        if not threads and stream is not None and graph == stream.graph:
            threads = 1  # one hop is too little work to split: ONNX Runtime's thread hand-offs would cost more
        self.path = bundle.path(graph)
        try:
            self.session = ort_session(self.path, device, threads=threads)
        except EdgeError:
            raise
        except Exception as e:  # onnxruntime's own error types: a graph it cannot load
            raise EdgeError(f"{self.path}: ONNX Runtime cannot load it ({_one_line(e)})") from None
        self.provider = self.session.get_providers()[0]
        self.name = f"onnxruntime ({self.provider})"
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))
        except Exception as e:
            raise EdgeError(f"{self.path}: ONNX Runtime failed to run it ({_one_line(e)})", ErrorKind.CHECK) from None


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def check_outputs(out: dict[str, np.ndarray], expected: dict[str, tuple[int, ...]], graph: Path) -> None:
    """Every output the runtime reads must have the shape the manifest gives for this input: a
    graph that computes another (its declared shape a lie) is refused, never read by the
    manifest's sizes (the C++ runtime checks the same, with the same message)."""
    for name, shape in expected.items():
        if name not in out:
            raise EdgeError(f"{graph}: returned no output {name}", ErrorKind.CHECK)
        if out[name].dtype != np.float32:
            raise EdgeError(f"{graph}: output {name} came back as {out[name].dtype}, not float32", ErrorKind.CHECK)
        if tuple(out[name].shape) != shape:
            raise EdgeError(f"{graph}: output {name} came back with shape {tuple(out[name].shape)}; the manifest says "
                            f"{shape}", ErrorKind.CHECK)


def stream_engine_session(bundle: Bundle, builder: str) -> GraphSession:
    """The stream graph's engine, built beside the bundle's engine (so the same compatibility
    record holds for it)."""
    from at2seld_edge.deploy.engine import TensorRTRunner

    m = bundle.manifest
    if m.stream.engine is None or m.engine is None or m.engine.builder != builder:
        raise EdgeError(f"{bundle.root}: no {builder} engine for the stream graph {m.stream.graph} in this bundle: "
                        f"run `edge build` for the device, or use --backend onnxruntime", ErrorKind.USAGE)
    check_engine_compatible(m.engine, bundle.root)
    return TensorRTRunner(bundle.path(m.stream.engine), builder=builder)


@RUNTIMES.register("tensorrt")
def tensorrt_session(bundle: Bundle, graph: str, device: str = "auto") -> GraphSession:
    if bundle.manifest.stream is not None and graph == bundle.manifest.stream.graph:
        return stream_engine_session(bundle, "tensorrt")
    if bundle.manifest.engine is None or graph != bundle.manifest.model:
        raise EdgeError(f"{bundle.root}: no TensorRT engine for {graph} in this bundle (built where TensorRT was "
                        "absent): run `edge build` on the device, or use --backend onnxruntime", ErrorKind.USAGE)
    return engine_runner(bundle, graph, "tensorrt")  # refuses an engine another builder made (TensorRT-RTX's)


@RUNTIMES.register("tensorrt-rtx")
def tensorrt_rtx_session(bundle: Bundle, graph: str, device: str = "auto") -> GraphSession:
    if bundle.manifest.stream is not None and graph == bundle.manifest.stream.graph:
        return stream_engine_session(bundle, "tensorrt-rtx")
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
        out = self.session.run({self.input_name: np.ascontiguousarray(audio, dtype=np.float32)})
        frames = (len(audio), n // self.hop, self.n_tracks, self.n_classes)
        check_outputs(out, {"sed_logits": frames, "doa": (*frames, 3)}, self.bundle.path(self.manifest.model))
        return out

    def predict(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A whole clip (4, samples) -> SED probabilities (T, N, C) and DOA (T, N, C, 3): the clip's
        whole label frames, in windows of the bundle's maximum length (zero-padding a static
        bundle's last window), as `edge evaluate` does in PyTorch."""
        audio = self.check_audio(audio, "audio")
        w = self.manifest.window
        n_frames = audio.shape[1] // self.hop
        probs = np.zeros((0, self.n_tracks, self.n_classes), np.float32)
        doa = np.zeros((0, self.n_tracks, self.n_classes, 3), np.float32)
        step = (w.max_samples if w.dynamic_time else w.samples) // self.hop
        for f0 in range(0, n_frames, step):
            f1 = min(f0 + step, n_frames)
            chunk = audio[:, f0 * self.hop: f1 * self.hop]
            if not w.dynamic_time and chunk.shape[1] < w.samples:
                chunk = np.pad(chunk, ((0, 0), (0, w.samples - chunk.shape[1])))
            elif chunk.shape[1] < w.min_samples:
                chunk = np.pad(chunk, ((0, 0), (0, w.min_samples - chunk.shape[1])))
            out = self.infer(chunk[None])  # outputs of the manifest's shapes (checked)
            if f0 == 0:  # allocated once a real output has shown the manifest's tracks and classes are the graph's
                probs = np.zeros((n_frames, self.n_tracks, self.n_classes), np.float32)
                doa = np.zeros((n_frames, self.n_tracks, self.n_classes, 3), np.float32)
            probs[f0:f1] = _sigmoid(out["sed_logits"][0, : f1 - f0])
            doa[f0:f1] = out["doa"][0, : f1 - f0]
        return probs, doa

    def stream(self) -> "Streamer":
        if self.manifest.stream is None:
            raise EdgeError(f"{self.bundle.root}: this model is not causal, so it does not stream; build a streaming "
                            "bundle: `edge build --streaming` (the embedded causal default) or a causal checkpoint "
                            "(smoother.causal: true)", ErrorKind.USAGE)
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
    """Feed audio in pieces of any size; get each label frame's SED probabilities and DOA as soon
    as its hop of audio is in (causal models need no lookahead). Each hop runs the bundle's stream
    graph once: the hop's audio and the state in, the frame and the next state out. The state is
    every causal layer's left context, of fixed size (the manifest's `stream.states`), and the
    only audio held is one partial hop, so memory stays flat however long the stream; a stream
    equals a whole-clip inference of the same model."""

    def __init__(self, rt: SeldRuntime):
        s = rt.manifest.stream
        self.rt, self.spec = rt, s
        self.session = rt._make(s.graph)
        self.hop = s.hop_samples
        self.pending = np.zeros((1, 4, self.hop), np.float32)  # the partial hop
        self.reset()

    def reset(self) -> None:
        """Start a new stream: zero state, nothing pending."""
        self.feeds = {"audio": self.pending, **{x.input: np.zeros(x.shape, np.float32) for x in self.spec.states}}
        self.filled = 0

    def push(self, audio: np.ndarray, final: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Append audio (4, n); return the frames it completes, (T_new, N, C) probabilities and
        (T_new, N, C, 3) DOA. `final` ends the stream: a partial last hop is dropped (not a whole
        label frame, as in `predict`) and the streamer starts afresh."""
        audio = self.rt.check_audio(audio, "stream")
        n = audio.shape[1]
        frames = (self.filled + n) // self.hop
        probs, doa = [np.zeros((0, self.rt.n_tracks, self.rt.n_classes), np.float32)], [
            np.zeros((0, self.rt.n_tracks, self.rt.n_classes, 3), np.float32)]
        pos = 0
        for _ in range(frames):
            take = self.hop - self.filled
            self.pending[0, :, self.filled:] = audio[:, pos: pos + take]
            pos += take
            self.filled = 0
            p, d = self._hop()  # of the manifest's shapes (checked): no buffer is sized by the manifest first
            probs.append(p[None])
            doa.append(d[None])
        self.pending[0, :, self.filled: self.filled + n - pos] = audio[:, pos:]
        self.filled += n - pos
        if final:
            self.reset()
        return np.concatenate(probs), np.concatenate(doa)

    def _hop(self) -> tuple[np.ndarray, np.ndarray]:
        out = self.session.run(self.feeds)
        frame = (1, 1, self.rt.n_tracks, self.rt.n_classes)
        check_outputs(out, {"sed_logits": frame, "doa": (*frame, 3), **{x.output: tuple(x.shape) for x in self.spec.states}},
                      self.rt.bundle.path(self.spec.graph))
        for x in self.spec.states:
            self.feeds[x.input] = out[x.output]
        return _sigmoid(out["sed_logits"][0, 0]), out["doa"][0, 0]

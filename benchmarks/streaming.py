"""Always-on streaming on this CPU with ONNX Runtime, measured in one run, for a streaming bundle
(`edge build --streaming`):

1. Cost: one streamed 100 ms hop (the stream graph, state in and out, through the Python
   Streamer) against one whole 1 s window of the same model (the bundle's model graph): wall
   time in alternating blocks (ONNX Runtime's default threads for the window, one thread for the
   hop), and CPU time with one thread each (what load from other work does not stretch).
2. A long synthetic stream (default one hour), fed in random piece sizes: host memory (RSS after
   the first minute vs at the end), hop latency (median of the first vs the last 10 minutes), and
   every streamed frame against a whole-clip PyTorch inference of the bundle's checkpoint
   (logits and DOA, max abs difference).

The whole-clip reference of an hour cannot be one forward call (the attention mask alone would be
36,000^2 per head), so it is computed layer by layer: encoders and track transformer over
overlapping windows (exact: their receptive field, measured, plus every layer's attention window
fits in the overlap; checked against a single whole-clip call on the first two minutes), then the
GRU smoother and heads over the whole hour in one call.

    python benchmarks/streaming.py --bundle BUNDLE [--minutes 60] [--runs 300] [--work DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from at2seld_edge.checkpoint import load_checkpoint, model_from_checkpoint
from at2seld_edge.data.synth import synthetic_scenes
from at2seld_edge.deploy.runtime import SeldRuntime
from at2seld_edge.onnx_export import encoder_receptive_field
from at2seld_edge.timing import LatencyStats

MINUTE_S = 60


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def hop_vs_window(rt: SeldRuntime, runs: int, block: int = 10) -> tuple[LatencyStats, LatencyStats]:
    """One 1 s window (model graph) and one streamed hop (stream graph), in alternating blocks of
    `block` calls, so a change of load on the shared machine touches both alike and each runs
    warm, as it would on its own."""
    rng = np.random.default_rng(0)
    sr, hop = rt.manifest.sample_rate, rt.manifest.label_hop_samples
    window = (0.1 * rng.standard_normal((1, 4, sr))).astype(np.float32)
    piece = (0.1 * rng.standard_normal((4, hop))).astype(np.float32)
    streamer = rt.stream()
    calls = {"window": lambda: rt.infer(window), "hop": lambda: streamer.push(piece)}
    times: dict[str, list[float]] = {k: [] for k in calls}
    for k in range(-1, runs // block):  # the first round is warm-up
        for name, call in calls.items():
            for _ in range(block):
                t0 = time.perf_counter()
                call()
                if k >= 0:
                    times[name].append((time.perf_counter() - t0) * 1e3)
    return LatencyStats.of(times["window"]), LatencyStats.of(times["hop"])


def cpu_cost(rt: SeldRuntime, runs: int) -> tuple[float, float]:
    """Mean CPU time (ms) of one 1 s window and one streamed hop, each on one ONNX Runtime
    thread (the calling one): their compute, which other work on a shared machine does not
    stretch as it stretches wall time."""
    from at2seld_edge.onnx_session import ort_session

    rng = np.random.default_rng(1)
    sr, hop = rt.manifest.sample_rate, rt.manifest.label_hop_samples
    window = {"audio": (0.1 * rng.standard_normal((1, 4, sr))).astype(np.float32)}
    piece = (0.1 * rng.standard_normal((4, hop))).astype(np.float32)
    single = ort_session(rt.bundle.path(rt.manifest.model), threads=1)
    streamer = rt.stream()  # its session runs on one thread
    calls = {"window": lambda: single.run(None, window), "hop": lambda: streamer.push(piece)}
    cpu = {}
    for name, call in calls.items():
        for _ in range(10):
            call()
        t0 = time.thread_time()
        for _ in range(runs):
            call()
        cpu[name] = (time.thread_time() - t0) * 1e3 / runs
    return cpu["window"], cpu["hop"]


def render(path: Path, minutes: int, seed: int) -> None:
    """The synthetic stream: one freshly drawn FOA scene per minute, float32 (4, samples) blocks."""
    with open(path, "wb") as f:
        for k in range(minutes):
            f.write(synthetic_scenes(1, float(MINUTE_S), seed + k)[0].tobytes())


class Timed:
    """The streamer's graph session: times each hop and appends its raw outputs to a file."""

    def __init__(self, session, out, hops: int):
        self.session, self.out = session, out
        self.ms = np.zeros(hops)
        self.n = 0

    def run(self, feeds):
        t0 = time.perf_counter()
        out = self.session.run(feeds)
        self.ms[self.n] = (time.perf_counter() - t0) * 1e3
        self.n += 1
        self.out.write(out["sed_logits"].tobytes())
        self.out.write(out["doa"].tobytes())
        return out


def stream_file(rt: SeldRuntime, audio_path: Path, out_path: Path, minutes: int, seed: int) -> dict:
    """Feed the rendered stream in random pieces; hop times, RSS per minute, outputs to `out_path`."""
    sr = rt.manifest.sample_rate
    block = np.empty((4, MINUTE_S * sr), np.float32)
    rng = np.random.default_rng(seed)
    pieces = rng.integers(1, 2 * rt.manifest.label_hop_samples, size=MINUTE_S * sr).cumsum()
    streamer = rt.stream()
    rss = np.zeros(minutes)
    with open(audio_path, "rb") as src, open(out_path, "wb") as out:
        streamer.session = timed = Timed(streamer.session, out, minutes * MINUTE_S * 10)
        for k in range(minutes):
            src.readinto(memoryview(block).cast("B"))
            cuts = pieces[pieces < block.shape[1]]
            start = 0
            for cut in (*cuts, block.shape[1]):
                streamer.push(block[:, start:cut])
                start = cut
            rss[k] = rss_bytes()
    return {"hop_ms": timed.ms[: timed.n], "rss": rss}


def reference(model, audio_path: Path, minutes: int, chunk_frames: int = 600) -> dict[str, np.ndarray]:
    """Whole-clip PyTorch outputs for the whole stream, layer by layer (see the module doc)."""
    cfg = model.config
    hop, sr = cfg.audio.label_hop_samples, cfg.audio.sample_rate
    past, _ = encoder_receptive_field(model)
    overlap = past + cfg.track_transformer.layers * cfg.track_transformer.history_frames + 2
    total = minutes * MINUTE_S * sr // hop
    audio = np.memmap(audio_path, np.float32, "r", shape=(minutes, 4, MINUTE_S * sr))

    def samples(f0: int, f1: int) -> torch.Tensor:
        parts, s0, s1, per = [], f0 * hop, f1 * hop, MINUTE_S * sr
        for k in range(s0 // per, (s1 - 1) // per + 1):
            parts.append(audio[k, :, max(s0 - k * per, 0): min(s1 - k * per, per)])
        return torch.from_numpy(np.concatenate(parts, axis=1))[None]

    tracks = []
    with torch.no_grad():
        for a in range(0, total, chunk_frames):
            b, start = min(a + chunk_frames, total), max(0, a - overlap)
            t = model.track_transformer(model.encode(samples(start, b))[0])
            tracks.append(t[:, a - start:])
        out = model.heads(model.smoother(torch.cat(tracks, 1)), torch.zeros(1, 1, model.backbone.out_channels))
        check_f = min(total, 2 * MINUTE_S * 10)
        whole = model(samples(0, check_f))
    exact = max(float((whole[k] - out[k][:, :check_f]).abs().max()) for k in ("sed_logits", "doa"))
    return {"sed_logits": out["sed_logits"][0].numpy(), "doa": out["doa"][0].numpy(), "chunking_exact": exact}


def compare(out_path: Path, ref: dict, tracks: int, classes: int) -> dict[str, float]:
    per = tracks * classes * 4  # one hop: logits (1,1,N,C) then doa (1,1,N,C,3)
    raw = np.fromfile(out_path, np.float32).reshape(-1, per)
    logits = raw[:, : tracks * classes].reshape(-1, tracks, classes)
    doa = raw[:, tracks * classes:].reshape(-1, tracks, classes, 3)
    n = len(ref["sed_logits"])
    return {"frames": len(logits), "sed_logits": float(np.abs(logits[:n] - ref["sed_logits"]).max()),
            "doa": float(np.abs(doa[:n] - ref["doa"]).max())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--minutes", type=int, default=60)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--work", type=Path, default=None, help="folder for the rendered stream (default: a temp dir)")
    a = ap.parse_args()
    rt = SeldRuntime(a.bundle, "onnxruntime")
    m = rt.manifest
    window, hop = hop_vs_window(rt, a.runs)
    print(f"{a.bundle} ({m.config_name}), {rt.session.name}, {a.runs} runs each in alternating blocks of 10")
    print(f"| {'what':38s} | median ms | p95 ms |\n|{'-' * 40}|-----------|--------|")
    print(f"| {'whole 1 s window (model graph)':38s} | {window.median_ms:9.2f} | {window.p95_ms:6.2f} |")
    print(f"| {'one streamed 100 ms hop (stream graph)':38s} | {hop.median_ms:9.2f} | {hop.p95_ms:6.2f} |")
    cpu_window, cpu_hop = cpu_cost(rt, a.runs)
    print(f"| {'mean CPU time, 1 thread: window / hop':38s} | {cpu_window:.2f} / {cpu_hop:.2f} | |")
    print(f"hop / window: {hop.median_ms / window.median_ms:.3f} wall, {cpu_hop / cpu_window:.3f} CPU time (target "
          f"<= 0.25); state {m.stream.state_bytes:,} bytes in {len(m.stream.states)} tensors; lookahead "
          f"{m.stream.lookahead_samples}")

    with tempfile.TemporaryDirectory(prefix="edge-stream-", dir=a.work) as tmp:
        audio_path, out_path = Path(tmp) / "stream.f32", Path(tmp) / "out.f32"
        t0 = time.perf_counter()
        render(audio_path, a.minutes, a.seed)
        print(f"rendered {a.minutes} min of synthetic FOA in {time.perf_counter() - t0:.0f} s")
        t0 = time.perf_counter()
        r = stream_file(rt, audio_path, out_path, a.minutes, a.seed)
        wall = time.perf_counter() - t0
        ms, rss = r["hop_ms"], r["rss"]
        ten = min(len(ms) // 2, 6000)
        first, last = np.median(ms[:ten]), np.median(ms[-ten:])
        print(f"streamed {len(ms)} hops in {wall:.0f} s (real-time factor {wall / (a.minutes * MINUTE_S):.4f})")
        print(f"hop latency median: first {ten // 600} min {first:.3f} ms, last {ten // 600} min {last:.3f} ms "
              f"({100 * (last / first - 1):+.1f}%; target within 10%); per 10 min: "
              + ", ".join(f"{np.median(c):.3f}" for c in np.array_split(ms, max(1, len(ms) // 6000))))
        growth = (rss[-1] - rss[0]) / 2**20
        print(f"RSS after minute 1 {rss[0] / 2**20:.1f} MB, at the end {rss[-1] / 2**20:.1f} MB, growth "
              f"{growth:+.3f} MB (max over the run {(rss.max() - rss[0]) / 2**20:+.3f} MB; target < 1 MB)")
        model = model_from_checkpoint(load_checkpoint(Path(m.source_checkpoint))).eval()
        t0 = time.perf_counter()
        ref = reference(model, audio_path, a.minutes)
        diff = compare(out_path, ref, rt.n_tracks, rt.n_classes)
        print(f"streamed vs whole-clip PyTorch over {diff['frames']} frames: max |logit diff| "
              f"{diff['sed_logits']:.2e}, max |doa diff| {diff['doa']:.2e} (target 1e-4); layer-by-layer reference "
              f"vs one whole-clip call on the first 2 min: {ref['chunking_exact']:.1e} "
              f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()

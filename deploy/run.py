"""`edge run`: one FOA recording through a bundle to DCASE output rows and a plot of the events."""

from __future__ import annotations

import re
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import Callable

import numpy as np

from at2seld_edge.data.formats import xyz_to_sph
from at2seld_edge.errors import EdgeError
from at2seld_edge.evaluation.decode import decode, write_output_csv
from at2seld_edge.evaluation.metrics import Frames
from at2seld_edge.io import check_output_file
from at2seld_edge.plots import pyplot, save_figure
from at2seld_edge.data.spec import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from at2seld_edge.deploy.runtime import describe_non_finite, non_finite


MAX_RESAMPLE_FACTOR = 1000  # up or down factor of the polyphase filter (44.1 -> 24 kHz is 80 / 147)


def read_foa(path: Path, sample_rate: int, resample: bool, repair: bool = False,
             warn: Callable[[str], None] = print) -> np.ndarray:
    """(4, samples) float32 at `sample_rate`; another rate is resampled only when asked;
    non-finite samples are zeroed only when asked (else the runtime refuses them)."""
    import soundfile as sf

    if not path.is_file():
        raise EdgeError(f"{path}: audio file not found")
    try:
        info = sf.info(str(path))
    except Exception as e:
        raise EdgeError(f"{path}: not a readable audio file ({e})") from None
    if info.channels != 4:
        raise EdgeError(f"{path}: {info.channels} channels; the model takes 4-channel FOA (ACN: W, Y, Z, X)")
    sr = info.samplerate
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise EdgeError(f"{path}: sample rate {sr} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz")
    up, down = sample_rate // gcd(sr, sample_rate), sr // gcd(sr, sample_rate)
    if sr != sample_rate:
        if not resample:
            raise EdgeError(f"{path}: sample rate {sr} Hz; the bundle expects {sample_rate} Hz "
                            "(add --resample to convert it)")
        if max(up, down) > MAX_RESAMPLE_FACTOR:
            raise EdgeError(f"{path}: {sr} Hz -> {sample_rate} Hz is a {up}/{down} polyphase resampling (a filter of "
                            f"~{20 * max(up, down):,} taps); convert the file to a common rate first")
    try:
        data, _ = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:
        raise EdgeError(f"{path}: not a readable audio file ({e})") from None
    audio = np.ascontiguousarray(data.T)
    promised = promised_frames(info.extra_info)
    if promised is not None and promised > audio.shape[1]:
        warn(f"warning: {path}: truncated: its header promises {promised:,} samples, the file holds {audio.shape[1]:,}")
    bad = non_finite(audio)
    if bad is not None:
        if not repair:
            raise EdgeError(f"{path}: {describe_non_finite(bad)}; add --repair to set them to 0")
        warn(f"warning: {path}: {describe_non_finite(bad)}, set to 0 (--repair)")
        audio = np.nan_to_num(audio, nan=0.0, posinf=0.0, neginf=0.0)
    if sr != sample_rate:
        from scipy.signal import resample_poly

        audio = resample_poly(audio, up, down, axis=1).astype(np.float32)
    return audio


def promised_frames(log: str) -> int | None:
    """The frames a file's header promised where libsndfile found fewer: its header log says
    `data : 192000 (should be 190999)` (bytes) beside the block align (bytes per frame)."""
    data = re.search(r"^data\s*:\s*(\d+)\s*\(should be \d+\)", log, re.M)
    align = re.search(r"^\s*Block Align\s*:\s*(\d+)", log, re.M)
    if data is None or align is None or int(align.group(1)) == 0:
        return None
    return int(data.group(1)) // int(align.group(1))


def frames_warning(path: Path, samples: int, hop: int, sample_rate: int) -> str | None:
    """What a recording loses to the label grid: all of it when shorter than one hop, else the
    tail after its last whole hop (as the C++ at2seld-run says it)."""
    hop_ms = 1000 * hop / sample_rate
    if samples < hop:
        return f"warning: {path}: {samples} samples, shorter than one {hop_ms:g} ms hop: no frames"
    tail = samples % hop
    if tail:
        return (f"warning: {path}: its last {tail} samples ({1000 * tail / sample_rate:.1f} ms) are less than one "
                f"{hop_ms:g} ms hop: dropped")
    return None


@dataclass
class RunResult:
    frames: Frames
    n_frames: int
    csv: Path
    png: Path | None


@dataclass
class RunOptions:
    out_csv: Path
    png: bool = True
    resample: bool = False  # another sample rate is converted instead of refused
    stream: bool = False  # fed as a live stream would be, one label hop per call
    repair: bool = False  # non-finite samples are zeroed (with a warning) instead of refused


def run_file(runtime, wav: Path, opts: RunOptions, warn: Callable[[str], None] = print) -> RunResult:
    m = runtime.manifest
    out_csv, png, stream = opts.out_csv, opts.png, opts.stream
    check_output_file(out_csv)
    audio = read_foa(wav, m.sample_rate, opts.resample, opts.repair, warn)
    short = frames_warning(wav, audio.shape[1], m.label_hop_samples, m.sample_rate)
    if short is not None:
        warn(short)
    if stream:
        probs, doa = stream_through(runtime, audio)
    else:
        probs, doa = runtime.predict(audio)
    frames = decode(probs, doa, runtime.bundle.thresholds)
    write_output_csv(out_csv, frames)
    png_path = None
    if png:
        png_path = out_csv.with_suffix(".png")
        plot_events(frames, len(probs), m.label_hop_s, m.class_names, png_path, wav.name)
    return RunResult(frames, len(probs), out_csv, png_path)


def stream_through(runtime, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    streamer = runtime.stream()
    hop = runtime.manifest.label_hop_samples
    parts = [streamer.push(audio[:, i: i + hop], final=i + hop >= audio.shape[1]) for i in range(0, audio.shape[1], hop)]
    if not parts:  # no samples at all: no frames
        parts = [streamer.push(audio, final=True)]
    return np.concatenate([p for p, _ in parts]), np.concatenate([d for _, d in parts])


def plot_events(frames: Frames, n_frames: int, hop_s: float, classes: list[str], path: Path, title: str) -> None:
    """Class activity over time and azimuth over time, one colour per class."""
    plt = pyplot()

    fig, (ax_c, ax_a) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for c, name in enumerate(classes):
        pts = [(f * hop_s, d) for f, dets in frames.items() for d in dets if d.cls == c]
        if not pts:
            continue
        t = np.array([p[0] for p in pts])
        az = np.array([float(xyz_to_sph(np.array(p[1].xyz))[0]) for p in pts])
        ax_c.scatter(t, np.full(len(t), c), marker="|", s=120, color=cmap(c % cmap.N))
        ax_a.scatter(t, az, s=6, color=cmap(c % cmap.N), label=name)
    ax_c.set_yticks(range(len(classes)), classes)
    ax_c.set_ylim(-0.5, len(classes) - 0.5)
    ax_c.set_title(f"{title}: detected events")
    ax_a.set_ylabel("azimuth (deg)")
    ax_a.set_ylim(-180, 180)
    ax_a.set_xlabel("time (s)")
    ax_a.set_xlim(0, max(n_frames * hop_s, hop_s))
    if frames:
        ax_a.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, markerscale=2, frameon=False)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)

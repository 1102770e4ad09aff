"""Synthetic FOA sound scenes in the DCASE2023 layout: the embedded default dataset.

Each clip: procedurally generated events of clearly distinct classes, static or moving, in a
shoebox room. The direct path and the early reflections (image-source method up to second
order, reflection coefficient from the room) are each encoded to ACN/SN3D first-order
ambisonics from their own direction of arrival; a diffuse exponentially decaying tail (T60 from
Sabine's formula) and diffuse background noise complete the scene. Moving sources are rendered
in 100 ms overlap-added blocks, each from the source position at its centre. Labels are the
direct-path direction per 100 ms frame, in integer degrees, as the DCASE2023 metadata.

Deterministic: clip i depends only on (seed, i), and room r only on (seed, r).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import soundfile as sf
import yaml
from scipy.signal import butter, fftconvolve, sosfilt

from at2seld_edge.data.formats import FrameEvent, write_dcase2023_csv
from at2seld_edge.errors import EdgeError, ErrorKind
from at2seld_edge.io import atomic_path, atomic_write_text, check_output_dir, output_lock
from at2seld_edge.limits import MAX_CLIP_S
from at2seld_edge.yamlfile import read_yaml_mapping

SR = 24000
LABEL_HOP = 2400  # 100 ms
SPEED_OF_SOUND = 343.0
STARTED = ".dataset.yaml.partial"  # an unfinished run's spec: the spec itself is written once every clip is

# ----------------------------------------------------------------------------- sound classes

SoundGen = Callable[[np.random.Generator, int], np.ndarray]
SOUND_CLASSES: dict[str, SoundGen] = {}


def sound_class(name: str):
    def add(fn: SoundGen) -> SoundGen:
        SOUND_CLASSES[name] = fn
        return fn

    return add


def _t(n: int) -> np.ndarray:
    return np.arange(n) / SR


def _bandpass(x: np.ndarray, lo: float, hi: float, order: int = 4) -> np.ndarray:
    return sosfilt(butter(order, [lo, hi], btype="band", fs=SR, output="sos"), x)


@sound_class("tone")
def _tone(rng, n):
    """Beeping pure tone (an alarm): tonal, but with onsets. A steady pure tone would not do: in a
    reverberant room it settles into a standing-wave field whose intensity points at the room
    modes rather than the source, and no real SELD class is like that."""
    f, period = rng.uniform(400, 1200), rng.uniform(0.2, 0.35)
    t = _t(n)
    phase = t % period
    on, ramp = 0.6 * period, 0.005
    gate = np.clip(np.minimum(phase, on - phase) / ramp, 0.0, 1.0)
    return np.sin(2 * np.pi * f * t) * gate


@sound_class("harmonic")
def _harmonic(rng, n):
    f0, t = rng.uniform(120, 300), _t(n)
    x = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 11))
    return x * (0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(3, 5) * t))


@sound_class("noise_band")
def _noise_band(rng, n):
    fc = rng.uniform(3000, 5000)
    return _bandpass(rng.standard_normal(n), fc / 1.4, fc * 1.4)


@sound_class("clicks")
def _clicks(rng, n):
    x, period = np.zeros(n), int(SR / rng.uniform(6, 12))
    burst = rng.standard_normal(120) * np.exp(-np.arange(120) / 25)
    for start in range(int(rng.integers(0, period)), n - 120, period):
        x[start:start + 120] += burst
    return x


@sound_class("sweep_up")
def _sweep_up(rng, n):
    period, f_lo, f_hi = rng.uniform(0.4, 0.7), 300.0, 3000.0
    t = _t(n) % period
    phase = 2 * np.pi * (f_lo * t + (f_hi - f_lo) * t ** 2 / (2 * period))
    return np.sin(phase) * np.minimum(1, (period - t) / 0.02)


@sound_class("rumble")
def _rumble(rng, n):
    low = sosfilt(butter(4, 300, btype="low", fs=SR, output="sos"), rng.standard_normal(n))
    return low * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(10, 20) * _t(n)))


@sound_class("fm_siren")
def _fm_siren(rng, n):
    fc, dev, fm, t = rng.uniform(800, 1000), 300.0, rng.uniform(1, 2), _t(n)
    return np.sin(2 * np.pi * fc * t - dev / fm * np.cos(2 * np.pi * fm * t))


@sound_class("bird_chirps")
def _bird_chirps(rng, n):
    x, period, length = np.zeros(n), int(SR * rng.uniform(0.15, 0.25)), int(0.06 * SR)
    tc = _t(length)
    chirp = np.sin(2 * np.pi * (4000 * tc - 2000 * tc ** 2 / (2 * 0.06))) * np.hanning(length)
    for start in range(int(rng.integers(0, period)), n - length, period):
        x[start:start + length] += chirp
    return x


@sound_class("knock")
def _knock(rng, n):
    x, period, length = np.zeros(n), int(SR * rng.uniform(0.4, 0.6)), int(0.08 * SR)
    tc = _t(length)
    thump = np.sin(2 * np.pi * rng.uniform(120, 200) * tc) * np.exp(-tc / 0.015)
    for start in range(int(rng.integers(0, period)), n - length, period):
        x[start:start + length] += thump
    return x


@sound_class("bell")
def _bell(rng, n):
    f, t = rng.uniform(500, 900), _t(n) % 1.0
    partials = ((1.0, 1.0), (2.76, 0.6), (5.40, 0.4), (8.93, 0.25))
    return sum(a * np.sin(2 * np.pi * r * f * t) for r, a in partials) * np.exp(-t / 0.25)


DEFAULT_CLASSES = ("tone", "harmonic", "noise_band", "clicks", "sweep_up", "rumble", "fm_siren", "bird_chirps")

# ----------------------------------------------------------------------------- acoustics


def foa_gains(directions: np.ndarray) -> np.ndarray:
    """ACN/SN3D gains (W, Y, Z, X) for unit directions (..., 3)."""
    x, y, z = directions[..., 0], directions[..., 1], directions[..., 2]
    return np.stack([np.ones_like(x), y, z, x], axis=-1)


@dataclass(frozen=True)
class Room:
    size: np.ndarray  # (3,) metres
    mic: np.ndarray  # (3,)
    beta: float  # wall reflection coefficient (pressure)

    @property
    def t60(self) -> float:
        lx, ly, lz = self.size
        volume, surface = lx * ly * lz, 2 * (lx * ly + lx * lz + ly * lz)
        return 0.161 * volume / (surface * (1 - self.beta ** 2))

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "Room":
        size = np.array([rng.uniform(5, 10), rng.uniform(4, 8), rng.uniform(2.7, 4)])
        mic = size / 2 + np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), 0.0])
        mic[2] = 1.5
        return cls(size, mic, rng.uniform(0.55, 0.8))

    def images(self, source: np.ndarray, max_order: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image sources up to `max_order` reflections: relative delays (samples, direct = 0),
        gains (direct = 1) and unit arrival directions."""
        axes = []
        for a in range(3):
            opts = []
            for n in range(-1, 2):
                for q in (0, 1):
                    order = abs(2 * n - q)
                    if order <= max_order:
                        opts.append(((1 - 2 * q) * source[a] + 2 * n * self.size[a], order))
            axes.append(opts)
        pos, orders = [], []
        for px, ox in axes[0]:
            for py, oy in axes[1]:
                for pz, oz in axes[2]:
                    if ox + oy + oz <= max_order:
                        pos.append((px, py, pz))
                        orders.append(ox + oy + oz)
        vec = np.array(pos) - self.mic
        dist = np.linalg.norm(vec, axis=1)
        d0 = np.linalg.norm(source - self.mic)
        delays = np.round((dist - d0) / SPEED_OF_SOUND * SR).astype(int)
        gains = self.beta ** np.array(orders) * d0 / dist
        return delays, gains, vec / dist[:, None]

    def max_distance(self, direction: np.ndarray, margin: float = 0.3) -> float:
        """How far from the mic a source can go in `direction` and stay `margin` inside the walls."""
        limits = []
        for a in range(3):
            if abs(direction[a]) > 1e-9:
                wall = self.size[a] - margin if direction[a] > 0 else margin
                limits.append((wall - self.mic[a]) / direction[a])
        return max(0.0, min(limits))


def diffuse_noise(rng: np.random.Generator, n: int, colour: float = 1.0) -> np.ndarray:
    """4-channel diffuse field in SN3D (X, Y, Z at 1/sqrt(3) of W), 1/f^colour spectrum."""
    spec = np.fft.rfft(rng.standard_normal((4, n)), axis=1)
    f = np.maximum(np.fft.rfftfreq(n, 1 / SR), 20.0)
    x = np.fft.irfft(spec / f ** (colour / 2), n, axis=1)
    x /= np.sqrt(np.mean(x[0] ** 2)) + 1e-12
    x[1:] /= math.sqrt(3)
    return x


def unit_vector(az_deg: float, el_deg: float) -> np.ndarray:
    az, el = math.radians(az_deg), math.radians(el_deg)
    return np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])


# ----------------------------------------------------------------------------- scenes


@dataclass
class SceneEvent:
    cls: int
    start: int  # samples
    length: int
    azimuth: float
    elevation: float
    distance: float
    az_speed: float  # degrees per second (0: static)
    level_db: float

    def direction_at(self, sample: float) -> tuple[float, float]:
        az = self.azimuth + self.az_speed * (sample - self.start) / SR
        return (az + 180.0) % 360.0 - 180.0, self.elevation


def _draw_events(rng: np.random.Generator, room: Room, n_classes: int, n_samples: int, max_polyphony: int) -> list[SceneEvent]:
    n_frames = n_samples // LABEL_HOP
    active = np.zeros(n_frames, int)
    events: list[SceneEvent] = []
    for _ in range(int(rng.integers(4, 10))):
        for _attempt in range(20):
            length = int(rng.uniform(0.8, min(3.5, 0.9 * n_samples / SR)) * SR)
            start = int(rng.integers(0, n_samples - length))
            f0, f1 = start // LABEL_HOP, min(n_frames, -(-(start + length) // LABEL_HOP))
            if active[f0:f1].max(initial=0) < max_polyphony:
                break
        else:
            continue
        az, el = rng.uniform(-180, 180), rng.uniform(-45, 45)
        reach = room.max_distance(unit_vector(az, el))
        dist = rng.uniform(min(1.0, reach), max(min(3.0, reach), min(1.0, reach)))
        speed = rng.choice([-1, 1]) * rng.uniform(10, 40) if rng.random() < 0.3 else 0.0
        events.append(SceneEvent(int(rng.integers(n_classes)), start, length, az, el, dist, speed, rng.uniform(-6, 0)))
        active[f0:f1] += 1
    return events


def _render_event(ev: SceneEvent, dry: np.ndarray, room: Room, rng: np.random.Generator, out: np.ndarray) -> None:
    """Add the event's direct path, early reflections and diffuse tail to `out` (4, samples)."""
    n = len(dry)
    if ev.az_speed == 0:
        blocks = [(0, n, np.ones(n))]
    else:  # Hann blocks of 200 ms every 100 ms sum to one: overlap-add of piecewise-static renders
        win = np.hanning(2 * LABEL_HOP + 1)[:-1]
        blocks = []
        for c in range(0, n + LABEL_HOP, LABEL_HOP):
            lo, hi = max(0, c - LABEL_HOP), min(n, c + LABEL_HOP)
            if lo < hi:
                blocks.append((lo, hi, win[lo - (c - LABEL_HOP): hi - (c - LABEL_HOP)]))
    total = out.shape[1]
    for lo, hi, w in blocks:
        az, el = ev.direction_at(ev.start + (lo + hi) / 2)
        source = room.mic + ev.distance * unit_vector(az, el)
        delays, gains, dirs = room.images(source)
        seg = dry[lo:hi] * w
        for d, g, enc in zip(delays, gains, foa_gains(dirs)):
            a = ev.start + lo + d
            b = min(total, a + len(seg))
            if a < total:
                out[:, a:b] += g * enc[:, None] * seg[: b - a]
    # diffuse late tail after the early reflections, direct-to-reverberant ratio falling with distance
    tail_len = int(min(room.t60, 0.8) * SR)
    decay = np.exp(-6.9 * np.arange(tail_len) / (room.t60 * SR))
    tail = diffuse_noise(rng, tail_len, colour=0.0) * decay
    tail[:, : int(0.02 * SR)] = 0
    drr_db = 8.0 - 10 * math.log10(ev.distance)
    tail *= math.sqrt(10 ** (-drr_db / 10) / (np.sum(tail[0] ** 2) + 1e-12))
    wet = fftconvolve(tail, dry[None, :], axes=1)
    b = min(total, ev.start + wet.shape[1])
    out[:, ev.start:b] += wet[:, : b - ev.start]


def _envelope(n: int) -> np.ndarray:
    ramp = min(int(0.02 * SR), n // 2)
    env = np.ones(n)
    env[:ramp] = np.linspace(0, 1, ramp)
    env[n - ramp:] = np.linspace(1, 0, ramp)
    return env


def render_clip(seed: int, index: int, room: Room, class_gens: list[SoundGen], seconds: float,
                max_polyphony: int) -> tuple[np.ndarray, list[FrameEvent]]:
    """One scene: (4, samples) float32 FOA audio and its frame-wise labels."""
    rng = np.random.default_rng([seed, index])
    n = int(round(seconds * SR))
    events = _draw_events(rng, room, len(class_gens), n, max_polyphony)
    out = np.zeros((4, n))
    labels: list[FrameEvent] = []
    for source_id, ev in enumerate(events):
        dry = class_gens[ev.cls](rng, ev.length)
        dry = dry / (np.sqrt(np.mean(dry ** 2)) + 1e-12) * 10 ** (ev.level_db / 20) * _envelope(ev.length)
        _render_event(ev, dry, room, rng, out)
        first, last = ev.start // LABEL_HOP, (ev.start + ev.length) // LABEL_HOP
        for f in range(first, min(last + 1, n // LABEL_HOP)):
            overlap = min(ev.start + ev.length, (f + 1) * LABEL_HOP) - max(ev.start, f * LABEL_HOP)
            if overlap >= LABEL_HOP // 2:
                az, el = ev.direction_at((f + 0.5) * LABEL_HOP)
                labels.append(FrameEvent(f, ev.cls, source_id, float(round(az)), float(round(el))))
    out += diffuse_noise(rng, n) * 10 ** (rng.uniform(-35, -25) / 20)
    peak = np.abs(out).max()
    if peak > 0.9:
        out *= 0.9 / peak
    return out.astype(np.float32), labels


@dataclass
class SynthPlan:
    """Which fold and room each clip goes to: 70% train (fold 1, rooms 1-6), 15% validation
    (fold 2, rooms 7-8), 15% test (fold 3, rooms 9-10); rooms of one split are never seen by another."""

    clips: int

    def split_sizes(self) -> tuple[int, int, int]:
        n_val = n_test = max(1, round(0.15 * self.clips))
        return self.clips - n_val - n_test, n_val, n_test

    def fold_rooms(self, i: int) -> tuple[int, tuple[int, ...]]:
        n_train, n_val, _ = self.split_sizes()
        if i < n_train:
            return 1, (1, 2, 3, 4, 5, 6)
        if i < n_train + n_val:
            return 2, (7, 8)
        return 3, (9, 10)


def synthesize(out_dir: str | Path, clips: int, seed: int = 0, classes: Iterable[str] | None = None,
               max_polyphony: int = 3, seconds: float = 10.0, progress: Callable[[int], None] | None = None) -> Path:
    """Write (or complete) a synthetic dataset; returns the dataset spec path. Clips already
    written are kept: every file is written atomically, so a killed run resumes."""
    names = list(classes) if classes is not None else list(DEFAULT_CLASSES)
    unknown = [c for c in names if c not in SOUND_CLASSES]
    if unknown:
        raise EdgeError(f"unknown synthetic class(es) {', '.join(unknown)} (known: {', '.join(SOUND_CLASSES)})", ErrorKind.USAGE)
    if len(set(names)) != len(names) or not names:
        raise EdgeError("--classes needs distinct class names", ErrorKind.USAGE)
    if clips < 3:
        raise EdgeError(f"--clips {clips}: need at least 3 (train, validation and test)", ErrorKind.USAGE)
    if not 1 <= max_polyphony <= 3:
        raise EdgeError(f"--max-polyphony {max_polyphony}: must be 1, 2 or 3", ErrorKind.USAGE)
    if not 1 <= seconds <= MAX_CLIP_S or (seconds * 10) % 1:  # NaN fails the range
        raise EdgeError(f"--seconds {seconds:g}: a whole number of 100 ms frames, from 1 s to {MAX_CLIP_S:g} s "
                        "(a clip is rendered in memory)", ErrorKind.USAGE)
    out = Path(out_dir)
    spec_path, started = out / "dataset.yaml", out / STARTED
    check_output_dir(out, is_ours=lambda p: (p / spec_path.name).is_file() or (p / STARTED).is_file(),
                     what="dataset written by edge data synth")
    gens = [SOUND_CLASSES[c] for c in names]
    plan = SynthPlan(clips)
    spec = {
        "name": f"synth-seld-seed{seed}",
        "format": "dcase2023",
        "root": ".",
        "audio_dir": "foa_dev",
        "metadata_dir": "metadata_dev",
        "sample_rate": SR,
        "classes": names,
        "splits": {"train": {"folds": [1]}, "val": {"folds": [2]}, "test": {"folds": [3]}},
        "provenance": {"generator": "edge data synth", "clips": clips, "seed": seed,
                       "max_polyphony": max_polyphony, "seconds": seconds},
    }
    earlier = next((p for p in (spec_path, started) if p.exists()), None)
    if earlier is not None:
        old = read_yaml_mapping(earlier, "dataset spec")
        if old.get("provenance") != spec["provenance"] or old.get("classes") != names:
            raise EdgeError(f"{out}: holds a dataset made with other settings; use another --out")
    text = "# written by `edge data synth`\n" + yaml.safe_dump(spec, sort_keys=False)
    with output_lock(out, "edge data synth"):
        if not spec_path.exists():
            atomic_write_text(started, text)  # the settings, so that a killed or disk-full run resumes
        for i in range(clips):
            _write_clip(out, i, seed, plan, gens, seconds, max_polyphony)
            if progress:
                progress(i + 1)
        atomic_write_text(spec_path, text)
        started.unlink(missing_ok=True)
    return spec_path


def _write_clip(out: Path, i: int, seed: int, plan: "SynthPlan", gens: list, seconds: float, max_polyphony: int) -> None:
    """Clip i of the plan, unless a complete one is there (each file is written atomically)."""
    fold, rooms = plan.fold_rooms(i)
    room_id = rooms[int(np.random.default_rng([seed, i, 1]).integers(len(rooms)))]
    stem = f"fold{fold}_room{room_id}_mix{i + 1:03d}"
    wav = out / "foa_dev" / "dev-synth" / f"{stem}.wav"
    csv = out / "metadata_dev" / "dev-synth" / f"{stem}.csv"
    if not (wav.exists() and csv.exists()):
        room = Room.draw(np.random.default_rng([seed, 10_000 + room_id]))
        audio, labels = render_clip(seed, i, room, gens, seconds, max_polyphony)
        encoded = io.BytesIO()  # libsndfile reports a full disk as "System error."; a plain write says ENOSPC
        sf.write(encoded, audio.T, SR, subtype="PCM_16", format="WAV")
        with atomic_path(wav) as tmp:
            tmp.write_bytes(encoded.getvalue())
        atomic_write_text(csv, write_dcase2023_csv(csv, labels))


def synthetic_scenes(count: int, seconds: float, seed: int, classes: Iterable[str] | None = None) -> list[np.ndarray]:
    """`count` FOA scenes (4, samples) in memory: the embedded default data where a stage needs
    representative audio (INT8 calibration, golden inputs) and no dataset was given."""
    gens = [SOUND_CLASSES[c] for c in (classes or DEFAULT_CLASSES)]
    out = []
    for i in range(count):
        room = Room.draw(np.random.default_rng([seed, 20_000 + i]))
        out.append(render_clip(seed, i, room, gens, seconds, 3)[0])
    return out

"""Torch dataset of fixed-length training segments cut from the clips of a split.

Built for loader workers and large datasets: a segment reads only its own samples from the wav
file, and its targets are built from the label events of its frames, kept for the whole split
in a few flat numpy arrays (about 23 bytes an event) instead of dense per-frame targets (over
200 bytes a frame) or Python objects, whose reference counts would copy them into every
forked worker. A segment's augmentation is seeded from (seed, epoch, segment), so any number
of workers, in any order, yields the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset as TorchDataset

from at2seld_edge.data.augment import FOA_PATTERNS, rotate_doa, rotate_foa
from at2seld_edge.data.formats import FrameEvent, TrackTargets
from at2seld_edge.data.spec import Clip


def clip_targets(clip: Clip, label_hop_samples: int, n_classes: int, n_tracks: int) -> TrackTargets:
    return TrackTargets.from_events(clip.events, clip.samples // label_hop_samples, n_classes, n_tracks)


def read_audio(clip: Clip, start: int = 0, stop: int | None = None) -> np.ndarray:
    """(4, samples) float32, ACN order as stored."""
    return read_wav(str(clip.wav), start, stop)


def read_wav(path: str, start: int = 0, stop: int | None = None) -> np.ndarray:
    data, _ = sf.read(path, start=start, stop=stop, dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T)


@dataclass
class EventStore:
    """The label events of a list of clips as flat arrays, each clip's rows sorted by frame, with
    the track slot `TrackTargets.from_events` gives each event (events beyond the track count
    left out), so a segment's targets are its rows written into zeros."""

    frame: np.ndarray  # (K,) int32
    cls: np.ndarray  # (K,) int16
    slot: np.ndarray  # (K,) int8
    xyz: np.ndarray  # (K, 3) float32
    distance: np.ndarray  # (K,) float32, 0 where unknown
    offsets: np.ndarray  # (clips + 1,) int64: clip i's rows are offsets[i]:offsets[i + 1]

    @classmethod
    def build(cls, clips: list[Clip], label_hop_samples: int, n_tracks: int) -> "EventStore":
        parts = [_clip_rows(c.events, c.samples // label_hop_samples, n_tracks) for c in clips]
        offsets = np.concatenate([[0], np.cumsum([len(p[0]) for p in parts])]).astype(np.int64)
        cols = [np.concatenate([p[k] for p in parts]) if parts else np.zeros(0) for k in range(5)]
        return cls(cols[0].astype(np.int32), cols[1].astype(np.int16), cols[2].astype(np.int8),
                   cols[3].reshape(-1, 3).astype(np.float32), cols[4].astype(np.float32), offsets)

    def targets(self, clip: int, start: int, frames: int, n_classes: int, n_tracks: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """activity (F, N, C), doa (F, N, C, 3), distance (F, N, C) of frames start..start+F."""
        r = self.rows(clip, start, frames)
        t, s, c = self.frame[r] - start, self.slot[r], self.cls[r]
        act = np.zeros((frames, n_tracks, n_classes), np.float32)
        doa = np.zeros((frames, n_tracks, n_classes, 3), np.float32)
        dist = np.zeros((frames, n_tracks, n_classes), np.float32)
        act[t, s, c], doa[t, s, c], dist[t, s, c] = 1.0, self.xyz[r], self.distance[r]
        return act, doa, dist

    def rows(self, clip: int, start: int, frames: int) -> slice:
        """The rows of clip `clip`'s frames start..start+frames."""
        lo, hi = self.offsets[clip], self.offsets[clip + 1]
        a, b = lo + np.searchsorted(self.frame[lo:hi], [start, start + frames])
        return slice(int(a), int(b))


def _clip_rows(events: list[FrameEvent], n_frames: int, n_tracks: int) -> tuple[np.ndarray, ...]:
    """One clip's (frame, class, slot, xyz, distance) rows, sorted by (frame, class, source)."""
    ev = [e for e in events if e.frame < n_frames]
    frame = np.array([e.frame for e in ev], np.int64)
    cls = np.array([e.cls for e in ev], np.int64)
    order = np.lexsort((np.array([e.source for e in ev], np.int64), cls, frame))  # stable, as sorted()
    frame, cls = frame[order], cls[order]
    first = np.ones(len(ev), bool)
    first[1:] = (frame[1:] != frame[:-1]) | (cls[1:] != cls[:-1])
    idx = np.arange(len(ev))
    slot = idx - np.maximum.accumulate(np.where(first, idx, 0))  # rank within its (frame, class)
    kept = slot < n_tracks
    keep = order[kept]
    xyz = np.array([ev[i].xyz() for i in keep], np.float64).reshape(-1, 3)
    dist = np.array([ev[i].distance or 0.0 for i in keep], np.float64)
    return frame[kept], cls[kept], slot[kept], xyz, dist


class SegmentDataset(TorchDataset):
    """Non-overlapping segments of `segment_frames` label frames; a clip's tail shorter than a
    segment is zero-padded (padded frames have no targets). Items are indexed by a segment
    number or by (segment, epoch), the epoch seeding the segment's FOA rotation."""

    def __init__(self, clips: list[Clip], label_hop_samples: int, n_classes: int, n_tracks: int,
                 segment_frames: int, foa_augment: bool = False, seed: int = 0):
        self.hop, self.seg, self.n_classes, self.n_tracks = label_hop_samples, segment_frames, n_classes, n_tracks
        self.names = np.array([c.name for c in clips])  # numpy strings: no per-item Python objects
        self.wavs = np.array([str(c.wav) for c in clips])
        self.samples = np.array([c.samples for c in clips], np.int64)
        self.events = EventStore.build(clips, label_hop_samples, n_tracks)
        frames = self.samples // label_hop_samples
        per_clip = [np.arange(0, max(int(f), 1), segment_frames) for f in frames]
        self.clip_of = np.repeat(np.arange(len(clips), dtype=np.int32), [len(p) for p in per_clip])
        self.start_of = np.concatenate(per_clip).astype(np.int64) if per_clip else np.zeros(0, np.int64)
        self.foa_augment, self.seed = foa_augment, seed

    def __len__(self) -> int:
        return len(self.clip_of)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        i, epoch = key if isinstance(key, tuple) else (key, 0)
        ci, start = int(self.clip_of[i]), int(self.start_of[i])
        first = start * self.hop
        audio = read_wav(str(self.wavs[ci]), first, min((start + self.seg) * self.hop, int(self.samples[ci])))
        if audio.shape[1] < self.seg * self.hop:
            audio = np.pad(audio, ((0, 0), (0, self.seg * self.hop - audio.shape[1])))
        act, doa, dist = self.events.targets(ci, start, self.seg, self.n_classes, self.n_tracks)
        if self.foa_augment:
            p = int(np.random.default_rng([self.seed, epoch, i]).integers(len(FOA_PATTERNS)))
            audio, doa = rotate_foa(audio, p), rotate_doa(doa, p)
        return {
            "clip": f"{self.names[ci]}@{first}",  # where a batch came from, for error messages
            "audio": torch.from_numpy(audio),
            "activity": torch.from_numpy(act),
            "doa": torch.from_numpy(np.ascontiguousarray(doa, dtype=np.float32)),
            "distance": torch.from_numpy(dist),
        }

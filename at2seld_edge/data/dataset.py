"""Torch dataset of fixed-length training segments cut from the clips of a split."""

from __future__ import annotations

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset as TorchDataset

from at2seld_edge.data.augment import FOA_PATTERNS, rotate_doa, rotate_foa
from at2seld_edge.data.formats import TrackTargets
from at2seld_edge.data.spec import Clip


def clip_targets(clip: Clip, label_hop_samples: int, n_classes: int, n_tracks: int) -> TrackTargets:
    return TrackTargets.from_events(clip.events, clip.samples // label_hop_samples, n_classes, n_tracks)


def read_audio(clip: Clip, start: int = 0, stop: int | None = None) -> np.ndarray:
    """(4, samples) float32, ACN order as stored."""
    data, _ = sf.read(str(clip.wav), start=start, stop=stop, dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T)


class SegmentDataset(TorchDataset):
    """Non-overlapping segments of `segment_frames` label frames; a clip's tail shorter than a
    segment is zero-padded (padded frames have no targets)."""

    def __init__(self, clips: list[Clip], label_hop_samples: int, n_classes: int, n_tracks: int,
                 segment_frames: int, foa_augment: bool = False, seed: int = 0):
        self.clips, self.hop, self.seg = clips, label_hop_samples, segment_frames
        self.targets = [clip_targets(c, label_hop_samples, n_classes, n_tracks) for c in clips]
        self.index = [(i, s) for i, t in enumerate(self.targets) for s in range(0, max(len(t.activity), 1), segment_frames)]
        self.foa_augment = foa_augment
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ci, start = self.index[i]
        clip, tgt = self.clips[ci], self.targets[ci]
        stop = start + self.seg
        audio = read_audio(clip, start * self.hop, min(stop * self.hop, clip.samples))
        if audio.shape[1] < self.seg * self.hop:
            audio = np.pad(audio, ((0, 0), (0, self.seg * self.hop - audio.shape[1])))
        act, doa, dist = (np.zeros((self.seg, *a.shape[1:]), np.float32) for a in (tgt.activity, tgt.doa, tgt.distance))
        n = min(stop, len(tgt.activity)) - start
        act[:n], doa[:n], dist[:n] = tgt.activity[start:stop], tgt.doa[start:stop], tgt.distance[start:stop]
        if self.foa_augment:
            p = int(self.rng.integers(len(FOA_PATTERNS)))
            audio, doa = rotate_foa(audio, p), rotate_doa(doa, p)
        return {
            "clip": f"{clip.name}@{start * self.hop}",  # where a batch came from, for error messages
            "audio": torch.from_numpy(audio),
            "activity": torch.from_numpy(act),
            "doa": torch.from_numpy(np.ascontiguousarray(doa, dtype=np.float32)),
            "distance": torch.from_numpy(dist),
        }

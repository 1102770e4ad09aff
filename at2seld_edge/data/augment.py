"""Augmentation: the 16 FOA channel swap / sign-flip patterns and SpecAugment-style masking.

The 16 patterns (Mazzon et al., 2019; "audio channel swapping") are the azimuth maps
phi -> {phi, -phi} + {0, 90, 180, 270} degrees times elevation theta -> {theta, -theta}. On FOA they
are exact: W stays, (X, Y, Z) go through a signed permutation matrix M, and every DOA label goes
through the same M, so labels stay consistent with the audio.
"""

from __future__ import annotations

import numpy as np
import torch

FOA_XYZ = (3, 1, 2)  # FOA channel index of x, y, z (ACN W, Y, Z, X)


def _rot_z(quarter_turns: int) -> np.ndarray:
    c, s = [(1, 0), (0, 1), (-1, 0), (0, -1)][quarter_turns % 4]
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float32)


FOA_PATTERNS: tuple[np.ndarray, ...] = tuple(
    _rot_z(k) @ np.diag([1, -1 if mirror_y else 1, -1 if flip_z else 1]).astype(np.float32)
    for flip_z in (False, True)
    for mirror_y in (False, True)
    for k in range(4)
)


def rotate_foa(audio: np.ndarray, pattern: int) -> np.ndarray:
    """audio (4, samples) ACN -> the same scene under FOA_PATTERNS[pattern]."""
    m = FOA_PATTERNS[pattern]
    src = np.abs(m).argmax(axis=1)  # a signed permutation: each output axis is one input axis, signed
    out = audio.copy()
    for axis, (channel, sign) in enumerate(zip(src, m[np.arange(3), src])):
        np.multiply(audio[FOA_XYZ[channel]], sign, out=out[FOA_XYZ[axis]])  # no matrix product on a loader core
    return out


def rotate_doa(doa: np.ndarray, pattern: int) -> np.ndarray:
    """doa (..., 3) Cartesian -> rotated the same way as the audio."""
    return doa @ FOA_PATTERNS[pattern].T


class SpecAugment:
    """Time and frequency masks on (B, C, T, F) feature maps, the same mask on every map of a
    clip (so the descriptors of one time-frequency bin are dropped together)."""

    def __init__(self, time_masks: int = 2, time_width: int = 8, freq_masks: int = 2, freq_width: int = 8):
        self.time_masks, self.time_width = time_masks, time_width
        self.freq_masks, self.freq_width = freq_masks, freq_width

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, f = x.shape
        keep = torch.ones(b, 1, t, f, device=x.device, dtype=x.dtype)
        for n, width, axis in ((self.time_masks, self.time_width, 2), (self.freq_masks, self.freq_width, 3)):
            size = keep.shape[axis]
            for _ in range(n):
                w = torch.randint(0, width + 1, (b,))
                start = (torch.rand(b) * (size - w).clamp(min=1)).long()
                idx = torch.arange(size)
                band = (idx[None] >= start[:, None]) & (idx[None] < (start + w)[:, None])  # (B, size)
                shape = (b, 1, size, 1) if axis == 2 else (b, 1, 1, size)
                keep = keep * (~band).to(x.device, x.dtype).view(shape)  # masks drawn on the CPU RNG
        return x * keep

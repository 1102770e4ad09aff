"""FOA spectral descriptors, computed inside the graph so the exported model takes raw audio.

Input is ACN/SN3D first-order ambisonics: channel 0..3 = W, Y, Z, X. For a plane wave from
unit direction (x, y, z) the SN3D gains are W = 1, Y = y, Z = z, X = x, so every descriptor below
that reads direction is written in Cartesian (x, y, z) order.

Descriptor sets are looked up by name (`frontend.descriptors` in the config):
  - `logmel_iv` (the DCASE baseline): 4 log-mel magnitudes + 3 mel-projected normalized
    intensity vectors = 7 maps.
  - `spectral`: those 7 plus the phase of the normalized cross-spectra of W with X, Y, Z
    (cos and sin of the phase difference, mel-band averaged) = 13 maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from at2seld_edge.config import ModelConfig
from at2seld_edge.errors import EdgeError
from at2seld_edge.model.dsp import ConvSTFT, Resampler, band_average_matrix, mel_filterbank, power_to_db
from at2seld_edge.registry import Registry

# FOA channel index of the Cartesian components, in (x, y, z) order.
XYZ = (3, 1, 2)
FOA_CHANNELS = ("W", "Y", "Z", "X")


@dataclass(frozen=True)
class Spectra:
    """Per-channel STFT of the 4 FOA channels, (B, 4, F, T) each, plus the mel matrices."""

    real: torch.Tensor
    imag: torch.Tensor
    melw: torch.Tensor  # (F, M) Slaney filters
    mel_avg: torch.Tensor  # (F, M) filters normalized to unit sum per band
    amin: float
    eps: float


@dataclass(frozen=True)
class DescriptorSet:
    names: tuple[str, ...]
    compute: Callable[[Spectra], torch.Tensor]  # -> (B, len(names), T, M)


DESCRIPTORS: Registry[DescriptorSet] = Registry("descriptor set")


def _to_mel(x: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
    """(B, C, F, T) -> (B, C, T, M)."""
    return torch.matmul(x.transpose(-1, -2), mel)


def log_mel(s: Spectra) -> torch.Tensor:
    power = s.real * s.real + s.imag * s.imag
    return power_to_db(_to_mel(power, s.melw), s.amin)


def _channels(x: torch.Tensor, idx: list[int]) -> torch.Tensor:
    """FOA channels by index list: a Gather in the graph (a Slice costs TensorRT's parser dozens of
    shape layers where other axes are dynamic)."""
    return x[:, idx]


def _cross_with_w(s: Spectra) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and imaginary parts of conj(W) * [X, Y, Z], (B, 3, F, T)."""
    idx = list(XYZ)
    wr, wi = _channels(s.real, [0]), _channels(s.imag, [0])
    kr, ki = _channels(s.real, idx), _channels(s.imag, idx)
    return wr * kr + wi * ki, wr * ki - wi * kr


def intensity_vectors(s: Spectra) -> torch.Tensor:
    """Active intensity Re(conj(W) [X, Y, Z]) over the energy |W|^2 + (|X|^2+|Y|^2+|Z|^2)/3,
    mel-projected: points towards the source for a plane wave (the DCASE baseline's IV)."""
    cr, _ = _cross_with_w(s)
    power = s.real * s.real + s.imag * s.imag
    energy = _channels(power, [0]) + _channels(power, [1, 2, 3]).sum(dim=1, keepdim=True) / 3.0 + s.eps
    return _to_mel(cr / energy, s.melw)


def phase_differences(s: Spectra) -> torch.Tensor:
    """cos and sin of the phase of conj(W) X_k for k = x, y, z, band-averaged: (B, 6, T, M)."""
    cr, ci = _cross_with_w(s)
    mag = torch.sqrt(cr * cr + ci * ci) + s.eps
    return _to_mel(torch.cat([cr / mag, ci / mag], dim=1), s.mel_avg)


_LOGMEL = tuple(f"logmel_{c}" for c in "wyzx")
_IV = ("iv_x", "iv_y", "iv_z")
_PHASE = ("phase_cos_x", "phase_cos_y", "phase_cos_z", "phase_sin_x", "phase_sin_y", "phase_sin_z")

DESCRIPTORS.register("logmel_iv")(
    DescriptorSet(_LOGMEL + _IV, lambda s: torch.cat([log_mel(s), intensity_vectors(s)], dim=1))
)
DESCRIPTORS.register("spectral")(
    DescriptorSet(
        _LOGMEL + _PHASE + _IV,
        lambda s: torch.cat([log_mel(s), phase_differences(s), intensity_vectors(s)], dim=1),
    )
)


class Frontend(nn.Module):
    """Raw FOA audio -> (spatial descriptors at the label-aligned STFT rate, omni waveform at the
    backbone's sample rate)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        f, a = cfg.frontend, cfg.audio
        self.descriptor_set = DESCRIPTORS.get(f.descriptors)
        self.stft = ConvSTFT(f.n_fft, f.hop)
        fmax = f.fmax if f.fmax is not None else a.sample_rate / 2
        melw = mel_filterbank(a.sample_rate, f.n_fft, f.n_mels, f.fmin, fmax)
        self.register_buffer("melw", torch.from_numpy(melw), persistent=False)
        self.register_buffer("mel_avg", torch.from_numpy(band_average_matrix(melw)), persistent=False)
        self.amin, self.eps = f.amin, f.eps
        self.label_hop_samples = a.label_hop_samples
        b = cfg.backbone  # None: a family without an omni backbone (dcase-baseline)
        self.resampler = Resampler(a.sample_rate, b.sample_rate) if b and b.sample_rate != a.sample_rate else None

    @property
    def num_descriptors(self) -> int:
        return len(self.descriptor_set.names)

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if audio.dim() != 3 or audio.shape[1] != 4:
            raise EdgeError(
                f"expected FOA audio shaped (batch, 4, samples) in ACN order W, Y, Z, X; got {tuple(audio.shape)}"
            )
        if not torch.jit.is_tracing() and audio.shape[-1] % self.label_hop_samples:
            raise EdgeError(
                f"audio length {audio.shape[-1]} is not a whole number of {self.label_hop_samples}-sample label hops"
            )
        # drop the centred frame one past the end: frames = 10 per label frame exactly
        real, imag = self.stft.spectra(audio, drop_last=True)
        desc = self.descriptor_set.compute(Spectra(real, imag, self.melw, self.mel_avg, self.amin, self.eps))
        omni = audio[:, 0]
        if self.resampler is not None:
            omni = self.resampler(omni)
        return desc, omni

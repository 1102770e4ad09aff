"""Signal-processing building blocks that export to ONNX and TensorRT as plain Conv/MatMul/Slice.

No ONNX STFT/DFT op: the STFT is a strided conv with windowed DFT kernels (as PANNs'
torchlibrosa front-end does), reflect padding is ONNX Pad in reflect mode (one TensorRT slice
layer in reflect mode since 8.5; hand-built slices and flips cost TensorRT's parser dozens of
shape layers each on a dynamic time axis), and resampling is zero-insertion plus a strided FIR
conv1d.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from at2seld_edge.model.stream import CausalLayer, left_context


def hann_periodic(n: int) -> np.ndarray:
    """The periodic Hann window (librosa/scipy `get_window('hann', n, fftbins=True)`)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def dft_kernels(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """Windowed DFT kernels (n_fft//2+1, 1, n_fft) for the real and imaginary parts, exp(-i...) sign."""
    n = np.arange(n_fft)
    k = np.arange(n_fft // 2 + 1)
    angle = 2.0 * np.pi * np.outer(k, n) / n_fft
    win = hann_periodic(n_fft)
    real = (np.cos(angle) * win)[:, None, :]
    imag = (-np.sin(angle) * win)[:, None, :]
    return real.astype(np.float32), imag.astype(np.float32)


def _hz_to_mel_slaney(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    mel = f / f_sp
    log_region = f >= min_log_hz
    mel = np.where(log_region, min_log_mel + np.log(np.maximum(f, 1e-12) / min_log_hz) / logstep, mel)
    return mel


def _mel_to_hz_slaney(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Slaney-scale, Slaney-normalized triangular filters as (n_fft//2+1, n_mels): librosa's default,
    which is what PANNs was trained with."""
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    mel_pts = np.linspace(_hz_to_mel_slaney(fmin), _hz_to_mel_slaney(fmax), n_mels + 2)
    hz_pts = _mel_to_hz_slaney(mel_pts)
    fdiff = np.diff(hz_pts)
    ramps = hz_pts[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (hz_pts[2:] - hz_pts[:-2]))[:, None]
    return weights.T.astype(np.float32)


def band_average_matrix(melw: np.ndarray) -> np.ndarray:
    """Mel filters rescaled to sum to one per band: projects ratios (phase, normalized intensity)
    onto mel bands as weighted means rather than weighted sums."""
    s = melw.sum(axis=0, keepdims=True)
    return (melw / np.maximum(s, 1e-12)).astype(np.float32)


def reflect_pad(x: torch.Tensor, pad: int, right: int | None = None) -> torch.Tensor:
    """Reflect padding of the last axis of a (N, C, samples) tensor: `pad` samples on the left and
    `right` (default `pad`) on the right."""
    right = pad if right is None else right
    return x if pad == right == 0 else F.pad(x, (pad, right), mode="reflect")


class ConvSTFT(nn.Module, CausalLayer):
    """Centred STFT as two conv1d with DFT kernels; returns real and imaginary parts (N, F, T).
    Causal (`spectra` only), frame t ends where hop t ends: n_fft - hop samples of the past (zeros,
    or a stream's cached samples) stand in front, so a hop's frames need no later audio.

    The kernels are named like torchlibrosa's (`conv_real`, `conv_imag`) so official PANNs
    checkpoints load into them unchanged. In training mode the same transform is computed with
    an FFT (`torch.stft`): a fraction of the cost of the DFT conv, which is over half of the small
    presets' MACs, and equal to float precision. Evaluation, export and the parity checks use
    the conv: it is what the exported graph contains. Kernels that are not the analytic DFT (a
    checkpoint made with other settings) switch the FFT path off.
    """

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        real, imag = dft_kernels(n_fft)
        self.conv_real = nn.Conv1d(1, n_fft // 2 + 1, n_fft, stride=hop, bias=False)
        self.conv_imag = nn.Conv1d(1, n_fft // 2 + 1, n_fft, stride=hop, bias=False)
        with torch.no_grad():
            self.conv_real.weight.copy_(torch.from_numpy(real))
            self.conv_imag.weight.copy_(torch.from_numpy(imag))
        for p in self.parameters():
            p.requires_grad_(False)
        self.register_buffer("window", torch.from_numpy(hann_periodic(n_fft).astype(np.float32)), persistent=False)
        self.fft_equivalent = True

    def check_kernels(self) -> bool:
        """After loading weights: are the kernels still the analytic DFT? (Sets the FFT path.)"""
        real, imag = dft_kernels(self.n_fft)
        self.fft_equivalent = bool(
            torch.allclose(self.conv_real.weight, torch.from_numpy(real), atol=1e-5)
            and torch.allclose(self.conv_imag.weight, torch.from_numpy(imag), atol=1e-5))
        return self.fft_equivalent

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """wave (N, samples) -> real, imag (N, n_fft//2+1, frames), frames = samples // hop + 1."""
        if self.training and self.fft_equivalent and not torch.jit.is_tracing():
            spec = torch.stft(wave, self.n_fft, self.hop, window=self.window, center=True, pad_mode="reflect",
                              return_complex=True)
            return spec.real, spec.imag
        x = reflect_pad(wave.unsqueeze(1), self.n_fft // 2)
        return self.conv_real(x), self.conv_imag(x)

    def spectra(self, audio: torch.Tensor, drop_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Every channel at once: audio (B, C, samples) -> real, imag (B, C, n_fft//2+1, frames).

        One 2-D conv over (B, 1, C, samples) with (1, n_fft) kernels, so the exported graph never
        folds the channels into the batch (a reshape of two dynamic axes, which TensorRT computes
        with shape layers). `drop_last` leaves out the centred frame one past the end; a traced
        graph gets the same frames by padding the right edge `hop` samples less instead of slicing
        a dynamic axis (eager mode keeps computing that frame, which the MAC count reports).
        Causal: samples // hop frames, each ending at the end of its hop (`drop_last` moot)."""
        if self.causal:
            return self._causal_spectra(audio)
        if self.training and self.fft_equivalent and not torch.jit.is_tracing():
            real, imag = self(audio.flatten(0, 1))
            real, imag = real.unflatten(0, audio.shape[:2]), imag.unflatten(0, audio.shape[:2])
        else:
            left = self.n_fft // 2
            trim = drop_last and torch.jit.is_tracing() and left >= self.hop
            x = reflect_pad(audio, left, left - self.hop if trim else left).unsqueeze(1)
            real, imag = (F.conv2d(x, conv.weight.unsqueeze(2), stride=(1, self.hop)).transpose(1, 2)
                          for conv in (self.conv_real, self.conv_imag))
            drop_last = drop_last and not trim
        if drop_last:
            real, imag = real[..., :-1], imag[..., :-1]
        return real, imag

    def _causal_spectra(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = left_context(self, audio, self.n_fft - self.hop, dim=-1)
        if self.training and self.fft_equivalent and not torch.jit.is_tracing():
            spec = torch.stft(x.flatten(0, 1), self.n_fft, self.hop, window=self.window, center=False,
                              return_complex=True)
            return spec.real.unflatten(0, x.shape[:2]), spec.imag.unflatten(0, x.shape[:2])
        x = x.unsqueeze(1)
        real, imag = (F.conv2d(x, conv.weight.unsqueeze(2), stride=(1, self.hop)).transpose(1, 2)
                      for conv in (self.conv_real, self.conv_imag))
        return real, imag


def power_to_db(x: torch.Tensor, amin: float) -> torch.Tensor:
    """10 log10(max(x, amin)), ref = 1 and no top_db, as PANNs."""
    return 10.0 * torch.log10(torch.clamp(x, min=amin))


class Resampler(nn.Module, CausalLayer):
    """Rational-ratio resampler: zero-insertion by `up`, Kaiser-windowed sinc low-pass, and
    decimation by `down` folded into the conv stride (only the kept samples are computed).
    Causal, the filter reaches only back (the whole filter length of past samples stands in
    front: a delay of half the filter, under a millisecond)."""

    def __init__(self, orig_sr: int, new_sr: int, zero_crossings: int = 16, beta: float = 8.0, rolloff: float = 0.94):
        super().__init__()
        g = math.gcd(orig_sr, new_sr)
        self.up, self.down = new_sr // g, orig_sr // g
        half = zero_crossings * max(self.up, self.down)
        n = np.arange(-half, half + 1, dtype=np.float64)
        # cutoff as a fraction of the upsampled Nyquist
        cutoff = rolloff / max(self.up, self.down)
        h = cutoff * np.sinc(cutoff * n) * np.kaiser(2 * half + 1, beta) * self.up
        self.pad = half
        self.register_buffer("kernel", torch.from_numpy(h.astype(np.float32)).view(1, 1, -1), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """wave (N, samples) -> (N, samples * up / down); samples must be a multiple of `down`."""
        x = wave.unsqueeze(-1)
        if self.up > 1:
            x = F.pad(x, (0, self.up - 1))
        x = x.reshape(wave.shape[0], 1, -1)
        if self.causal:
            y = F.conv1d(left_context(self, x, 2 * self.pad, dim=-1), self.kernel, stride=self.down)
        else:
            y = F.conv1d(x, self.kernel, stride=self.down, padding=self.pad)
        return y.squeeze(1)

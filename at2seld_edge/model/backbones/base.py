"""What every semantic backbone offers the SELD model: the PANNs log-mel stem, a list of stages
(so a cross-stitch unit can sit between them), and frame-resolution output."""

from __future__ import annotations

import math

import torch
from torch import nn

from at2seld_edge.config import BackboneConfig, ModelConfig
from at2seld_edge.model.dsp import ConvSTFT, mel_filterbank, power_to_db


class SpectrogramExtractor(nn.Module):
    """Power spectrogram (B, 1, T, F); key names match torchlibrosa's `Spectrogram`."""

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.stft = ConvSTFT(n_fft, hop)

    def forward(self, wave: torch.Tensor, drop_last: bool = False) -> torch.Tensor:
        """wave (B, samples); `drop_last` leaves out the centred frame one past the end."""
        real, imag = self.stft.spectra(wave.unsqueeze(1), drop_last)
        return (real * real + imag * imag).transpose(2, 3)


class LogmelExtractor(nn.Module):
    """Log-mel (B, 1, T, M); `melW` is a frozen parameter, as in torchlibrosa's `LogmelFilterBank`."""

    def __init__(self, sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float, amin: float = 1e-10):
        super().__init__()
        melw = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
        self.melW = nn.Parameter(torch.from_numpy(melw), requires_grad=False)
        self.amin = amin

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        return power_to_db(torch.matmul(power, self.melW), self.amin)


def prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


class Backbone(nn.Module):
    """Base for PANNs-family backbones.

    Subclasses set `default_channels`, `pooling_layers` (indices of the stages that pool) and
    `default_freq_pool`, and build `self.stages` in `__init__`.
    """

    default_channels: tuple[int, ...] = ()
    default_embed_dim: int = 2048
    pooling_layers: tuple[int, ...] = ()
    default_freq_pool: tuple[int, ...] = ()
    stage_width: int = 1  # channel entries per stage

    # ---- config-level helpers (used by the config validator before anything is built)

    @classmethod
    def channels(cls, b: BackboneConfig) -> list[int]:
        return list(b.channels) if b.channels is not None else list(cls.default_channels)

    @classmethod
    def time_pool(cls, cfg: ModelConfig) -> list[int]:
        b = cfg.backbone
        if b.time_pool is not None:
            return list(b.time_pool)
        factors = prime_factors(cfg.backbone_frames_per_label)
        return factors + [1] * (len(cls.pooling_layers) - len(factors))

    @classmethod
    def num_stages(cls, cfg: ModelConfig) -> int:
        return len(cls.default_channels) // cls.stage_width

    @classmethod
    def time_stride_after(cls, cfg: ModelConfig, k: int) -> int:
        tp = cls.time_pool(cfg)
        return math.prod(tp[i] for i, layer in enumerate(cls.pooling_layers) if layer < k)

    @classmethod
    def check_config(cls, cfg: ModelConfig) -> None:
        b = cfg.backbone
        ch = cls.channels(b)
        if len(ch) != len(cls.default_channels):
            raise ValueError(
                f"backbone.channels for {b.name} needs {len(cls.default_channels)} entries, got {len(ch)}"
            )
        fpl = cfg.backbone_frames_per_label
        n_pool = len(cls.pooling_layers)
        if b.time_pool is None and len(prime_factors(fpl)) > n_pool:
            raise ValueError(f"{b.name} has {n_pool} pooling stages, too few to pool {fpl} frames to one")
        tp = cls.time_pool(cfg)
        if len(tp) != n_pool:
            raise ValueError(f"backbone.time_pool for {b.name} needs {n_pool} entries, got {len(tp)}")
        if math.prod(tp) != fpl:
            raise ValueError(
                f"backbone.time_pool {tp} multiplies to {math.prod(tp)}, but a label frame holds {fpl} backbone STFT frames"
            )

    # ---- module

    def __init__(self, b: BackboneConfig):
        super().__init__()
        self.spectrogram_extractor = SpectrogramExtractor(b.n_fft, b.hop)
        self.logmel_extractor = LogmelExtractor(b.sample_rate, b.n_fft, b.n_mels, b.fmin, b.fmax)
        self.bn0 = nn.BatchNorm2d(b.n_mels)
        self.stages: list[nn.Module] = []
        self.feature_augment = None  # SpecAugment while training, set by AT2SELD.set_feature_augment

    def logmel(self, wave: torch.Tensor, drop_last: bool = False) -> torch.Tensor:
        """(B, samples) -> normalized log-mel (B, 1, T, M), frames = samples // hop + 1 (one
        fewer with `drop_last`)."""
        x = self.logmel_extractor(self.spectrogram_extractor(wave, drop_last))
        return self.bn0(x.transpose(1, 3)).transpose(1, 3)

    def forward(self, x: torch.Tensor, start: int = 0, stop: int | None = None, drop_last_frame: bool = True) -> torch.Tensor:
        """Run stages [start, stop). With start == 0, `x` is the waveform (B, samples); the
        centred frame one past the end is dropped so time stays aligned with label frames."""
        if start == 0:
            x = self.logmel(x, drop_last_frame)
            if self.training and self.feature_augment is not None:
                x = self.feature_augment(x)
        for stage in self.stages[start:stop]:
            x = stage(x)
        return x

    @property
    def out_channels(self) -> int:
        return self._out  # set by the subclass once its stages are built

    @classmethod
    def build(cls, cfg: ModelConfig) -> "Backbone":
        return cls(cfg.backbone, cls.time_pool(cfg))

    # ---- AudioSet tagging head (only for checking against the official implementation)

    def add_audioset_head(self, embed_dim: int, classes_num: int = 527) -> None:
        self.fc1 = nn.Linear(self.out_channels, embed_dim, bias=True)
        self.fc_audioset = nn.Linear(embed_dim, classes_num, bias=True)

    def clipwise_output(self, wave: torch.Tensor) -> torch.Tensor:
        """AudioSet clip-wise probabilities, as the official `forward()['clipwise_output']`."""
        x = self.forward(wave, drop_last_frame=False)
        x = x.mean(dim=3)
        x = x.max(dim=2).values + x.mean(dim=2)
        x = torch.relu(self.fc1(x))
        return torch.sigmoid(self.fc_audioset(x))

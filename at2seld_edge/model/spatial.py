"""Early residual spatial encoder over the FOA descriptors."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from at2seld_edge.config import SpatialEncoderConfig
from at2seld_edge.model.stream import TimeConv2d


class ResidualBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = TimeConv2d(in_ch, out_ch, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = TimeConv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch)) if in_ch != out_ch else nn.Identity()
        )

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class EncoderStage(nn.Module):
    """Residual blocks, then (time, freq) average pooling and spatial dropout (whole feature maps
    dropped, so no single descriptor map is relied on)."""

    def __init__(self, in_ch: int, out_ch: int, blocks: int, pool: tuple[int, int], dropout: float):
        super().__init__()
        self.blocks = nn.Sequential(*[ResidualBlock(in_ch if i == 0 else out_ch, out_ch) for i in range(blocks)])
        self.pool = nn.AvgPool2d(pool) if pool != (1, 1) else nn.Identity()
        self.dropout = nn.Dropout2d(dropout)

    def forward(self, x):
        return self.dropout(self.pool(self.blocks(x)))


class SpatialEncoder(nn.Module):
    def __init__(self, in_maps: int, n_mels: int, cfg: SpatialEncoderConfig):
        super().__init__()
        self.input_norm = nn.BatchNorm2d(in_maps)  # descriptors differ in scale (dB vs ratios)
        ch = [in_maps, *cfg.channels]
        self.stages = nn.ModuleList(
            EncoderStage(ch[i], ch[i + 1], cfg.blocks_per_stage, (cfg.time_pool[i], cfg.freq_pool[i]), cfg.dropout)
            for i in range(len(cfg.channels))
        )
        self.out_channels = ch[-1]
        bins = n_mels
        for fp in cfg.freq_pool:
            bins //= fp
        self.out_bins = bins  # >= 1, checked by the config
        # frame features keep the frequency axis (channels x bins): direction cues differ by band
        self.out_features = self.out_channels * bins

    def frame_features(self, x):
        """(B, C, T, F) -> (B, T, C*F)."""
        return x.permute(0, 2, 1, 3).flatten(2)

    def forward(self, x, start: int = 0, stop: int | None = None):
        """Run stages [start, stop); with start == 0, `x` is the descriptor stack (B, D, T, M)."""
        if start == 0:
            x = self.input_norm(x)
        for stage in self.stages[start:stop]:
            x = stage(x)
        return x

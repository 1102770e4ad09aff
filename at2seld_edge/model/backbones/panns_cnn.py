"""PANNs CNN14 / CNN10 and E-PANNs (CNN14 with passive-filter-pruned channel counts).

Module and parameter names follow the official implementation (`conv_block1.conv1.weight`,
`bn0`, `fc_audioset`, ...) so the released checkpoints load with strict key matching. Only the
time pooling differs, and only by configuration: the official pools time by 2 in five blocks;
for SELD the product of the time pools equals the STFT frames per 100 ms label frame.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from at2seld_edge.config import BackboneConfig
from at2seld_edge.model.backbones import BACKBONES
from at2seld_edge.model.backbones.base import Backbone
from at2seld_edge.model.stream import TimeConv2d


class ConvBlock(nn.Module):
    """Two 3x3 conv-BN-ReLU, average pooling, dropout (the official ConvBlock)."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, pool: tuple[int, int], dropout: float):
        super().__init__()
        self.conv1 = TimeConv2d(in_ch, mid_ch, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_ch)
        self.conv2 = TimeConv2d(mid_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.pool, self.dropout = pool, dropout

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        if self.pool != (1, 1):
            x = F.avg_pool2d(x, kernel_size=self.pool)
        return F.dropout(x, p=self.dropout, training=self.training)


class PannsCnn(Backbone):
    stage_width = 2  # conv1 and conv2 channels per block

    def __init__(self, b: BackboneConfig, time_pool: list[int]):
        super().__init__(b)
        ch = self.channels(b)
        in_ch = 1
        for i, (tp, fp) in enumerate(zip(time_pool, self.default_freq_pool)):
            block = ConvBlock(in_ch, ch[2 * i], ch[2 * i + 1], (tp, fp), b.dropout)
            setattr(self, f"conv_block{i + 1}", block)
            self.stages.append(block)
            in_ch = ch[2 * i + 1]
        self._out = in_ch



def _doubled(widths: list[int]) -> tuple[int, ...]:
    return tuple(c for w in widths for c in (w, w))


@BACKBONES.register("cnn14")
class Cnn14(PannsCnn):
    default_channels = _doubled([64, 128, 256, 512, 1024, 2048])
    default_embed_dim = 2048
    pooling_layers = (0, 1, 2, 3, 4, 5)
    default_freq_pool = (2, 2, 2, 2, 2, 1)


@BACKBONES.register("cnn10")
class Cnn10(PannsCnn):
    default_channels = _doubled([64, 128, 256, 512])
    default_embed_dim = 512
    pooling_layers = (0, 1, 2, 3)
    default_freq_pool = (2, 2, 2, 2)


@BACKBONES.register("epanns")
class EPanns(Cnn14):
    """E-PANNs: CNN14 with 50% of the filters of conv layers 7..12 removed (p7..p12 = 0.5)."""

    default_channels = (64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 1024, 1024)

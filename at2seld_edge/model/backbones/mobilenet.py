"""PANNs MobileNetV1: 14 conv layers (a full conv, then 13 depthwise-separable), pooling by
AvgPool2d after the 3x3 conv of the five strided layers, official key names (`features.i.j`)."""

from __future__ import annotations

from torch import nn

from at2seld_edge.config import BackboneConfig
from at2seld_edge.model.backbones import BACKBONES
from at2seld_edge.model.backbones.base import Backbone
from at2seld_edge.model.stream import TimeConv2d


def _pool(tp: int, fp: int) -> nn.Module:
    return nn.Identity() if (tp, fp) == (1, 1) else nn.AvgPool2d((tp, fp))


def conv_bn(inp: int, oup: int, pool: tuple[int, int]) -> nn.Sequential:
    return nn.Sequential(TimeConv2d(inp, oup, 3, 1, 1, bias=False), _pool(*pool), nn.BatchNorm2d(oup), nn.ReLU())


def conv_dw(inp: int, oup: int, pool: tuple[int, int]) -> nn.Sequential:
    return nn.Sequential(
        TimeConv2d(inp, inp, 3, 1, 1, groups=inp, bias=False),
        _pool(*pool),
        nn.BatchNorm2d(inp),
        nn.ReLU(),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU(),
    )


@BACKBONES.register("mobilenetv1")
class MobileNetV1(Backbone):
    default_channels = (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
    default_embed_dim = 1024
    pooling_layers = (0, 2, 4, 6, 12)
    default_freq_pool = (2, 2, 2, 2, 2)

    def __init__(self, b: BackboneConfig, time_pool: list[int]):
        super().__init__(b)
        ch = self.channels(b)
        pools = {layer: (tp, fp) for layer, tp, fp in zip(self.pooling_layers, time_pool, self.default_freq_pool)}
        layers, in_ch = [], 1
        for i, out_ch in enumerate(ch):
            make = conv_bn if i == 0 else conv_dw
            layers.append(make(in_ch, out_ch, pools.get(i, (1, 1))))
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.stages = list(self.features)
        self._out = in_ch


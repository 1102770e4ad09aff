"""Layer fusion before export: BatchNorm folded into the convolution that feeds it.

Conv-BN pairs are found by module type (PANNs ConvBlock, the spatial ResidualBlock) and in
Sequentials (a Conv2d followed by its BatchNorm2d, with at most an average pooling between: the
pooling is linear, so the per-channel affine BN commutes with it). Activations are left to the
runtimes: ONNX Runtime and TensorRT fuse Conv+ReLU themselves, and an explicit fused op would
not export to both.
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from at2seld_edge.model.backbones.panns_cnn import ConvBlock
from at2seld_edge.model.spatial import ResidualBlock

NAMED_PAIRS: dict[type, tuple[tuple[str, str], ...]] = {
    ConvBlock: (("conv1", "bn1"), ("conv2", "bn2")),
    ResidualBlock: (("conv1", "bn1"), ("conv2", "bn2")),
}
_LINEAR_BETWEEN = (nn.AvgPool2d, nn.Identity)


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, int]:
    """An eval-mode copy with every foldable BatchNorm merged into its conv (replaced by
    Identity); returns (copy, number of folds)."""
    fused = copy.deepcopy(model).eval()
    folds = 0
    for module in list(fused.modules()):
        for conv_name, bn_name in NAMED_PAIRS.get(type(module), ()):
            conv, bn = getattr(module, conv_name), getattr(module, bn_name)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(module, bn_name, nn.Identity())
                folds += 1
        if isinstance(module, nn.Sequential):
            folds += _fold_sequential(module)
    return fused, folds


def _fold_sequential(seq: nn.Sequential) -> int:
    folds = 0
    layers = list(seq)
    for i, layer in enumerate(layers):
        if not isinstance(layer, nn.Conv2d):
            continue
        j = i + 1
        while j < len(layers) and isinstance(layers[j], _LINEAR_BETWEEN):
            j += 1
        if j < len(layers) and isinstance(layers[j], nn.BatchNorm2d) and layers[j].num_features == layer.out_channels:
            seq[i] = fuse_conv_bn_eval(layer, layers[j])
            seq[j] = nn.Identity()
            layers = list(seq)
            folds += 1
    return folds

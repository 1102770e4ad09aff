"""BatchNorm folding: the fused model computes what the unfused one does."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from at2seld_edge.compress.fuse import fold_batchnorm
from at2seld_edge.model import build_model
from tests.compress.test_prune import TINY_BACKBONES, tiny


def _randomize_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(0.2 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(1 + 0.3 * torch.randn(n, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(n, generator=g))


@pytest.mark.parametrize("backbone", sorted(TINY_BACKBONES))
def test_folded_model_matches_within_1e5_relative(backbone):
    torch.manual_seed(0)
    model = build_model(tiny(backbone)).eval()
    _randomize_bn(model)
    fused, folds = fold_batchnorm(model)
    convs_with_bn = sum(isinstance(m, nn.Conv2d) for m in model.backbone.modules()) - 0
    assert folds >= convs_with_bn  # every backbone conv has its BN, plus the spatial encoder's
    remaining = [n for n, m in fused.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert remaining == ["backbone.bn0", "spatial_encoder.input_norm"]  # no conv in front of these
    audio = 0.1 * torch.randn(2, 4, 24000)
    with torch.no_grad():
        ref, got = model(audio), fused(audio)
    for k in ("sed_logits", "doa"):
        scale = ref[k].abs().max()
        assert ((got[k] - ref[k]).abs().max() / scale).item() < 1e-5, k


def test_original_is_untouched():
    model = build_model(tiny("cnn10")).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fold_batchnorm(model)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)

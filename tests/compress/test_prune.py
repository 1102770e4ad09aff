"""Passive filter pruning: consistent shapes for every backbone, the criterion, the saved model."""

from __future__ import annotations

import pytest
import torch

from at2seld_edge.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from at2seld_edge.compress.prune import (
    l1_importance, operator_norm_importance, passive_filter_prune, pruning_plan,
)
from at2seld_edge.errors import EdgeError
from at2seld_edge.model import build_model
from at2seld_edge.onnx_export import export_onnx
from at2seld_edge.summary import summarize
from tests.conftest import variant

# tiny versions of every backbone (the nano front-end and heads, the backbone's own topology)
TINY_BACKBONES = {
    "cnn10": [8, 8, 12, 12, 16, 16, 24, 24],
    "cnn14": [8, 8, 8, 8, 12, 12, 12, 12, 16, 16, 16, 16],
    "epanns": [8, 8, 8, 8, 12, 12, 12, 12, 8, 8, 8, 8],
    "mobilenetv1": [8, 8, 12, 12, 12, 12, 16, 16, 16, 16, 16, 16, 24, 24],
}


def tiny(backbone: str, **overrides):
    return variant(backbone={"name": backbone, "channels": TINY_BACKBONES[backbone]}, **overrides)


def backbone_macs(model) -> float:
    return next(m.macs_per_second for m in summarize(model).modules if m.module == "backbone")


@pytest.mark.parametrize("backbone", sorted(TINY_BACKBONES))
@pytest.mark.parametrize("method", ["passive", "l1"])
def test_pruned_model_is_consistent_runs_and_is_smaller(backbone, method):
    torch.manual_seed(0)
    model = build_model(tiny(backbone)).eval()
    result = passive_filter_prune(model, 0.5, method)
    pruned = result.build().eval()
    audio = 0.1 * torch.randn(1, 4, 24000)
    with torch.no_grad():
        out = pruned(audio)
    assert out["sed_logits"].shape == model(audio)["sed_logits"].shape
    assert result.config.backbone.channels == [max(4, c - c // 2) for c in TINY_BACKBONES[backbone]]
    assert backbone_macs(pruned) < backbone_macs(model)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("cross_stitch", [{"enabled": False}, {"position": "early", "early_backbone_stage": 2,
                                                                "early_spatial_stage": 2}])
def test_cross_stitch_readers_are_pruned_with_the_backbone(cross_stitch):
    model = build_model(tiny("cnn10", cross_stitch=cross_stitch, heads={"semantic_presence": True})).eval()
    pruned = passive_filter_prune(model, 0.5).build().train()
    out = pruned(0.1 * torch.randn(2, 4, 24000))
    assert out["clip_logits"].shape == (2, 13)


def test_pruned_checkpoint_loads_without_the_original(tmp_path):
    model = build_model(tiny("cnn10")).eval()
    result = passive_filter_prune(model, 0.5)
    pruned = result.build()
    save_checkpoint(tmp_path / "pruned.pt", pruned, manifest={"pruned_from": "x"})
    ckpt = load_checkpoint(tmp_path / "pruned.pt")
    assert ckpt.config.backbone.channels == result.config.backbone.channels
    again = model_from_checkpoint(ckpt).eval()
    audio = 0.1 * torch.randn(1, 4, 24000)
    with torch.no_grad():
        torch.testing.assert_close(again(audio)["doa"], pruned.eval()(audio)["doa"])


def test_pruned_model_exports(tmp_path):
    pruned = passive_filter_prune(build_model(tiny("mobilenetv1")).eval(), 0.5).build()
    result = export_onnx(pruned, tmp_path / "pruned.onnx")
    assert max(result.max_abs_diff.values()) < 1e-4


def test_half_the_filters_cut_nano_backbone_macs_by_40_percent():
    model = build_model(variant()).eval()
    pruned = passive_filter_prune(model, 0.5).build()
    assert backbone_macs(pruned) <= 0.6 * backbone_macs(model)


def test_passive_criterion_ranks_a_planted_redundant_filter_lowest():
    torch.manual_seed(0)
    w = torch.randn(8, 4, 3, 3)
    w[5] = 0.9 * w[2]  # a scaled copy of filter 2, with a large entry-wise norm of its own
    w[5] *= 1.5  # even larger than the original: its twin 2 is now the redundant one
    scores = operator_norm_importance(w)
    assert scores.argmin().item() == 2
    assert l1_importance(w).argmin().item() != 2  # the entry-wise norm misses it


def test_passive_keeps_the_diverse_filters():
    w = torch.zeros(3, 1, 1, 2)
    w[0, 0, 0] = torch.tensor([1.0, 0.0])
    w[1, 0, 0] = torch.tensor([0.95, 0.05])  # almost the same direction as 0, smaller
    w[2, 0, 0] = torch.tensor([0.0, 0.5])  # smallest norm, but a direction of its own
    assert operator_norm_importance(w).argmin().item() == 1


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.2, 1.5])
def test_ratio_outside_the_open_interval_is_an_error(ratio):
    with pytest.raises(EdgeError, match="outside \\(0, 1\\)"):
        passive_filter_prune(build_model(variant()), ratio)


def test_plan_covers_every_backbone_conv():
    model = build_model(tiny("cnn14"))
    assert len(pruning_plan(model)) == 12
    assert len(pruning_plan(build_model(tiny("mobilenetv1")))) == 14


def test_target_macs_finds_a_ratio_that_meets_it():
    from at2seld_edge.compress.pipeline import parse_macs, ratio_for_target

    model = build_model(variant()).eval()
    full = summarize(model).total_macs_per_second
    target = full - 0.5 * backbone_macs(model) * 0.6  # needs a good part of the backbone gone
    ratio = ratio_for_target(model, target, "passive")
    assert 0.0 < ratio < 1.0
    assert summarize(passive_filter_prune(model, ratio).build()).total_macs_per_second <= target
    assert parse_macs("150M") == 150e6 and parse_macs("1.5G") == 1.5e9 and parse_macs("2e8") == 2e8

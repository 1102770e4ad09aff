"""Shapes and wiring of the full model for every preset and the config variants."""

from __future__ import annotations

import pytest
import torch

from at2seld_edge.config import load_config
from at2seld_edge.model import MODULE_NAMES, build_model
from tests.conftest import variant

PRESETS = ["at2seld-nano", "at2seld-nano-causal", "at2seld-cnn10", "at2seld-mobilenetv1", "at2seld-epanns", "at2seld-cnn14"]


@pytest.mark.parametrize("name", PRESETS)
def test_preset_output_shapes(name):
    cfg = load_config(name)
    model = build_model(cfg).eval()
    assert [n for n, _ in model.named_children()] == list(MODULE_NAMES)
    with torch.no_grad():
        out = model(0.1 * torch.randn(1, 4, 24000))
    c, n = cfg.num_classes, cfg.heads.n_tracks
    assert out["sed_logits"].shape == (1, 10, n, c)
    assert out["doa"].shape == (1, 10, n, c, 3)
    assert out["doa"].abs().max() <= 1.0
    assert ("clip_logits" in out) == cfg.heads.semantic_presence


VARIANTS = {
    "early": dict(cross_stitch={"position": "early", "early_backbone_stage": 2, "early_spatial_stage": 2}),
    "no-cross-stitch": dict(cross_stitch={"enabled": False}),
    "causal": dict(smoother={"causal": True}),
    "logmel_iv": dict(frontend={"descriptors": "logmel_iv"}),
    "semantic-presence": dict(heads={"semantic_presence": True, "n_tracks": 2}, num_classes=5),
    "resampled-backbone": dict(backbone={"sample_rate": 32000, "n_fft": 1024, "hop": 320, "fmax": 14000}),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variants_run_in_train_and_eval(name):
    cfg = variant(**VARIANTS[name])
    model = build_model(cfg)
    audio = 0.1 * torch.randn(2, 4, 2 * 2400)
    out = model.train()(audio)
    loss = out["sed_logits"].mean() + out["doa"].mean()
    loss.backward()
    assert model.heads.sed.weight.grad is not None
    with torch.no_grad():
        ev = model.eval()(audio)
    assert ev["sed_logits"].shape == (2, 2, cfg.heads.n_tracks, cfg.num_classes)


def test_causal_model_ignores_the_future_after_the_encoders():
    """With a causal smoother, the track transformer and GRU never look ahead: changing the fused
    features of the last frame leaves earlier frames' outputs unchanged."""
    model = build_model(variant(smoother={"causal": True})).eval()
    x = torch.randn(1, 6, model.config.track_transformer.d_model)
    y = x.clone()
    y[:, -1] += torch.linspace(-1.0, 1.0, x.shape[-1])  # not a constant: LayerNorm would remove that
    with torch.no_grad():
        a = model.smoother(model.track_transformer(x))
        b = model.smoother(model.track_transformer(y))
    torch.testing.assert_close(a[:, :-1], b[:, :-1])
    assert not torch.allclose(a[:, -1], b[:, -1])


def test_tracks_see_each_other():
    model = build_model(variant()).eval()
    x = torch.randn(1, 4, model.config.track_transformer.d_model)
    with torch.no_grad():
        out = model.track_transformer(x)
    assert not torch.allclose(out[:, :, 0], out[:, :, 1])  # the track embeddings separate the slots

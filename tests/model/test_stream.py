"""Causal models in PyTorch: a stream of any step sizes from the zero state computes the whole
clip, for every backbone; nothing looks ahead; the attention window bounds the history; the state
keeps its shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from at2seld_edge.model import build_model
from at2seld_edge.model.backbones import BACKBONES
from at2seld_edge.model.stream import StreamState, band_mask, streaming
from at2seld_edge.model.dsp import ConvSTFT
from tests.conftest import preset_dict, variant

HOP = 2400


def tiny_causal(backbone: str = "cnn10", **overrides):
    """A narrow causal model on `backbone` (its own mel settings where the preset has them)."""
    arch = BACKBONES.get(backbone)
    presets = {"cnn14": "at2seld-cnn14", "mobilenetv1": "at2seld-mobilenetv1", "epanns": "at2seld-epanns"}
    b = preset_dict(presets[backbone])["backbone"] if backbone in presets else {"name": backbone}
    b = {**b, "channels": [4] * len(arch.default_channels)}
    return variant(backbone=b, spatial_encoder={"channels": [4, 8, 8]},
                   track_transformer={"d_model": 16, "heads": 2, "layers": 2, "history_frames": 4},
                   smoother={"hidden": 8, "causal": True}, **overrides)


def stream(model, audio: torch.Tensor, steps: list[int]) -> tuple[dict, dict]:
    """Run `audio` as a stream in steps of `steps` hops; the outputs and the last state."""
    state, outs, i = {}, [], 0
    with torch.no_grad():
        for n in steps:
            step = StreamState(state)
            with streaming(step):
                outs.append(model(audio[..., i * HOP: (i + n) * HOP]))
            state, i = step.next, i + n
    return {k: torch.cat([o[k] for o in outs], 1) for k in ("sed_logits", "doa")}, state


CASES = {
    "cnn10": dict(),
    "cnn14-resampled": dict(backbone="cnn14"),
    "epanns-resampled": dict(backbone="epanns"),
    "mobilenetv1-resampled": dict(backbone="mobilenetv1"),
    "early-cross-stitch": dict(cross_stitch={"position": "early", "early_backbone_stage": 2, "early_spatial_stage": 2}),
    "logmel_iv": dict(frontend={"descriptors": "logmel_iv"}),
}
SLOW = {"cnn14-resampled", "epanns-resampled"}  # cnn10's blocks and mobilenetv1's resampler cover them quickly


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(CASES)])
def test_stream_of_random_steps_equals_the_whole_clip(name):
    model = build_model(tiny_causal(**CASES[name])).eval()
    rng = np.random.default_rng(len(name))
    steps = [int(n) for n in rng.integers(1, 4, size=8)]  # past the 4-frame attention window
    audio = 0.1 * torch.randn(1, 4, sum(steps) * HOP, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        whole = model(audio)
    got, _ = stream(model, audio, steps)
    for k in whole:
        if k in got:
            torch.testing.assert_close(got[k], whole[k], atol=1e-5, rtol=0)


def test_state_keeps_its_names_and_shapes_and_carries_the_past():
    model = build_model(tiny_causal()).eval()
    audio = 0.1 * torch.randn(1, 4, 12 * HOP)
    _, first = stream(model, audio[..., :HOP], [1])
    _, later = stream(model, audio, [1] * 12)
    assert list(first) == list(later) and all(first[k].shape == later[k].shape for k in first)
    assert {"frontend.stft", "backbone.spectrogram_extractor.stft", "smoother", "track_transformer.valid",
            "track_transformer.layers.1.time_attn.keys"} <= set(first)
    assert later["track_transformer.valid"].min() == 1 and first["track_transformer.valid"].sum() == 1


def test_nothing_looks_ahead():
    """Changing the audio of frame k moves no output before frame k."""
    model = build_model(tiny_causal(backbone="cnn14")).eval()
    audio = 0.1 * torch.randn(1, 4, 8 * HOP)
    bumped = audio.clone()
    bumped[..., 5 * HOP:] += 0.1 * torch.randn(1, 4, 3 * HOP)
    with torch.no_grad():
        a, b = model(audio), model(bumped)
    torch.testing.assert_close(a["sed_logits"][:, :5], b["sed_logits"][:, :5], atol=0, rtol=0)
    assert not torch.allclose(a["sed_logits"][:, 5], b["sed_logits"][:, 5])


def test_the_attention_window_bounds_the_history():
    model = build_model(tiny_causal()).eval()
    tt, window = model.track_transformer, 4
    x = torch.randn(1, 10, 16)
    y = x.clone()
    y[:, 0] += torch.linspace(-1, 1, 16)
    with torch.no_grad():
        a, b = tt(x), tt(y)
    moved = (a - b).abs().amax(dim=(0, 2, 3)) > 0
    # two layers of a window of 4: frame 0 reaches frames 0..8, not 9
    assert moved[: 2 * window + 1].all() and not moved[2 * window + 1:].any()


def test_band_mask():
    m = band_mask(2, 5, 3)  # the last 2 of 5 keys are the queries, each sees itself and 3 before
    assert (m == 0).tolist() == [[True, True, True, True, False], [False, True, True, True, True]]


def test_causal_stft_trains_with_the_fft_it_runs_with_the_conv():
    stft = ConvSTFT(512, 240)
    stft.causal = True
    audio = torch.randn(2, 4, 4800)
    conv = stft.eval().spectra(audio)
    fft = stft.train().spectra(audio)
    assert conv[0].shape == (2, 4, 257, 20)
    for c, f in zip(conv, fft):
        torch.testing.assert_close(c, f, atol=2e-4, rtol=1e-5)


def test_non_causal_models_have_no_stream_state():
    model = build_model(variant()).eval()
    state = StreamState()
    with torch.no_grad(), streaming(state):
        model(torch.zeros(1, 4, HOP))
    assert "frontend.stft" not in state.next

"""Per-module MACs from torch's FLOP counter."""

from __future__ import annotations

import pytest
import torch

from at2seld_edge.model import MODULE_NAMES, build_model
from at2seld_edge.model.tracks import SelfAttention
from at2seld_edge.summary import _ActivationTracker, activation_costs, count_macs, summarize
from tests.conftest import variant


@pytest.mark.parametrize("position", ["late", "early"])
def test_modules_account_for_all_macs(position):
    cfg = variant(cross_stitch={"position": position, "early_backbone_stage": 2, "early_spatial_stage": 2})
    s = summarize(build_model(cfg), seconds=1.0)
    assert [m.module for m in s.modules] == list(MODULE_NAMES)
    assert all(m.macs_per_second > 0 for m in s.modules)
    assert sum(m.macs_per_second for m in s.modules) == pytest.approx(s.total_macs_per_second, rel=1e-9)
    assert sum(m.params for m in s.modules) == s.total_params


def test_front_end_stft_macs_are_the_dft_conv():
    s = summarize(build_model(variant()), seconds=1.0)
    frontend = next(m for m in s.modules if m.module == "frontend")
    # 4 channels x 101 centred frames x (real + imag) x 257 bins x 512 taps; the rest is the mel matmuls
    stft = 4 * 101 * 2 * 257 * 512
    mels = 100 * 257 * 64 * (4 + 6 + 3)
    assert frontend.macs_per_second == stft + mels
    assert frontend.trainable_params == 0


# ----------------------------------------------------------------------------- MACs against hand counts


def test_conv_macs_match_hand_count():
    conv = torch.nn.Conv2d(3, 8, kernel_size=3, padding=1)
    # every output element (8 x 10 x 12) is a 3 x 3 x 3 dot product
    assert count_macs(conv, torch.randn(1, 3, 10, 12)) == 8 * 10 * 12 * (3 * 3 * 3)


def test_linear_macs_match_hand_count():
    assert count_macs(torch.nn.Linear(16, 32), torch.randn(5, 16)) == 5 * 16 * 32


@pytest.mark.parametrize("bidirectional", [False, True])
def test_gru_macs_match_hand_count(bidirectional):
    b, t, d_in, h = 2, 5, 16, 8
    gru = torch.nn.GRU(d_in, h, batch_first=True, bidirectional=bidirectional)
    # per direction and step: the three gates' input projection (3h x d_in) and recurrence (3h x h)
    per_direction = b * t * 3 * h * (d_in + h)
    assert count_macs(gru, torch.randn(b, t, d_in)) == per_direction * (2 if bidirectional else 1)


def test_attention_macs_match_hand_count():
    n, length, d, heads = 2, 5, 16, 4
    attn = SelfAttention(d, heads, dropout=0.0).eval()
    qkv = n * length * d * 3 * d
    scores = n * heads * length * length * (d // heads)  # Q K^T
    weighted = n * heads * length * length * (d // heads)  # softmax(.) V
    out = n * length * d * d
    assert count_macs(attn, torch.randn(n, length, d)) == qkv + scores + weighted + out


# ----------------------------------------------------------------------------- activation memory


def test_activation_tracker_follows_liveness():
    n = 1000
    tracker = _ActivationTracker()

    def two_steps(x):
        y = x * 2  # n floats, alive while z is computed
        z = y + 1  # n floats
        return z.sum()

    x = torch.randn(n)
    tracker.enter("heads", (x,))
    with torch.no_grad(), tracker:
        two_steps(x)
    tracker.leave()
    assert tracker.written["heads"] == 2 * n * 4 + 4
    assert tracker.peak_by_module["heads"] == 3 * n * 4 + 4  # x (input) + y + z, then the scalar
    assert tracker.live_bytes == 0  # everything was freed


def test_activation_costs_cover_every_module():
    costs, peak = activation_costs(build_model(variant()), seconds=1.0)
    assert list(costs) == list(MODULE_NAMES)
    assert all(c.peak_bytes > 0 and c.written_bytes > 0 for c in costs.values())
    assert peak >= max(c.peak_bytes for c in costs.values())

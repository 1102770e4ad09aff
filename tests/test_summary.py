"""Per-module MACs from torch's FLOP counter."""

from __future__ import annotations

import pytest

from at2seld_edge.model import MODULE_NAMES, build_model
from at2seld_edge.summary import summarize
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

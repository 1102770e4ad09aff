"""FOA rotations/reflections move audio and labels together; SpecAugment masks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from at2seld_edge.data.augment import FOA_PATTERNS, SpecAugment, rotate_doa, rotate_foa
from at2seld_edge.data.synth import foa_gains, unit_vector


def encode_plane_wave(direction: np.ndarray, signal: np.ndarray) -> np.ndarray:
    return foa_gains(direction)[:, None] * signal[None]


def test_sixteen_distinct_orthogonal_patterns():
    assert len(FOA_PATTERNS) == 16
    for m in FOA_PATTERNS:
        np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-6)
        assert abs(m[2, 2]) == 1 and m[2, :2].tolist() == [0, 0]  # elevation only flips
    for a, b in itertools.combinations(FOA_PATTERNS, 2):
        assert not np.allclose(a, b)
    assert np.allclose(FOA_PATTERNS[0], np.eye(3))


@pytest.mark.parametrize("pattern", range(16))
@pytest.mark.parametrize("az,el", [(30, 10), (-120, -35), (95, 60)])
def test_rotated_audio_is_the_plane_wave_from_the_rotated_label(pattern, az, el):
    rng = np.random.default_rng(0)
    s = rng.standard_normal(256)
    d = unit_vector(az, el)
    audio = encode_plane_wave(d, s)
    new_d = rotate_doa(d[None], pattern)[0]
    np.testing.assert_allclose(rotate_foa(audio, pattern), encode_plane_wave(new_d, s), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(new_d), 1.0, atol=1e-6)


def test_the_patterns_are_the_azimuth_maps_and_elevation_flip():
    """Each pattern maps (az, el) to (+-az + k*90, +-el), and all 16 combinations occur."""
    az, el = 25.0, 15.0
    seen = set()
    for p in range(16):
        x, y, z = rotate_doa(unit_vector(az, el)[None], p)[0]
        new_az = round(np.degrees(np.arctan2(y, x))) % 360
        new_el = round(np.degrees(np.arcsin(z)))
        seen.add((new_az, new_el))
    expected = {((s * az + k * 90) % 360, e * el) for s in (1, -1) for k in range(4) for e in (1, -1)}
    assert seen == {(round(a) % 360, round(e)) for a, e in expected}


def test_spec_augment_masks_whole_bands_on_every_map():
    torch.manual_seed(0)
    x = torch.ones(3, 5, 40, 32)
    y = SpecAugment(time_masks=2, time_width=6, freq_masks=2, freq_width=5)(x)
    assert ((y == 0) | (y == 1)).all()
    assert torch.equal(y[:, :1].expand_as(y), y)  # same mask on every map of a clip
    dropped = (y == 0).float().mean().item()
    assert 0.0 < dropped < 0.6

"""FOA front-end: STFT, mel filters, resampler, and the direction the descriptors read."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from at2seld_edge.config import load_config
from at2seld_edge.errors import EdgeError
from at2seld_edge.model.dsp import ConvSTFT, Resampler, mel_filterbank, reflect_pad
from at2seld_edge.model.frontend import DESCRIPTORS, Frontend

SR = 24000


def test_conv_stft_equals_torch_stft():
    wave = torch.randn(3, 4800, generator=torch.Generator().manual_seed(0))
    real, imag = ConvSTFT(512, 240)(wave)
    ref = torch.stft(wave.double(), 512, 240, window=torch.hann_window(512, periodic=True, dtype=torch.float64),
                     center=True, pad_mode="reflect", return_complex=True)
    torch.testing.assert_close(real.double(), ref.real, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(imag.double(), ref.imag, atol=2e-4, rtol=1e-4)


def test_training_fft_path_equals_the_exported_conv_path():
    stft = ConvSTFT(512, 240)
    wave = torch.randn(2, 4800, generator=torch.Generator().manual_seed(1))
    conv = stft.eval()(wave)
    fft = stft.train()(wave)
    for a, b in zip(conv, fft):
        torch.testing.assert_close(a, b, atol=2e-4, rtol=1e-4)
    with torch.no_grad():
        stft.conv_real.weight.mul_(1.01)  # kernels from a checkpoint made with other settings
    assert not stft.check_kernels()
    torch.testing.assert_close(stft.train()(wave)[0], stft.eval()(wave)[0])  # FFT path off


def test_reflect_pad_equals_torch():
    x = torch.randn(2, 1, 50)
    torch.testing.assert_close(reflect_pad(x, 7), torch.nn.functional.pad(x, (7, 7), mode="reflect"))


def test_mel_filters_are_slaney_area_normalized():
    w = mel_filterbank(32000, 1024, 64, 50, 14000)
    assert w.shape == (513, 64) and (w >= 0).all()
    df = 32000 / 1024
    area = w.sum(axis=0) * df  # triangle area in Hz: 1 under Slaney normalization
    # the narrow low bands are sampled by few FFT bins; the wide high bands integrate exactly
    assert np.allclose(area, 1.0, atol=0.06) and np.allclose(area[40:], 1.0, atol=2e-3)
    peaks = w.argmax(axis=0)
    assert (np.diff(peaks) >= 0).all() and peaks[-1] * df < 14000


def test_resampler_preserves_a_tone():
    t_in = np.arange(SR) / SR
    tone = torch.tensor(np.sin(2 * np.pi * 1000 * t_in), dtype=torch.float32)[None]
    y = Resampler(SR, 32000)(tone)[0].numpy()
    assert y.shape == (32000,)
    t_out = np.arange(32000) / 32000
    mid = slice(2000, 30000)  # away from the zero-padded edges
    assert np.max(np.abs(y[mid] - np.sin(2 * np.pi * 1000 * t_out[mid]))) < 1e-3


def plane_wave(azimuth_deg: float, elevation_deg: float, seconds: float = 0.5, seed: int = 0) -> torch.Tensor:
    """Broadband noise from one direction, encoded to ACN/SN3D FOA (W, Y, Z, X)."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    s = torch.randn(int(SR * seconds), generator=torch.Generator().manual_seed(seed))
    gains = torch.tensor([1.0, math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)])
    return (gains[:, None] * s)[None]


def unit(az, el):
    az, el = math.radians(az), math.radians(el)
    return np.array([math.cos(az) * math.cos(el), math.sin(az) * math.cos(el), math.sin(el)])


@pytest.fixture(scope="module")
def frontend():
    return Frontend(load_config("at2seld-nano")).eval()


@pytest.mark.parametrize("az,el", [(0, 0), (90, 0), (180, 0), (-90, 0), (45, 30), (-135, -20)])
def test_intensity_vectors_point_at_the_source(frontend, az, el):
    names = frontend.descriptor_set.names
    desc, _ = frontend(plane_wave(az, el))
    iv = desc[0, [names.index(n) for n in ("iv_x", "iv_y", "iv_z")]].mean(dim=(1, 2)).numpy()
    cos = iv @ unit(az, el) / np.linalg.norm(iv)
    assert cos > math.cos(math.radians(1.0)), f"IV {iv} is not towards {unit(az, el)}"


def test_rotating_the_scene_rotates_the_intensity_vector(frontend):
    """Rotating the FOA field by +90 deg azimuth (X' = -Y, Y' = X) turns the IV by +90 deg."""
    names = frontend.descriptor_set.names
    idx = [names.index(n) for n in ("iv_x", "iv_y", "iv_z")]
    foa = plane_wave(30, 10)
    w, y, z, x = foa[:, 0], foa[:, 1], foa[:, 2], foa[:, 3]
    rotated = torch.stack([w, x, z, -y], dim=1)
    iv = frontend(foa)[0][0, idx].mean(dim=(1, 2)).numpy()
    iv_rot = frontend(rotated)[0][0, idx].mean(dim=(1, 2)).numpy()
    rot_z = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]])
    assert np.allclose(rot_z @ iv, iv_rot, atol=1e-4)
    assert math.degrees(math.atan2(iv_rot[1], iv_rot[0])) == pytest.approx(120, abs=1)


def test_phase_descriptors_of_an_in_phase_plane_wave(frontend):
    names = frontend.descriptor_set.names
    desc, _ = frontend(plane_wave(0, 0))
    cos_x = desc[0, names.index("phase_cos_x")].mean().item()
    sin_x = desc[0, names.index("phase_sin_x")].abs().mean().item()
    assert cos_x > 0.99 and sin_x < 1e-3  # X is W scaled by +1: zero phase difference


def test_descriptor_sets_are_registered_by_name():
    assert DESCRIPTORS.names() == ["logmel_iv", "spectral"]
    assert len(DESCRIPTORS.get("logmel_iv").names) == 7 and len(DESCRIPTORS.get("spectral").names) == 13
    with pytest.raises(EdgeError, match="unknown descriptor set 'mfcc'"):
        DESCRIPTORS.get("mfcc")


def test_frame_alignment(frontend):
    desc, omni = frontend(torch.zeros(1, 4, 2 * 2400))
    assert desc.shape == (1, 13, 20, 64)  # 10 STFT frames per 100 ms label frame
    assert omni.shape == (1, 4800)  # nano's backbone runs at the dataset rate


@pytest.mark.parametrize("shape", [(1, 2, 2400), (1, 5, 2400), (4, 2400)])
def test_non_foa_input_is_refused(frontend, shape):
    with pytest.raises(EdgeError, match="expected FOA audio shaped"):
        frontend(torch.zeros(shape))


def test_length_must_be_whole_label_hops(frontend):
    with pytest.raises(EdgeError, match="not a whole number of 2400-sample label hops"):
        frontend(torch.zeros(1, 4, 2500))

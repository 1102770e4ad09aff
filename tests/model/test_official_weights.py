"""Official PANNs / E-PANNs checkpoints: strict loading, and equality with the official forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from at2seld_edge.config import BackboneConfig
from at2seld_edge.errors import EdgeError
from at2seld_edge.model.backbones import BACKBONES
from at2seld_edge.model.backbones.official_weights import load_official_checkpoint, read_state_dict
from tests.model import panns_reference as ref

SR, N_FFT, HOP, MELS = 32000, 1024, 320, 64
# Narrow widths keep the files small; key names and layout are the official ones.
TINY = {
    "cnn14": [4, 4, 8, 8, 8, 8, 16, 16, 16, 16, 24, 24],
    "epanns": [4, 4, 8, 8, 8, 8, 8, 8, 16, 16, 12, 12],
    "cnn10": [4, 4, 8, 8, 8, 8, 16, 16],
    "mobilenetv1": [4, 8, 8, 8, 16, 16, 16, 16, 16, 16, 16, 16, 24, 24],
}
REFERENCE = {
    "cnn14": lambda sd, w: ref.cnn_clipwise(sd, w, HOP, 6, (1, 1)),
    "epanns": lambda sd, w: ref.cnn_clipwise(sd, w, HOP, 6, (1, 1)),
    "cnn10": lambda sd, w: ref.cnn_clipwise(sd, w, HOP, 4, (2, 2)),
    "mobilenetv1": lambda sd, w: ref.mobilenetv1_clipwise(sd, w, HOP),
}


def official_backbone(name: str, channels=None, head: bool = True):
    """A backbone built as the official network: official mel settings and the official (2, 2)
    pooling, i.e. time pooled exactly as frequency."""
    cls = BACKBONES.get(name)
    b = BackboneConfig(name=name, channels=channels, sample_rate=SR, n_fft=N_FFT, hop=HOP, n_mels=MELS, fmin=50, fmax=14000)
    net = cls(b, list(cls.default_freq_pool))
    if head:
        net.add_audioset_head(16 if channels else cls.default_embed_dim)
    return net.eval()


def official_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights and BN statistics in the official layout, with true DFT kernels computed
    here from numpy's FFT (independently of the package)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in official_backbone(name, TINY[name]).state_dict().items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(1000)
        elif k.endswith("running_var"):
            sd[k] = 0.5 + torch.rand(v.shape, generator=g)
        elif "conv" in k and "stft" not in k or k.startswith(("fc", "features")):
            sd[k] = 0.3 * torch.randn(v.shape, generator=g)
        else:
            sd[k] = 0.1 * torch.randn(v.shape, generator=g)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)
    basis = np.fft.rfft(np.eye(N_FFT), axis=1).T * window  # (F, n_fft): row k = window * exp(-2 pi i k n / N)
    sd["spectrogram_extractor.stft.conv_real.weight"] = torch.tensor(basis.real[:, None, :], dtype=torch.float32)
    sd["spectrogram_extractor.stft.conv_imag.weight"] = torch.tensor(basis.imag[:, None, :], dtype=torch.float32)
    sd["logmel_extractor.melW"] = torch.rand((N_FFT // 2 + 1, MELS), generator=g) * 0.05
    return sd


@pytest.fixture
def wave():
    return 0.2 * torch.randn(2, SR, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("layout", ["panns", "epanns"])
def test_official_checkpoint_loads_strictly_and_matches_official_forward(tmp_path, wave, name, layout):
    sd = official_state_dict(name)
    path = tmp_path / "official.pth"
    # PANNs releases wrap the state dict in {'model': ...}; E-PANNs ships it bare.
    torch.save({"model": sd, "iteration": 600000} if layout == "panns" else sd, path)
    net = official_backbone(name, TINY[name])
    report = load_official_checkpoint(net, path)
    assert report.unused == [] and len(report.loaded) == len(sd)
    with torch.no_grad():
        got = net.clipwise_output(wave)
        want = REFERENCE[name](sd, wave)
    assert got.shape == (2, 527)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(TINY))
def test_audioset_head_keys_are_reported_not_dropped(tmp_path, name):
    path = tmp_path / "official.pth"
    torch.save({"model": official_state_dict(name)}, path)
    seld_backbone = official_backbone(name, TINY[name], head=False)
    report = load_official_checkpoint(seld_backbone, path)
    assert sorted(report.unused) == ["fc1.bias", "fc1.weight", "fc_audioset.bias", "fc_audioset.weight"]
    assert "fc_audioset.weight" in report.summary()


def test_wrong_key_is_refused_by_name(tmp_path):
    sd = official_state_dict("cnn10")
    sd["conv_block2.conv9.weight"] = sd.pop("conv_block2.conv2.weight")
    path = tmp_path / "renamed.pth"
    torch.save({"model": sd}, path)
    with pytest.raises(EdgeError) as e:
        load_official_checkpoint(official_backbone("cnn10", TINY["cnn10"]), path)
    msg = str(e.value)
    assert "missing keys: conv_block2.conv2.weight" in msg
    assert "unexpected keys: conv_block2.conv9.weight" in msg and str(path) in msg


def test_shape_mismatch_names_key_and_shapes(tmp_path):
    path = tmp_path / "cnn14.pth"
    torch.save({"model": official_state_dict("cnn14")}, path)
    with pytest.raises(EdgeError, match=r"shape mismatch: conv_block1\.conv1\.weight \(4, 1, 3, 3\) vs model \(64, 1, 3, 3\)"):
        load_official_checkpoint(official_backbone("cnn14"), path)


def test_not_a_state_dict_and_missing_file(tmp_path):
    path = tmp_path / "junk.pth"
    torch.save({"model": [1, 2, 3]}, path)
    with pytest.raises(EdgeError, match="expected a state dict"):
        read_state_dict(path)
    with pytest.raises(EdgeError, match="not found"):
        read_state_dict(tmp_path / "absent.pth")


def test_untrusted_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": Evil()}, path)
    with pytest.raises(EdgeError, match="weights_only"):
        read_state_dict(path)


def test_numpy_sampler_state_in_training_checkpoints_is_allowed(tmp_path):
    sd = official_state_dict("cnn10")
    path = tmp_path / "train_ckpt.pth"
    torch.save({"model": sd, "sampler": {"indexes": np.arange(5)}}, path)
    assert set(read_state_dict(path)) == set(sd)


def test_official_parameter_counts():
    # The PANNs paper's Table: CNN14 80.8M, CNN10 5.2M, MobileNetV1 4.8M trainable parameters.
    counts = {}
    for name in ("cnn14", "cnn10", "mobilenetv1"):
        net = official_backbone(name)
        counts[name] = sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert counts == {"cnn14": 80_753_615, "cnn10": 5_219_279, "mobilenetv1": 4_796_303}

"""The official PANNs forward pass (Kong et al., audioset_tagging_cnn), written functionally over an
official-layout state dict: the oracle our backbones are checked against. It reads nothing but the
state dict, so it shares no code with the package."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _bn(x, sd, prefix):
    return F.batch_norm(x, sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"],
                        sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], training=False, eps=1e-5)


def logmel(sd, wave, hop):
    """torchlibrosa Spectrogram (centre, reflect, conv DFT) + LogmelFilterBank (ref 1, amin 1e-10) + bn0."""
    n_fft = sd["spectrogram_extractor.stft.conv_real.weight"].shape[-1]
    x = F.pad(wave[:, None, :], (n_fft // 2, n_fft // 2), mode="reflect")
    real = F.conv1d(x, sd["spectrogram_extractor.stft.conv_real.weight"], stride=hop)
    imag = F.conv1d(x, sd["spectrogram_extractor.stft.conv_imag.weight"], stride=hop)
    power = (real ** 2 + imag ** 2).transpose(1, 2)[:, None]  # (B, 1, T, F)
    mel = torch.matmul(power, sd["logmel_extractor.melW"])
    x = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
    return _bn(x.transpose(1, 3), sd, "bn0").transpose(1, 3)


def _head(sd, x):
    x = x.mean(dim=3)
    x = x.max(dim=2).values + x.mean(dim=2)
    x = F.relu(F.linear(x, sd["fc1.weight"], sd["fc1.bias"]))
    return torch.sigmoid(F.linear(x, sd["fc_audioset.weight"], sd["fc_audioset.bias"]))


def cnn_clipwise(sd, wave, hop: int, n_blocks: int, last_pool=(1, 1)):
    """Cnn14 (n_blocks=6, last pool (1,1)), Cnn10 (4, (2,2)), E-PANNs Cnn14_pruned (6, (1,1))."""
    x = logmel(sd, wave, hop)
    for i in range(1, n_blocks + 1):
        p = f"conv_block{i}"
        x = F.relu(_bn(F.conv2d(x, sd[f"{p}.conv1.weight"], padding=1), sd, f"{p}.bn1"))
        x = F.relu(_bn(F.conv2d(x, sd[f"{p}.conv2.weight"], padding=1), sd, f"{p}.bn2"))
        x = F.avg_pool2d(x, kernel_size=last_pool if i == n_blocks else (2, 2))
    return _head(sd, x)


def mobilenetv1_clipwise(sd, wave, hop: int):
    strides = [2, 1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    x = logmel(sd, wave, hop)
    for i, s in enumerate(strides):
        p = f"features.{i}"
        if i == 0:
            x = F.relu(_bn(F.avg_pool2d(F.conv2d(x, sd[f"{p}.0.weight"], padding=1), s), sd, f"{p}.2"))
            continue
        w = sd[f"{p}.0.weight"]
        x = F.avg_pool2d(F.conv2d(x, w, padding=1, groups=w.shape[0]), s)
        x = F.relu(_bn(x, sd, f"{p}.2"))
        x = F.relu(_bn(F.conv2d(x, sd[f"{p}.4.weight"]), sd, f"{p}.5"))
    return _head(sd, x)

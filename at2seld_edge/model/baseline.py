"""`dcase-baseline`: the DCASE 2023 Task 3 baseline (SELDnet with self-attention), not pretrained,
in the toolkit's model contract, so it trains, exports, compresses and deploys like AT2SELD.

As the official seld-dcase2023 code builds it: 4 log-mel + 3 intensity-vector maps (the front-end's
`logmel_iv` descriptors; 64 mels, 20 ms hop), conv blocks (3x3 conv, BatchNorm, ReLU, max pooling,
spatial dropout; 64 filters, pooling (5, 4), (1, 4), (1, 2)), a bidirectional GRU whose two
directions are multiplied after a tanh, multi-head self-attention layers (residual, then
LayerNorm), two linear layers and a tanh: multi-ACCDOA, one Cartesian vector per track and class
whose length is the activity. One difference: a BatchNorm over the input maps stands in for the
official feature scaler (fitted on the training set beforehand).

The contract every family meets: `sed_logits` (B, T, N, C) = ACTIVITY_SCALE * (|v| - 0.5), so the
official decision |v| > 0.5 is probability 0.5 and the calibrated thresholds apply as for AT2SELD;
`doa` (B, T, N, C, 3) = v / |v|. It trains with the toolkit's loss (`training.loss`: ADPIT over the
tracks in the preset, as the official baseline; BCE on that logit, MSE on the unit vector of the
active tracks), not with the official MSE on the ACCDOA vectors. Module names: `frontend`,
`spatial_encoder` (the conv blocks), `smoother` (the GRU), `track_transformer` (self-attention),
`heads`; `backbone` and `cross_stitch` are empty (no omni backbone, no coupling), so their rows in
summaries and profiles are zero and no pruning plan applies.
"""

from __future__ import annotations

import torch
from torch import nn

from at2seld_edge.config import ModelConfig, SpatialEncoderConfig
from at2seld_edge.model.at2seld import ARCHITECTURES, Architecture
from at2seld_edge.model.frontend import Frontend
from at2seld_edge.model.tracks import SelfAttention

ACTIVITY_SCALE = 10.0  # logit per unit of ACCDOA length: |v| 0.0 -> p 0.007, 0.5 -> 0.5, 1.0 -> 0.993
EPS = 1e-6


class ConvEncoder(nn.Module):
    """Input BatchNorm, then per stage: (3x3 conv, BatchNorm, ReLU) x blocks, max pooling, spatial
    dropout. (B, maps, T, mels) -> frame features (B, T, channels * bins)."""

    def __init__(self, in_maps: int, n_mels: int, cfg: SpatialEncoderConfig):
        super().__init__()
        self.input_norm = nn.BatchNorm2d(in_maps)
        stages, ch = [], in_maps
        for out_ch, tp, fp in zip(cfg.channels, cfg.time_pool, cfg.freq_pool):
            layers: list[nn.Module] = []
            for _ in range(cfg.blocks_per_stage):
                layers += [nn.Conv2d(ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU()]
                ch = out_ch
            layers += [nn.MaxPool2d((tp, fp)) if (tp, fp) != (1, 1) else nn.Identity(), nn.Dropout2d(cfg.dropout)]
            stages.append(nn.Sequential(*layers))
            n_mels //= fp
        self.stages = nn.Sequential(*stages)
        self.out_features = ch * n_mels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.input_norm(x))  # (B, C, T, F)
        return x.permute(0, 2, 1, 3).flatten(2)


class GatedGRU(nn.Module):
    """Bidirectional GRU over time; the tanh of the two directions multiplied (the official merge)."""

    def __init__(self, d_in: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.gru = nn.GRU(d_in, hidden, num_layers=layers, bidirectional=True, dropout=dropout if layers > 1 else 0.0)
        self.hidden = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.gru(x.transpose(0, 1))  # time-major: the batch never merges with the dynamic time axis
        y = torch.tanh(y.transpose(0, 1))
        return y[..., self.hidden:] * y[..., : self.hidden]


class AttentionStack(nn.Module):
    """Self-attention layers over time, each x = LayerNorm(x + attention(x))."""

    def __init__(self, d: int, heads: int, layers: int, dropout: float):
        super().__init__()
        self.attention = nn.ModuleList(SelfAttention(d, heads, dropout) for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attn, norm in zip(self.attention, self.norms):
            x = norm(x + attn(x))
        return x


class AccdoaHeads(nn.Module):
    """Two linear layers (no activation between, as the official code) and a tanh: multi-ACCDOA
    vectors, turned into the contract's activity logits and unit DOA vectors."""

    def __init__(self, d: int, n_tracks: int, num_classes: int):
        super().__init__()
        self.n_tracks, self.num_classes = n_tracks, num_classes
        self.fnn = nn.Sequential(nn.Linear(d, d), nn.Linear(d, n_tracks * 3 * num_classes))

    def accdoa(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d) -> (B, T, N, C, 3); the official layout is track, then x/y/z, then class."""
        v = torch.tanh(self.fnn(x)).unflatten(-1, (self.n_tracks, 3, self.num_classes))
        return v.transpose(-1, -2)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        v = self.accdoa(x)
        length = torch.sqrt((v * v).sum(dim=-1) + EPS)
        return {"sed_logits": ACTIVITY_SCALE * (length - 0.5), "doa": v / length.unsqueeze(-1)}


class DcaseBaseline(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.frontend = Frontend(cfg)
        self.backbone = nn.Identity()  # none: the seven module names are the contract
        self.spatial_encoder = ConvEncoder(self.frontend.num_descriptors, cfg.frontend.n_mels, cfg.spatial_encoder)
        self.cross_stitch = nn.Identity()
        d, tt = cfg.smoother.hidden, cfg.track_transformer
        self.track_transformer = AttentionStack(d, tt.heads, tt.layers, tt.dropout)  # runs after the GRU
        self.smoother = GatedGRU(self.spatial_encoder.out_features, d, cfg.smoother.layers, cfg.spatial_encoder.dropout)
        self.heads = AccdoaHeads(d, cfg.heads.n_tracks, cfg.num_classes)
        self.feature_augment = None  # SpecAugment on the input maps, set by training

    def set_feature_augment(self, augment) -> None:
        self.feature_augment = augment

    def forward(self, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        """audio (B, 4, samples) -> sed_logits (B, T, N, C), doa (B, T, N, C, 3)."""
        desc, _ = self.frontend(audio)
        if self.training and self.feature_augment is not None:
            desc = self.feature_augment(desc)
        return self.heads(self.track_transformer(self.smoother(self.spatial_encoder(desc))))

    def num_frames(self, samples: int) -> int:
        return samples // self.config.audio.label_hop_samples


def check_config(cfg: ModelConfig) -> None:
    """What the baseline's parts need beyond ModelConfig's own checks."""
    if cfg.backbone is not None:
        raise ValueError("key `backbone`: dcase-baseline has no omni backbone; leave the key out")
    if cfg.causal:
        raise ValueError("key `smoother.causal`: dcase-baseline is not causal (bidirectional GRU, full attention)")
    if cfg.heads.semantic_presence:
        raise ValueError("key `heads.semantic_presence`: dcase-baseline has no backbone stream for that head")
    if cfg.track_transformer.d_model != cfg.smoother.hidden:
        raise ValueError(f"key `track_transformer.d_model`: {cfg.track_transformer.d_model} must equal smoother.hidden "
                         f"{cfg.smoother.hidden} (the attention runs on the GRU's output)")


ARCHITECTURES.register("dcase-baseline")(Architecture(DcaseBaseline, check_config))

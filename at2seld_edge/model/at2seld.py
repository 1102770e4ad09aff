"""AT2SELD: audio-tagging backbone + FOA spatial branch -> track-wise SED and Cartesian DOA.

Submodules carry the names the profiler attributes cost to: `frontend`, `backbone`,
`spatial_encoder`, `cross_stitch`, `track_transformer`, `smoother`, `heads`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from at2seld_edge.config import ModelConfig
from at2seld_edge.model.backbones import BACKBONES
from at2seld_edge.model.cross_stitch import CrossStitchCoupling
from at2seld_edge.model.frontend import Frontend
from at2seld_edge.model.spatial import SpatialEncoder
from at2seld_edge.model.stream import assign_stream_keys
from at2seld_edge.model.tracks import Heads, Smoother, TrackTransformer
from at2seld_edge.registry import Registry

MODULE_NAMES = ("frontend", "backbone", "spatial_encoder", "cross_stitch", "track_transformer", "smoother", "heads")
OUTPUT_NAMES = ("sed_logits", "doa")


class AT2SELD(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        arch = BACKBONES.get(cfg.backbone.name)
        self.frontend = Frontend(cfg)
        self.backbone = arch.build(cfg)
        self.spatial_encoder = SpatialEncoder(self.frontend.num_descriptors, cfg.frontend.n_mels, cfg.spatial_encoder)
        cs = cfg.cross_stitch
        self._early = cs.enabled and cs.position == "early"
        sem_map_ch = spa_map_ch = 0
        if self._early:
            sem_map_ch = arch.channels(cfg.backbone)[cs.early_backbone_stage * arch.stage_width - 1]
            spa_map_ch = cfg.spatial_encoder.channels[cs.early_spatial_stage - 1]
        d = cfg.track_transformer.d_model
        self.cross_stitch = CrossStitchCoupling(
            sem_map_ch, spa_map_ch, self.backbone.out_channels, self.spatial_encoder.out_features, d,
            cs.enabled, cs.position, cs.init_self,
        )
        self.track_transformer = TrackTransformer(cfg.track_transformer, cfg.heads.n_tracks, cfg.causal)
        self.smoother = Smoother(d, cfg.smoother)
        self.heads = Heads(self.smoother.out_features, self.backbone.out_channels, cfg.num_classes, cfg.heads)
        self.feature_augment = None  # set by training (SpecAugment); applied in train mode only
        assign_stream_keys(self, cfg.causal)

    def set_feature_augment(self, augment) -> None:
        """Mask the spatial descriptors and the backbone's log-mel while training."""
        self.feature_augment = augment
        self.backbone.feature_augment = augment

    def forward(self, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        """audio (B, 4, samples), ACN/SN3D, samples a multiple of the label hop ->
        sed_logits (B, T, N_tracks, C), doa (B, T, N_tracks, C, 3) [, clip_logits (B, C)].
        Causal models also run as a stream step (model/stream.py: `streaming`): the audio is the
        new hops, the outputs their frames."""
        fused, sem_seq = self.encode(audio)
        return self.heads(self.smoother(self.track_transformer(fused)), sem_seq)

    def encode(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoders and the late coupling: fused frame features (B, T, d) and the semantic
        frame sequence (B, T, C_sem)."""
        desc, omni = self.frontend(audio)
        if self.training and self.feature_augment is not None:
            desc = self.feature_augment(desc)
        if self._early:
            cs = self.config.cross_stitch
            sem = self.backbone(omni, 0, cs.early_backbone_stage)
            spa = self.spatial_encoder(desc, 0, cs.early_spatial_stage)
            sem, spa = self.cross_stitch(sem, spa)
            sem = self.backbone(sem, cs.early_backbone_stage)
            spa = self.spatial_encoder(spa, cs.early_spatial_stage)
        else:
            sem, spa = self.backbone(omni), self.spatial_encoder(desc)
        sem_seq = sem.mean(dim=3).transpose(1, 2)  # (B, T, C_sem): PANNs' own frequency mean
        spa_seq = self.spatial_encoder.frame_features(spa)  # (B, T, C_spa * F_spa)
        return self.cross_stitch(sem_seq, spa_seq), sem_seq

    def num_frames(self, samples: int) -> int:
        return samples // self.config.audio.label_hop_samples


@dataclass(frozen=True)
class Architecture:
    """A model family: its builder, and the checks of its own config parts (raising ValueError),
    run by ModelConfig's validator (AT2SELD's are ModelConfig's own)."""

    build: Callable[[ModelConfig], nn.Module]
    check_config: Callable[[ModelConfig], None] = lambda cfg: None


ARCHITECTURES: Registry[Architecture] = Registry("architecture")
ARCHITECTURES.register("at2seld")(Architecture(AT2SELD))


def build_model(cfg: ModelConfig) -> AT2SELD:
    """The model of `cfg.architecture`; every family has the seven named submodules and the two outputs."""
    return ARCHITECTURES.get(cfg.architecture).build(cfg)

"""Cross-stitch coupling of the semantic (backbone) and spatial streams.

A cross-stitch unit (Misra et al., 2016) lets each stream take a learned, per-channel share of
the other: s' = a_ss*s + a_sp*P(p), p' = a_pp*p + a_ps*Q(s), where P, Q are 1x1 projections to
the receiving stream's width. `late` mixes the frame-level sequences just before the track
transformer; `early` mixes the feature maps between backbone and encoder stages (the other
stream's map is averaged over frequency and broadcast, since the two frequency axes differ).
Either way the streams are then fused (concatenate + linear) to the transformer width.
"""

from __future__ import annotations

import torch
from torch import nn


class CrossStitchUnit(nn.Module):
    def __init__(self, sem_ch: int, spa_ch: int, init_self: float):
        super().__init__()
        self.spa_to_sem = nn.Linear(spa_ch, sem_ch, bias=False)
        self.sem_to_spa = nn.Linear(sem_ch, spa_ch, bias=False)
        self.alpha_sem = nn.Parameter(torch.tensor([init_self, 1.0 - init_self]).repeat(sem_ch, 1))
        self.alpha_spa = nn.Parameter(torch.tensor([init_self, 1.0 - init_self]).repeat(spa_ch, 1))

    def forward(self, sem: torch.Tensor, spa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sequences (B, T, C) or maps (B, C, T, F)."""
        if sem.dim() == 3:
            new_sem = self.alpha_sem[:, 0] * sem + self.alpha_sem[:, 1] * self.spa_to_sem(spa)
            new_spa = self.alpha_spa[:, 0] * spa + self.alpha_spa[:, 1] * self.sem_to_spa(sem)
            return new_sem, new_spa
        sem_ctx = self.spa_to_sem(spa.mean(dim=3).transpose(1, 2)).transpose(1, 2).unsqueeze(-1)
        spa_ctx = self.sem_to_spa(sem.mean(dim=3).transpose(1, 2)).transpose(1, 2).unsqueeze(-1)
        a_sem = self.alpha_sem.t().reshape(2, 1, -1, 1, 1)
        a_spa = self.alpha_spa.t().reshape(2, 1, -1, 1, 1)
        return a_sem[0] * sem + a_sem[1] * sem_ctx, a_spa[0] * spa + a_spa[1] * spa_ctx


class CrossStitchCoupling(nn.Module):
    def __init__(self, sem_map_ch: int, spa_map_ch: int, sem_ch: int, spa_ch: int, d_model: int,
                 enabled: bool, position: str, init_self: float):
        super().__init__()
        self.position = position if enabled else "off"
        if self.position == "early":
            self.unit = CrossStitchUnit(sem_map_ch, spa_map_ch, init_self)
        elif self.position == "late":
            self.unit = CrossStitchUnit(sem_ch, spa_ch, init_self)
        self.fusion = nn.Sequential(nn.Linear(sem_ch + spa_ch, d_model), nn.LayerNorm(d_model))

    def forward(self, sem: torch.Tensor, spa: torch.Tensor):
        """Feature maps (B, C, T, F) (early position) -> the mixed maps; frame-level sequences
        (B, T, C_sem), (B, T, C_spa) -> fused (B, T, d_model)."""
        if sem.dim() == 4:
            return self.unit(sem, spa)
        if self.position == "late":
            sem, spa = self.unit(sem, spa)
        return self.fusion(torch.cat([sem, spa], dim=-1))

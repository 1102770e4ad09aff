"""Track transformer, recurrent smoother and track-wise SED/DOA heads.

Tracks are the multi-ACCDOA idea: N_tracks output slots per class so that same-class
overlapping events get distinct slots; the track transformer lets the slots of one frame see
each other (to avoid duplicates) and each slot see its own history over time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from at2seld_edge.config import HeadsConfig, SmootherConfig, TrackTransformerConfig
from at2seld_edge.model.stream import MASKED, CausalLayer, active_stream, band_mask


class SelfAttention(nn.Module, CausalLayer):
    """Multi-head self-attention written with MatMul/Softmax only, so it exports to every
    TensorRT version and torch's FLOP counter sees every multiply.

    Works on any leading (batch) axes and only ever splits or merges the last one (the heads),
    so the exported reshapes copy every leading axis (Reshape's 0) and TensorRT computes no shape
    from dynamic axes. In a stream step with a `window`, the keys and values of the last `window`
    frames come from the state (the key/value cache) and this step's are kept for the next."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dh = heads, d // heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, window: int = 0) -> torch.Tensor:
        """x (..., L, d) -> (..., L, d), attending along L; `mask` is added to the scores
        (L, L + window in a stream step with a key/value cache of `window` frames)."""
        lead = x.dim() - 2  # leading axes; positive indices below (the exporter mis-writes negative permutations)
        qkv = self.qkv(x).unflatten(lead + 1, (3, self.heads, self.dh))  # (..., L, 3, H, dh)
        qkv = qkv.permute(*range(lead), lead + 1, lead + 2, lead, lead + 3)  # (..., 3, H, L, dh)
        q, k, v = (qkv.select(lead, i) for i in range(3))
        state = active_stream()
        if window and state is not None:
            k = state.left_context(f"{self.state_key}.keys", k, window, dim=lead + 1)
            v = state.left_context(f"{self.state_key}.values", v, window, dim=lead + 1)
        scores = torch.matmul(q, k.transpose(lead + 1, lead + 2)) / math.sqrt(self.dh)
        if mask is not None:
            scores = scores + mask
        attn = F.dropout(torch.softmax(scores, dim=-1), self.dropout, self.training)
        y = torch.matmul(attn, v).transpose(lead, lead + 1).flatten(lead + 1)  # (..., L, d)
        return self.out(y)


class TrackLayer(nn.Module):
    """Pre-norm: attention across tracks within a frame, attention over time within a track, FFN."""

    def __init__(self, d: int, heads: int, ff_mult: int, dropout: float):
        super().__init__()
        self.norm_track, self.track_attn = nn.LayerNorm(d), SelfAttention(d, heads, dropout)
        self.norm_time, self.time_attn = nn.LayerNorm(d), SelfAttention(d, heads, dropout)
        self.norm_ff = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, ff_mult * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_mult * d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, window: int) -> torch.Tensor:
        """(B, T, N, d): the tracks of each frame attend to each other, then each track along time
        (under `mask`, with a `window`-frame cache in a stream step)."""
        y = x + self.drop(self.track_attn(self.norm_track(x)))
        y = y.transpose(1, 2)  # (B, N, T, d)
        y = y + self.drop(self.time_attn(self.norm_time(y), mask, window))
        y = y + self.drop(self.ff(self.norm_ff(y)))
        return y.transpose(1, 2)


class TrackTransformer(nn.Module, CausalLayer):
    """Causal, a frame attends to itself and the `history_frames` frames before it: bounded
    attention, and in a stream a fixed-size key/value cache per layer. The cache's first frames
    are not real history until the stream has run that long: a validity row in the state masks
    them (the whole clip has no frames before its start either)."""

    def __init__(self, cfg: TrackTransformerConfig, n_tracks: int, causal: bool):
        super().__init__()
        self.track_embedding = nn.Parameter(torch.randn(n_tracks, cfg.d_model) * 0.02)
        self.layers = nn.ModuleList(TrackLayer(cfg.d_model, cfg.heads, cfg.ff_mult, cfg.dropout) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.window = cfg.history_frames if causal else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d) -> (B, T, N_tracks, d)."""
        mask, window = self.time_mask(x)
        x = x.unsqueeze(2) + self.track_embedding
        for layer in self.layers:
            x = layer(x, mask, window)
        return self.norm(x)

    def time_mask(self, x: torch.Tensor) -> tuple[torch.Tensor | None, int]:
        """The time attention's additive mask and the cache length (0: no cache)."""
        if self.window is None:
            return None, 0
        frames = x.shape[1]
        state = active_stream()
        if state is None or not self.layers:
            return band_mask(frames, frames, self.window, x.dtype), 0
        valid = state.left_context(f"{self.state_key}.valid", x.new_ones(1, frames), self.window, dim=1)
        return band_mask(frames, frames + self.window, self.window, x.dtype) + (1.0 - valid) * MASKED, self.window


class Smoother(nn.Module, CausalLayer):
    """GRU over time per track; unidirectional when causal (streaming, where its hidden state is
    the stream state), else bidirectional."""

    def __init__(self, d_in: int, cfg: SmootherConfig):
        super().__init__()
        # time-major, so the tracks fold into the GRU's batch beside a dynamic time axis, not across it
        self.gru = nn.GRU(d_in, cfg.hidden, num_layers=cfg.layers, bidirectional=not cfg.causal)
        self.out_features = cfg.hidden * (1 if cfg.causal else 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, N, d) -> (B, T, N, out_features)."""
        n = x.shape[2]
        seq = x.transpose(0, 1).flatten(1, 2)  # (T, B * N, d)
        state = active_stream() if self.causal else None
        if state is None:
            y, _ = self.gru(seq)
        else:
            g = self.gru
            h = state.carry(self.state_key, [g.num_layers, seq.shape[1], g.hidden_size], seq)
            y, h = self.gru(seq, h)
            state.put(self.state_key, h)
        return y.unflatten(1, (-1, n)).transpose(0, 1)


class Heads(nn.Module):
    """Track-wise SED logits (B, T, N, C) and Cartesian DOA (B, T, N, C, 3) in [-1, 1]^3, plus the
    optional clip-level semantic-presence logits (B, C) from the backbone stream."""

    def __init__(self, d_in: int, sem_ch: int, num_classes: int, cfg: HeadsConfig):
        super().__init__()
        self.num_classes = num_classes
        self.sed = nn.Linear(d_in, num_classes)
        self.doa = nn.Linear(d_in, 3 * num_classes)
        self.semantic_presence = nn.Linear(sem_ch, num_classes) if cfg.semantic_presence else None

    def forward(self, tracks: torch.Tensor, sem_seq: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {
            "sed_logits": self.sed(tracks),
            "doa": torch.tanh(self.doa(tracks)).unflatten(-1, (self.num_classes, 3)),
        }
        if self.semantic_presence is not None:
            out["clip_logits"] = self.semantic_presence(sem_seq.max(dim=1).values)
        return out

"""Class balance in training (`training.class_balance`): rare classes get as much exposure as
common ones, either by drawing segments by inverse class frequency or by training on a subset of
clips picked to even out the classes. Both are off by default; `edge ablate` measures them.

- `sampler: true`: each epoch draws as many segments as there are, with replacement, segment i
  with weight sum_c n_ic / N_c (n_ic: frames of class c in segment i, N_c: in all segments), so
  every class carries the same total weight; segments without events keep their uniform share.
  The draw is seeded from (seed, epoch) and shared by every process, so the run stays the same
  for any process count, and batches are cut and shared as `GlobalBatchSampler` cuts them.
- `subset: f`: the fraction f of the training clips, picked greedily: each step takes the clip
  with the most frames of the classes seen least so far (sum_c n_c / (1 + T_c), T_c: frames of
  class c picked already), ties by clip order.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from at2seld_edge.config import ClassBalanceConfig
from at2seld_edge.data.dataset import SegmentDataset
from at2seld_edge.data.spec import Clip
from at2seld_edge.training.distributed import GlobalBatchSampler, epoch_seed


def segment_class_frames(ds: SegmentDataset) -> np.ndarray:
    """(segments, classes): event frames of each class in each training segment."""
    ev = ds.events
    counts = np.zeros((len(ds), ds.n_classes), np.int64)
    for i, (clip, start) in enumerate(zip(ds.clip_of, ds.start_of)):
        np.add.at(counts[i], ev.cls[ev.rows(clip, start, ds.seg)].astype(np.int64), 1)
    return counts


def inverse_frequency_weights(counts: np.ndarray) -> np.ndarray:
    """Segment weights sum_c n_ic / N_c; silent segments get the mean weight (their uniform share)."""
    totals = counts.sum(axis=0)
    w = (counts / np.maximum(totals, 1)).sum(axis=1)
    silent = counts.sum(axis=1) == 0
    if silent.all():
        return np.ones(len(counts))
    w[silent] = w[~silent].mean()
    return w


class BalancedBatchSampler(Sampler[list[tuple[int, int]]]):
    """`GlobalBatchSampler`'s batches and shares, each position mapped to a segment drawn by weight."""

    def __init__(self, base: GlobalBatchSampler, weights: np.ndarray):
        self.base = base
        self.weights = torch.as_tensor(weights, dtype=torch.float64)

    @property
    def left_out(self) -> int:
        return self.base.left_out

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        gen = torch.Generator().manual_seed(epoch_seed(self.base.seed, self.base.epoch) + 1)
        drawn = torch.multinomial(self.weights, self.base.segments, replacement=True, generator=gen).tolist()
        for batch in self.base:
            yield [(drawn[i], epoch) for i, epoch in batch]


def balanced_sampler(base: GlobalBatchSampler, ds: SegmentDataset, cfg: ClassBalanceConfig,
                     say: Callable[[str], None] = lambda text: None) -> Sampler:
    """The trainer's batch sampler: `base` itself unless `training.class_balance.sampler`."""
    if not cfg.sampler:
        return base
    counts = segment_class_frames(ds)
    weights = inverse_frequency_weights(counts)
    p = weights / weights.sum()
    say(f"class balance: segments drawn by inverse class frequency; class exposure spread (max/min frames) "
        f"{_spread(counts.sum(axis=0)):.2f} -> {_spread(p @ counts):.2f}")
    return BalancedBatchSampler(base, weights)


def clip_class_frames(clips: list[Clip], n_classes: int) -> np.ndarray:
    """(clips, classes): label rows (event frames) of each class in each clip."""
    out = np.zeros((len(clips), n_classes), np.int64)
    for i, clip in enumerate(clips):
        cls = np.array([e.cls for e in clip.events], np.int64)
        out[i] = np.bincount(cls[cls < n_classes], minlength=n_classes)
    return out


def greedy_balanced_subset(counts: np.ndarray, k: int) -> list[int]:
    """Indices of k rows of `counts` (clips x classes), picked greedily to even out the class totals."""
    picked: list[int] = []
    totals = np.zeros(counts.shape[1])
    free = np.ones(len(counts), bool)
    for _ in range(min(k, len(counts))):
        score = np.where(free, (counts / (1.0 + totals)).sum(axis=1), -np.inf)
        best = int(np.argmax(score))  # the first of equals: clip order
        picked.append(best)
        free[best] = False
        totals += counts[best]
    return sorted(picked)


def balanced_subset(clips: list[Clip], n_classes: int, cfg: ClassBalanceConfig,
                    say: Callable[[str], None] = lambda text: None) -> list[Clip]:
    """The training clips, or their balanced subset with `training.class_balance.subset`."""
    if cfg.subset is None or cfg.subset >= 1.0:
        return clips
    counts = clip_class_frames(clips, n_classes)
    keep = greedy_balanced_subset(counts, max(1, math.ceil(cfg.subset * len(clips))))
    say(f"class balance: {len(keep)} of {len(clips)} training clips, picked to even out the classes; class exposure "
        f"spread (max/min frames) {_spread(counts.sum(axis=0)):.2f} -> {_spread(counts[keep].sum(axis=0)):.2f}")
    return [clips[i] for i in keep]


def _spread(totals: np.ndarray) -> float:
    seen = totals[totals > 0]
    return float(seen.max() / seen.min()) if len(seen) else 1.0

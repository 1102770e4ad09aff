"""Class balance: the inverse-frequency sampler and the greedy balanced subset."""

from __future__ import annotations

import numpy as np
import pytest

from at2seld_edge.config import ClassBalanceConfig
from at2seld_edge.data.dataset import SegmentDataset
from at2seld_edge.training.balance import (BalancedBatchSampler, balanced_sampler, balanced_subset, clip_class_frames,
                                           greedy_balanced_subset, inverse_frequency_weights, segment_class_frames)
from at2seld_edge.training.distributed import GlobalBatchSampler


def test_weights_give_every_class_the_same_total_and_silence_its_share():
    counts = np.array([[10, 0], [10, 0], [10, 0], [0, 2], [0, 0]])
    w = inverse_frequency_weights(counts)
    by_class = [(w[:, None] * (counts > 0))[:, c].sum() for c in range(2)]
    assert by_class[0] == pytest.approx(by_class[1])  # 3 x 1/3 == 1 x 1
    assert w[4] == pytest.approx(w[:4].mean())


def test_sampler_draws_rare_classes_more_and_is_seeded():
    weights = np.array([1.0] * 9 + [9.0])
    base = GlobalBatchSampler(10, batch_size=4, seed=3)
    sampler = BalancedBatchSampler(base, weights)
    sampler.set_epoch(0)
    first = [k for batch in sampler for k in batch]
    assert len(first) == 10 and all(e == 0 for _, e in first) and len(sampler) == len(base) == 3
    assert first == [k for batch in sampler for k in batch]  # same (seed, epoch): same draw
    draws = []
    for epoch in range(200):
        sampler.set_epoch(epoch)
        draws += [i for batch in sampler for i, _ in batch]
    share = np.bincount(draws, minlength=10) / len(draws)
    assert share[9] == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize("world", [1, 2])
def test_processes_share_one_draw(world):
    weights = np.arange(1.0, 8.0)
    whole = BalancedBatchSampler(GlobalBatchSampler(7, 4, seed=1), weights)
    parts = [BalancedBatchSampler(GlobalBatchSampler(7, 4, seed=1, rank=r, world=world), weights) for r in range(world)]
    for s in [whole, *parts]:
        s.set_epoch(5)
    merged = [sum((list(b) for b in batches), []) for batches in zip(*parts)]
    assert merged == [list(b) for b in whole]


def test_trainer_hook_reads_the_segments(tiny_data):
    clips = tiny_data.clips("train")
    ds = SegmentDataset(clips, 2400, len(tiny_data.classes), 3, 10)
    counts = segment_class_frames(ds)
    assert counts.shape == (len(ds), 3) and counts.sum() == clip_class_frames(clips, 3).sum()
    base = GlobalBatchSampler(len(ds), 2, seed=0)
    said = []
    assert balanced_sampler(base, ds, ClassBalanceConfig()) is base
    assert isinstance(balanced_sampler(base, ds, ClassBalanceConfig(sampler=True), said.append), BalancedBatchSampler)
    assert said and said[0].startswith("class balance:")


def test_greedy_subset_evens_out_the_classes():
    counts = np.array([[50, 0, 0], [40, 5, 0], [45, 0, 0], [0, 30, 0], [5, 0, 20], [60, 0, 0]])
    picked = greedy_balanced_subset(counts, 3)
    assert picked == [3, 4, 5]  # the common class once, then the clips that bring the other two
    totals = counts[picked].sum(axis=0)
    assert totals.min() > 0


def test_subset_keeps_the_fraction_and_says_so(tiny_data):
    clips = tiny_data.clips("train")
    said = []
    assert balanced_subset(clips, 3, ClassBalanceConfig()) is clips
    kept = balanced_subset(clips, 3, ClassBalanceConfig(subset=0.5), said.append)
    assert len(kept) == 2 and all(c in clips for c in kept) and "2 of 4" in said[0]


def test_the_trainer_applies_class_balance(tiny_data, tmp_path):
    """`training.class_balance` reaches the trainer's clips and sampler (an ablation row of a
    trainer that ignored it would equal the base)."""
    from at2seld_edge.training.trainer import Reporter, Trainer, TrainOptions
    from tests.training.conftest import tiny_config

    cfg = tiny_config(class_balance={"sampler": True, "subset": 0.5})
    said: list[str] = []
    trainer = Trainer(cfg, tiny_data, tmp_path / "run", TrainOptions(epochs=1), Reporter(message=said.append))
    assert len(trainer.train_clips) == 2 == len(tiny_data.clips("train")) // 2
    assert isinstance(trainer.sampler, BalancedBatchSampler)
    assert sum(m.startswith("class balance:") for m in said) == 2
    plain = Trainer(tiny_config(), tiny_data, tmp_path / "plain", TrainOptions(epochs=1), Reporter())
    assert len(plain.train_clips) == 4 and isinstance(plain.sampler, GlobalBatchSampler)

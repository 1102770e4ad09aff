"""Latency statistics over warm runs, shared by the profiler and the compression report."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


@dataclass
class LatencyStats:
    median_ms: float
    p95_ms: float
    runs: int
    p99_ms: float = float("nan")
    mean_ms: float = float("nan")

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> "LatencyStats":
        a = np.asarray(samples_ms, dtype=np.float64)
        return cls(float(np.median(a)), float(np.percentile(a, 95)), len(a), float(np.percentile(a, 99)),
                   float(a.mean()))


def time_runs(fn: Callable[[], object], warmup: int, runs: int) -> list[float]:
    """Wall time in ms of each of `runs` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return samples

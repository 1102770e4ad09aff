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


@dataclass
class Spread:
    """A figure measured over several rounds: its median and its range over the rounds."""

    median: float
    low: float
    high: float
    rounds: int

    @classmethod
    def of(cls, values: Sequence[float]) -> "Spread":
        a = np.asarray(values, dtype=np.float64)
        return cls(float(np.median(a)), float(a.min()), float(a.max()), len(a))

    def text(self, digits: int = 2, unit: str = "") -> str:
        """`1.02x (0.97-1.05)`: the median, then the range over the rounds."""
        f = f"{{:.{digits}f}}"
        return f"{f.format(self.median)}{unit} ({f.format(self.low)}-{f.format(self.high)})"


def time_interleaved(fns: dict[str, Callable[[], object]], rounds: int, runs: int,
                     warmup: int = 3) -> dict[str, list[list[float]]]:
    """Wall times in ms of several callables measured in turn, so that a change of load on the
    machine (another job, a clock change) reaches them all alike: each round, every callable runs
    once, then the next, `runs` times over, starting from a different one each round.
    Returns name -> per-round lists of samples."""
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    samples: dict[str, list[list[float]]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        this_round: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(runs):
            for name in order:
                t0 = time.perf_counter()
                fns[name]()
                this_round[name].append((time.perf_counter() - t0) * 1e3)
        for name in names:
            samples[name].append(this_round[name])
    return samples

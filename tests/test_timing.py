"""Latency over interleaved rounds: the callables take turns, each round starts with another, and
the spread over rounds is reported (no time is asserted: the machine is shared)."""

from __future__ import annotations

import pytest

from at2seld_edge.timing import Spread, time_interleaved


def test_callables_take_turns_and_each_round_starts_with_another():
    calls: list[str] = []
    fns = {name: (lambda n=name: calls.append(n)) for name in ("a", "b", "c")}
    samples = time_interleaved(fns, rounds=3, runs=2, warmup=1)
    assert calls[:3] == ["a", "b", "c"]  # warm-up, once each
    assert calls[3:] == ["a", "b", "c"] * 2 + ["b", "c", "a"] * 2 + ["c", "a", "b"] * 2  # one call each in turn
    assert {k: [len(r) for r in v] for k, v in samples.items()} == {k: [2, 2, 2] for k in "abc"}
    assert all(t >= 0 for v in samples.values() for r in v for t in r)


def test_a_spread_is_the_median_and_the_range_over_rounds():
    s = Spread.of([1.2, 0.9, 1.05, 1.0, 1.1])
    assert (s.median, s.low, s.high, s.rounds) == (pytest.approx(1.05), 0.9, 1.2, 5)
    assert s.text(unit="x") == "1.05x (0.90-1.20)"

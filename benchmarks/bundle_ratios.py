"""Deployment bundles side by side on this machine, measured in one run: PyTorch eager (the
source checkpoint) vs each bundle's runtime, one inference over the bundle's window.

Candidates are timed in interleaved rounds, so drift of a shared machine (clock, other load)
spreads over all of them instead of favouring whichever ran first.

    python benchmarks/bundle_ratios.py BUNDLE [BUNDLE ...] [--backend onnxruntime] [--rounds 10] [--runs 20]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from at2seld_edge.checkpoint import load_checkpoint, model_from_checkpoint
from at2seld_edge.deploy.runtime import SeldRuntime
from at2seld_edge.timing import LatencyStats, time_runs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("bundles", type=Path, nargs="+")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=20, help="timed runs per candidate per round")
    a = ap.parse_args()
    runtimes = [SeldRuntime(b, a.backend) for b in a.bundles]
    first = runtimes[0].manifest
    samples = first.window.samples
    if any(rt.manifest.window.samples != samples for rt in runtimes):
        raise SystemExit("the bundles have different windows; compare bundles built with the same --seconds")
    audio = (0.1 * np.random.default_rng(0).standard_normal((1, 4, samples))).astype(np.float32)
    candidates = {}
    source = Path(first.source_checkpoint)
    if source.is_file():
        model = model_from_checkpoint(load_checkpoint(source)).eval()
        x = torch.from_numpy(audio)

        def eager():
            with torch.no_grad():
                model(x)

        candidates["PyTorch eager FP32 (checkpoint)"] = eager
    for b, rt in zip(a.bundles, runtimes):
        candidates[f"{b.name} ({rt.manifest.precision}, {rt.session.name})"] = lambda rt=rt: rt.infer(audio)
    times: dict[str, list[float]] = {k: [] for k in candidates}
    for fn in candidates.values():
        time_runs(fn, 5, 0)
    for _ in range(a.rounds):
        for name, fn in candidates.items():
            times[name] += time_runs(fn, 0, a.runs)
    stats = {k: LatencyStats.of(v) for k, v in times.items()}
    base_name = next(iter(stats))
    base = stats[base_name].median_ms
    print(f"{samples / first.sample_rate:g} s window, torch threads {torch.get_num_threads()}, "
          f"{a.rounds} rounds x {a.runs} runs, ratios to {base_name}")
    width = max(len(k) for k in stats) + 2
    print(f"{'candidate':{width}s} {'median ms':>10s} {'p95 ms':>8s} {'speed-up':>9s}")
    for name, s in stats.items():
        print(f"{name:{width}s} {s.median_ms:10.2f} {s.p95_ms:8.2f} {base / s.median_ms:8.2f}x")


if __name__ == "__main__":
    main()

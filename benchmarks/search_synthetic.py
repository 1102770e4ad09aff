"""The search's measured claims on the synthetic set, with the commands the README quotes:

1. a 3-stage `edge search` for jetson-orin under a budget of at2seld-nano's own latency estimate
   (so a searched config must be as fast or faster), timed;
2. its best.yaml trained with the nano recipe (the same epochs as the embedded nano's training);
3. the test split of best.yaml, the embedded at2seld-nano and (optionally) dcase-baseline, with
   each config's latency estimate, in one table.

    python benchmarks/search_synthetic.py --data runs/synth/dataset.yaml [--work DIR] [--trials 6]
        [--epochs 3] [--train-epochs 72] [--baseline-run RUN]

The steps resume: rerunning continues the search study and the trainings where they stopped.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

EMBEDDED = Path(__file__).resolve().parent.parent / "at2seld_edge" / "weights" / "at2seld-nano-synth.pt"


def edge(*args: str) -> float:
    print("$ edge " + " ".join(args), flush=True)
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "at2seld_edge.cli", *args], check=True)
    return time.monotonic() - t0


def nano_budget(path: Path) -> float:
    """A budget file whose latency limit is at2seld-nano's estimate on jetson-orin (FP16, 1 s)."""
    latency = estimate_ms("at2seld-nano")
    path.write_text(f"name: nano-latency\ndescription: at most at2seld-nano's latency estimate on jetson-orin\n"
                    f"hop_s: 0.1\nwindow_s: 1.0\ntotal:\n  latency_ms: {latency + 5e-4:.4f}\n  peak_memory_mb: 1024\n")
    return latency


def test_metrics(checkpoint: Path, data: Path, out: Path) -> dict:
    if not (out / "metrics.json").exists():
        edge("evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--split", "test", "--out", str(out))
    return json.loads((out / "metrics.json").read_text())


@functools.cache
def estimate_ms(config: str) -> float:
    """The config's latency estimate on jetson-orin at FP16 over a 1 s window (traced once)."""
    from at2seld_edge.config import load_config
    from at2seld_edge.deploy.search_cost import search_device

    return search_device("jetson-orin", "realtime-100ms", "fp16").cost(load_config(config)).latency_ms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("runs/search-benchmark"))
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=3, help="training epochs per trial")
    ap.add_argument("--train-epochs", type=int, default=72, help="best.yaml's training (the embedded nano's epochs)")
    ap.add_argument("--baseline-run", type=Path, help="a dcase-baseline run folder (edge train) to add to the table")
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    a.work.mkdir(parents=True, exist_ok=True)
    limit = nano_budget(a.work / "nano-latency.yaml")
    search = a.work / "search"
    t_search = edge("search", "--data", str(a.data), "--target", "jetson-orin", "--budget", str(a.work / "nano-latency.yaml"),
                    "--out", str(search), "--trials", str(a.trials), "--epochs", str(a.epochs), "--skip-infeasible",
                    "--device", "cpu")
    t_train = edge("train", "--config", str(search / "best.yaml"), "--data", str(a.data), "--out", str(a.work / "best"),
                   "--epochs", str(a.train_epochs), "--device", "cpu")
    rows = [("search best.yaml", str(search / "best.yaml"), a.work / "best" / "best.pt"),
            ("at2seld-nano (embedded)", "at2seld-nano", EMBEDDED)]
    if a.baseline_run:
        rows.append(("dcase-baseline", "dcase-baseline", a.baseline_run / "best.pt"))
    print(f"\nsearch {t_search / 60:.1f} min; best.yaml training {t_train / 60:.1f} min; budget {limit:.3f} ms")
    print(f"{'model':26s} {'ER':>6s} {'F':>6s} {'LE':>6s} {'LR':>6s} {'SELD':>6s} {'jetson-orin ms':>15s}")
    for name, config, ckpt in rows:
        m = test_metrics(ckpt, a.data, a.work / f"test-{name.split()[0]}")
        print(f"{name:26s} {m['ER']:6.3f} {m['F']:6.3f} {m['LE']:6.1f} {m['LR']:6.3f} {m['SELD']:6.3f} "
              f"{estimate_ms(config):15.3f}")


if __name__ == "__main__":
    main()

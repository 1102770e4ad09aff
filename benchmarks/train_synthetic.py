"""Train at2seld-nano on the synthetic set within 30 minutes on this machine and score the test split.

Runs the commands of the README's "Train on synthetic data" section and prints one table of the
test-split figures against the targets (F20 >= 0.6, LE_CD <= 20 deg, SELD <= 0.35), with the
wall time of each step measured in this run.

    python benchmarks/train_synthetic.py [--work DIR] [--clips 200] [--minutes 28]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def run(*args: str) -> float:
    print("$ edge " + " ".join(args), flush=True)
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "at2seld_edge.cli", *args], check=True)
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("runs/synthetic-benchmark"))
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--minutes", type=float, default=28.0, help="training wall-time cap (calibration runs inside it)")
    a = ap.parse_args()
    data, run_dir, eval_dir = a.work / "data", a.work / "run", a.work / "eval"
    times = {
        "synth": run("data", "synth", "--out", str(data), "--clips", str(a.clips), "--seed", "0"),
        "train": run("train", "--config", "at2seld-nano", "--data", str(data / "dataset.yaml"), "--out", str(run_dir),
                     "--max-minutes", str(a.minutes)),
        "evaluate": run("evaluate", "--checkpoint", str(run_dir / "best.pt"), "--data", str(data / "dataset.yaml"),
                        "--split", "test", "--out", str(eval_dir), "--oracle-activity"),
    }
    m = json.loads((eval_dir / "metrics.json").read_text())
    rows = [("F20", m["F"], ">= 0.60", m["F"] >= 0.6), ("LE_CD (deg)", m["LE"], "<= 20", m["LE"] <= 20),
            ("SELD score", m["SELD"], "<= 0.35", m["SELD"] <= 0.35), ("ER20", m["ER"], "", None),
            ("LR_CD", m["LR"], "", None), ("DOA error, oracle activity (deg)", m["oracle_activity_DOA_error"], "", None)]
    print(f"\nat2seld-nano on {a.clips} synthetic clips, test split ({m['clips']} clips)")
    print(f"{'metric':34s} {'value':>8s}  {'target':>8s}  met")
    for name, value, target, ok in rows:
        print(f"{name:34s} {value:8.3f}  {target:>8s}  {'' if ok is None else ('yes' if ok else 'NO')}")
    print("\nwall time: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in times.items()))


if __name__ == "__main__":
    main()

"""Training throughput: optimizer steps/s and segments/s of the presets' models, and how fast the
segment loader reads wavs from disk per worker process.

Every figure comes from this run, on this machine: the training step is `Trainer.train_step`
itself (forward, loss, backward, clipping, AdamW step) on batches read beforehand, so the loader
is not in it; the loader is timed alone over a whole epoch after a warm-up epoch (warm page
cache, workers already started). With a CUDA device, the presets also run there in FP32 and in
bf16 autocast; without one, that table says so.

    python benchmarks/train_throughput.py [--presets at2seld-nano,at2seld-cnn10] [--steps 4]
        [--workers 0,1,2] [--clips 12] [--clip-seconds 60] [--threads N] [--work DIR]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import torch

from at2seld_edge.config import load_config
from at2seld_edge.data.spec import Dataset, load_dataset
from at2seld_edge.data.synth import synthesize
from at2seld_edge.training.trainer import Reporter, Trainer, TrainOptions


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_rate(preset: str, data: Dataset, work: Path, device: str, amp: str, steps: int, warmup: int
              ) -> tuple[str, str, str, float, float]:
    """(preset, amp, batch, steps/s, segments/s) of the training step."""
    cfg = load_config(preset)
    trainer = Trainer(cfg, data, work / f"{preset}-{device}-{amp}", TrainOptions(device=device, amp=amp), Reporter())
    trainer.model.train()
    batches = list(itertools.islice(itertools.cycle(list(trainer.loader)), warmup + steps))
    for b in batches[:warmup]:
        trainer.train_step(b, 0)
    dev = trainer.ctx.device
    sync(dev)
    t0 = time.perf_counter()
    for b in batches[warmup:]:
        trainer.train_step(b, 0)
    sync(dev)
    dt = time.perf_counter() - t0
    tc = trainer.tc
    return preset, amp, f"{tc.batch_size} x {tc.segment_seconds:g} s", steps / dt, steps * tc.batch_size / dt


def loader_rate(preset: str, data: Dataset, work: Path, workers: int) -> tuple[float, int]:
    """(segments/s, segments) of one epoch of the training loader, after a warm-up epoch."""
    trainer = Trainer(load_config(preset), data, work / f"loader-{workers}", TrainOptions(device="cpu", workers=workers),
                      Reporter())
    for epoch in (0, 1):
        trainer.sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        n = sum(len(b["clip"]) for b in trainer.loader)
        dt = time.perf_counter() - t0
    return n / dt, n


def step_table(title: str, rows: list[tuple[str, str, str, float, float]]) -> None:
    print(f"\n{title}")
    print(f"{'preset':16s} {'amp':5s} {'batch':>10s} {'steps/s':>9s} {'segments/s':>11s} {'vs FP32':>8s}")
    fp32 = {p: s for p, a, _, s, _ in rows if a == "off"}
    for preset, amp, batch, steps, segs in rows:
        ratio = f"{steps / fp32[preset]:.2f}x" if preset in fp32 else ""
        print(f"{preset:16s} {amp:5s} {batch:>10s} {steps:9.3f} {segs:11.2f} {ratio:>8s}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="at2seld-nano,at2seld-cnn10")
    ap.add_argument("--cpu-amp", default="off,bf16", help="autocast modes timed on the CPU")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--workers", default="0,1,2", help="loader worker counts to time")
    ap.add_argument("--clips", type=int, default=12, help="synthetic clips (two thirds are the training split)")
    ap.add_argument("--clip-seconds", type=float, default=60.0)
    ap.add_argument("--work", type=Path, default=None, help="folder for the synthetic wavs (default: a temporary one)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    work = a.work or Path(tempfile.mkdtemp(prefix="train-throughput-"))
    data = load_dataset(synthesize(work / "data", a.clips, seed=0, seconds=a.clip_seconds))
    presets = a.presets.split(",")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; data: {a.clips} synthetic clips of "
          f"{a.clip_seconds:g} s in {work / 'data'}")

    rows = [step_rate(p, data, work, "cpu", amp, a.steps, a.warmup) for p in presets for amp in a.cpu_amp.split(",")]
    step_table("training step on the CPU (each preset's training.batch_size x segment_seconds)", rows)

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        gpu = [step_rate(p, data, work, "cuda", amp, a.steps * 5, a.warmup + 2) for p in presets for amp in ("off", "bf16")]
        step_table(f"training step on CUDA ({name})", gpu)
    else:
        print(f"\nCUDA: no CUDA device here (torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); "
              "the GPU FP32-vs-bf16 table needs one")

    print(f"\nsegment loader ({presets[0]}'s segments, FOA rotations on), warm page cache")
    print(f"{'workers':>7s} {'segments/s':>11s} {'per process':>12s} {'vs first':>9s}")
    base = None
    for w in (int(x) for x in a.workers.split(",")):
        rate, n = loader_rate(presets[0], data, work, w)
        base = base or rate
        print(f"{w:7d} {rate:11.1f} {rate / max(w, 1):12.1f} {rate / base:8.2f}x")
    print(f"({n} segments an epoch)")


if __name__ == "__main__":
    main()

"""The C++ runtime (deploy/cpp) against a bare ONNX Runtime session and the Python runtime, on one
bundle and this CPU, measured in one run.

Each measurement runs in a process of its own, so its cold start (open + first inference) and
its resident memory are its own: the C++ runtime (bundle checks included in its open), a bare
ONNX Runtime C++ session on the bundle's model, the Python runtime (SeldRuntime, import
included) and a bare onnxruntime Python session. All time `window.samples` of the same kind of
audio, batch 1, with ONNX Runtime's default threads. The C++ pair runs twice, interleaved, so
that a change of load on the machine shows as a difference between rounds.

    python benchmarks/cpp_runtime.py --bundle BUNDLE [--runs 300] [--cpp-build deploy/cpp/build/release]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb() -> tuple[float, float]:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def probe_python(mode: str, bundle: Path, runs: int) -> dict:
    """One Python measurement (run in a child process by main)."""
    t0 = time.perf_counter()
    import numpy as np

    from at2seld_edge.timing import LatencyStats, time_runs

    if mode == "python-runtime":
        from at2seld_edge.deploy.runtime import SeldRuntime

        imported = time.perf_counter()
        rt = SeldRuntime(bundle, "onnxruntime", "cpu")
        samples = rt.manifest.window.samples
        audio = (0.1 * np.random.default_rng(0).standard_normal((1, 4, samples))).astype(np.float32)
        opened = time.perf_counter()
        infer = lambda: rt.infer(audio)  # noqa: E731
    else:
        import onnxruntime as ort

        imported = time.perf_counter()
        manifest = json.loads((bundle / "manifest.json").read_text())
        so = ort.SessionOptions()
        so.log_severity_level = 3
        session = ort.InferenceSession(str(bundle / manifest["model"]), so, providers=["CPUExecutionProvider"])
        samples = manifest["window"]["samples"]
        audio = (0.1 * np.random.default_rng(0).standard_normal((1, 4, samples))).astype(np.float32)
        opened = time.perf_counter()
        infer = lambda: session.run(["sed_logits", "doa"], {"audio": audio})  # noqa: E731
    infer()
    first = time.perf_counter()
    stats = LatencyStats.of(time_runs(infer, 10, runs))
    rss, peak = _rss_mb()
    return {"mode": mode, "import_ms": (imported - t0) * 1e3, "open_ms": (opened - imported) * 1e3,
            "first_inference_ms": (first - opened) * 1e3, "cold_start_ms": (first - t0) * 1e3,
            "median_ms": stats.median_ms, "p95_ms": stats.p95_ms, "runs": stats.runs, "rss_mb": rss, "peak_rss_mb": peak}


def _child(cmd: list[str]) -> dict:
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--cpp-build", type=Path, default=ROOT / "deploy/cpp/build/release")
    ap.add_argument("--probe", choices=["python-runtime", "python-onnxruntime"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.probe:
        print(json.dumps(probe_python(a.probe, a.bundle, a.runs)))
        return
    probe = a.cpp_build / "at2seld-bench-probe"
    if not probe.exists():
        sys.exit(f"{probe}: not built; run `make cpp` first")
    rounds = {"C++ runtime": [], "C++ bare ONNX Runtime": []}
    for _ in range(2):
        rounds["C++ bare ONNX Runtime"].append(_child([str(probe), "onnxruntime", str(a.bundle), str(a.runs)]))
        rounds["C++ runtime"].append(_child([str(probe), "runtime", str(a.bundle), str(a.runs)]))
    py = {name: _child([sys.executable, __file__, "--bundle", str(a.bundle), "--runs", str(a.runs), "--probe", mode])
          for name, mode in (("Python runtime", "python-runtime"), ("Python bare onnxruntime", "python-onnxruntime"))}
    results = {name: _mean(r) for name, r in rounds.items()} | py
    manifest = json.loads((a.bundle / "manifest.json").read_text())
    print(f"{a.bundle} ({manifest['config_name']}, {manifest['precision']}), window {manifest['window']['samples']} "
          f"samples, {a.runs} timed runs each, ONNX Runtime CPU, default threads")
    print(f"{'':26s} {'cold start ms':>13s} {'median ms':>10s} {'p95 ms':>8s} {'RSS MB':>8s}")
    for name, r in results.items():
        print(f"{name:26s} {r['cold_start_ms']:13.1f} {r['median_ms']:10.3f} {r['p95_ms']:8.3f} {r['rss_mb']:8.0f}")
    cpp, bare, pyrt = results["C++ runtime"], results["C++ bare ONNX Runtime"], results["Python runtime"]
    per_round = [r["median_ms"] / b["median_ms"] - 1 for r, b in zip(rounds["C++ runtime"], rounds["C++ bare ONNX Runtime"])]
    print(f"C++ runtime overhead per window vs bare ONNX Runtime: {100 * (cpp['median_ms'] / bare['median_ms'] - 1):+.1f}% "
          f"(rounds: {', '.join(f'{100 * x:+.1f}%' for x in per_round)}; target <= 5%)")
    print(f"Python runtime / C++ runtime per window: {pyrt['median_ms'] / cpp['median_ms']:.2f}x")
    print(f"cold start: C++ {cpp['cold_start_ms']:.0f} ms (open {cpp['open_ms']:.0f} + first inference "
          f"{cpp['first_inference_ms']:.0f}; target <= 300 ms) vs Python {pyrt['cold_start_ms']:.0f} ms "
          f"(import {pyrt['import_ms']:.0f} + open {pyrt['open_ms']:.0f} + first {pyrt['first_inference_ms']:.0f})")
    print(f"RSS: C++ {cpp['rss_mb']:.0f} MB vs Python {pyrt['rss_mb']:.0f} MB ({pyrt['rss_mb'] / cpp['rss_mb']:.1f}x)")


def _mean(runs: list[dict]) -> dict:
    return {k: sum(r[k] for r in runs) / len(runs) for k in runs[0] if isinstance(runs[0][k], (int, float))}


if __name__ == "__main__":
    main()

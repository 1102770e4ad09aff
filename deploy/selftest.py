"""`edge selftest`: the on-device acceptance run users do on a Jetson, in one command.

From the embedded default checkpoint it builds an FP16 and an INT8 bundle for the target, checks
both against their golden outputs, benches them, compares each measurement with the latency
estimate for the device it ran on, fits that device's constants from the benches, and writes one
shareable report (Markdown, JSON, plot). Where TensorRT (or a GPU) is missing it runs every step
it can with ONNX Runtime on the CPU, lists each skipped step with its reason, and still succeeds;
a step that ran and failed (a golden mismatch) fails the run.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal

from pydantic import Field

from at2seld_edge.plots import pyplot, save_figure
from at2seld_edge.checkpoint import provenance
from at2seld_edge.errors import EdgeError, ErrorKind
from at2seld_edge.io import atomic_write_text, check_output_dir, markdown_table
from at2seld_edge.compress.quantize import MIN_CALIBRATION_CLIPS
from at2seld_edge.options import StageOptions
from at2seld_edge.deploy.devices import load_device

Say = Callable[[str], None]
PRECISIONS = ("fp16", "int8")


class SelftestOptions(StageOptions):
    target: str = "jetson-orin"
    out: Path | None = None  # None: reports/selftest-TARGET
    iterations: int = Field(50, ge=2)
    warmup: int = Field(5, ge=0)
    calib_clips: int = Field(MIN_CALIBRATION_CLIPS, ge=MIN_CALIBRATION_CLIPS)  # INT8 calibration: few, as the build allows
    install: bool = False  # write the fitted device file to the user folder (edge devices calibrate does too)


@dataclass
class Step:
    name: str
    status: Literal["ran", "skipped", "failed"]
    detail: str
    seconds: float = 0.0


@dataclass
class Comparison:
    """One bench against the latency model. Two measured figures, of different runs: edge bench's
    median (the latency it reports) and the end-to-end time of the runs the fit profiles (ONNX
    Runtime with its profiler on, so slower than the bench; a TensorRT engine's equals the
    bench's). The estimate is compared with, and fitted to, the profiled one."""

    precision: str
    ran_on: str  # backend and where
    device: str  # the device spec of the machine that ran it (x86-cpu for ONNX Runtime on a CPU)
    bench_ms: float  # edge bench: median over its timed runs
    profiled_ms: float  # the fit's end-to-end measurement: median over its profiled runs
    estimate_ms: float  # for `device`, with its constants before the fit
    fitted_ms: float | None  # after it
    target_estimate_ms: float  # the estimate on the selftest's target (not measured unless device is the target)

    @property
    def ratio(self) -> float:
        return self.estimate_ms / self.profiled_ms


@dataclass
class SelftestReport:
    target: str
    out: Path
    steps: list[Step]  # in the order they ran, skipped ones with their reason
    comparisons: list[Comparison]  # one per bench: measured vs estimate
    fit: dict | None = None  # the fitted constants of the device the benches measured
    written: tuple[Path, ...] = ()

    @property
    def failed(self) -> list[Step]:
        return [s for s in self.steps if s.status == "failed"]

    @property
    def measured_on(self) -> str:
        """The device(s) the benches ran on, which need not be the target."""
        return ", ".join(sorted({c.device for c in self.comparisons})) or "nothing"

    def title(self) -> str:
        """Which device the figures are for and which one they were measured on."""
        if self.measured_on in ("nothing", self.target):
            return f"selftest for {self.target}" + ("" if self.comparisons else " (nothing benched)")
        return f"selftest for {self.target}, measured on {self.measured_on} ({self.target}: estimates only)"


def tensorrt_here() -> str | None:
    """None where TensorRT can build and run engines here, else why not."""
    from at2seld_edge.deploy.engine import gpu_info, tensorrt_available

    if not tensorrt_available():
        return "TensorRT is not importable here (JetPack or `pip install tensorrt` provide it)"
    if gpu_info() is None:
        return "no CUDA GPU is visible"
    return None


def run_selftest(opts: SelftestOptions, say: Say = print) -> SelftestReport:
    target = load_device(opts.target)
    out = opts.out or Path("reports") / f"selftest-{target.name}"
    check_output_dir(out, is_ours=lambda p: (p / "selftest.json").is_file(), what="selftest report folder")
    report = SelftestReport(target.name, out, [], [])
    no_trt = tensorrt_here()
    benches = []
    for precision in PRECISIONS:
        bundle = _step(report, f"build {precision}", say, lambda p=precision: _build(opts, target.name, p, out))
        if bundle is None:
            continue
        runtime = _step(report, f"verify {precision}", say, lambda b=bundle: _verify(b))
        if runtime is None:
            continue
        bench_path = _step(report, f"bench {precision}", say, lambda r=runtime, p=precision: _bench(r, opts, out, p))
        if bench_path is not None:
            benches.append(bench_path)
    if no_trt is not None:
        for what in ("TensorRT engine build (FP16, INT8)", "verify on TensorRT", "bench with TensorRT's layer profiler",
                     f"fit of {target.name}'s constants (no measurement on the target)"):
            report.steps.append(Step(what, "skipped", no_trt))
    if benches:
        _step(report, "fit the measured device's constants", say, lambda: _fit(report, benches, opts, target))
    report.written = tuple(write_report(report))
    return report


def _step(report: SelftestReport, name: str, say: Say, fn):
    """Run one step, timing it; a user-facing failure is recorded, not raised."""
    say(f"{name} ...")
    t0 = time.perf_counter()
    try:
        value, detail = fn()
    except EdgeError as e:
        report.steps.append(Step(name, "failed", str(e), time.perf_counter() - t0))
        return None
    report.steps.append(Step(name, "ran", detail, time.perf_counter() - t0))
    return value


def _build(opts: SelftestOptions, target: str, precision: str, out: Path):
    from at2seld_edge.deploy.build import BuildOptions, build

    path = out / "bundles" / precision
    result = build(BuildOptions.from_flags(target=target, precision=precision, out=path, calib_clips=opts.calib_clips),
                   say=lambda m: None)
    m = result.manifest
    detail = (f"{path}: lint {'clean' if not result.lint.errors else 'FAILED'}, golden check "
              f"{'PASS' if result.verify.passed else 'FAIL'}, engine {m.engine.file if m.engine else 'none'}")
    return path, detail


def _verify(bundle: Path):
    from at2seld_edge.deploy.runtime import SeldRuntime
    from at2seld_edge.deploy.verify import verify

    runtime = SeldRuntime(bundle, "auto", "auto")
    result = verify(runtime)
    if not result.passed:
        raise EdgeError(f"{bundle}: {result.backend} does not reproduce the golden outputs: "
                        + "; ".join(result.failures[:3]), ErrorKind.CHECK)
    return runtime, f"{result.backend}: {len(result.rows)} golden inputs within the {result.precision} tolerances"


def _bench(runtime, opts: SelftestOptions, out: Path, precision: str):
    from at2seld_edge.deploy.bench import bench

    report = bench(runtime, opts.iterations, opts.warmup)
    path = out / f"bench-{precision}.json"
    atomic_write_text(path, json.dumps(report.to_dict(), indent=2) + "\n")
    if report.fit is None:
        return None, f"{report.backend}: {report.window.median_ms:.2f} ms median; " + "; ".join(report.notes)
    return path, f"{report.backend}: {report.window.median_ms:.2f} ms median over {report.window.runs} runs"


def _fit(report: SelftestReport, benches: list[Path], opts: SelftestOptions, target):
    """Fit the constants of the device the benches measured; compare before and after, and with
    the estimate on the target."""
    from at2seld_edge.deploy.bundle import read_manifest
    from at2seld_edge.deploy.calibrate import calibrate, read_fit_record, write_device
    from at2seld_edge.deploy.latency_model import estimate_onnx

    cal = calibrate(benches, write=opts.install)
    write_device(cal.device, report.out / f"fitted-{cal.device.name}.yaml", cal.result, benches)
    rows = iter(cal.result.rows)  # one per measurement, bench by bench, in order
    for path in benches:
        record = read_fit_record(path)
        e2e = [row for m, row in zip(record.measurements, rows) if m.fixed][0]  # measurements first: zip stops clean
        bundle = report.out / "bundles" / record.precision
        manifest = read_manifest(bundle / "manifest.json")
        # at the window that was benched: a dynamic time axis left alone would be estimated at 1 sample
        on_target = estimate_onnx(bundle / manifest.model, target, record.precision, samples=manifest.window.samples)
        data = json.loads(path.read_text())
        report.comparisons.append(Comparison(record.precision, data["backend"], record.device,
                                             data["window"]["median_ms"], e2e[1], e2e[2], e2e[3], on_target.total_ms))
    report.fit = {"device": cal.device.name, "constants": cal.result.constants.model_dump(mode="json"),
                  "prior": cal.result.prior.model_dump(mode="json"), "determined": cal.result.determined,
                  "log_rms_before": cal.result.log_rms(False), "log_rms_after": cal.result.log_rms(),
                  "installed": str(cal.path) if opts.install else None}
    where = f"installed as {cal.path}" if opts.install else "not installed (--install, or edge devices calibrate)"
    return None, (f"{cal.device.name}: per-layer {cal.result.constants.per_layer_us:.1f} us, per-inference "
                  f"{cal.result.constants.per_inference_us:.0f} us; log-RMS error {cal.result.log_rms(False):.2f} -> "
                  f"{cal.result.log_rms():.2f}; {where}")


# ----------------------------------------------------------------------------- the report


def write_report(report: SelftestReport) -> list[Path]:
    out = report.out
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "selftest.md", out / "selftest.json", out / "selftest.png"]
    atomic_write_text(paths[0], _markdown(report))
    data = {**provenance(), "artifact": "selftest_report", "target": report.target, "measured_on": report.measured_on,
            "machine": {"node": platform.node(), "machine": platform.machine(), "system": platform.platform()},
            "steps": [asdict(s) for s in report.steps],
            "comparisons": [asdict(c) | {"ratio": c.ratio} for c in report.comparisons], "fit": report.fit,
            "passed": not report.failed}
    atomic_write_text(paths[1], json.dumps(data, indent=2, default=str) + "\n")
    _plot(report, paths[2])
    return paths


def _markdown(report: SelftestReport) -> str:
    steps = [[s.name, s.status.upper(), f"{s.seconds:.1f}", s.detail.replace("|", "/")] for s in report.steps]
    comps = [[c.precision, c.ran_on, c.device, f"{c.bench_ms:.2f}", f"{c.profiled_ms:.2f}", f"{c.estimate_ms:.2f}",
              f"{c.ratio:.2f}", "-" if c.fitted_ms is None else f"{c.fitted_ms:.2f}", f"{c.target_estimate_ms:.2f}"]
             for c in report.comparisons]
    parts = [f"# {report.title()[0].upper()}{report.title()[1:]}",
             f"Machine {platform.node()} ({platform.machine()}); result: **{'FAIL' if report.failed else 'PASS'}** "
             f"({sum(s.status == 'ran' for s in report.steps)} steps ran, "
             f"{sum(s.status == 'skipped' for s in report.steps)} skipped, {len(report.failed)} failed).",
             "## Steps", markdown_table(["step", "status", "s", "detail"], steps)]
    if comps:
        parts += [f"## Measured on {report.measured_on} vs estimate",
                  "Two measurements of different runs: *bench median* is edge bench's latency (median over its timed "
                  "runs); *profiled* is the end-to-end median of the runs the fit profiles (ONNX Runtime's profiler "
                  "on, so slower; a TensorRT engine's is the bench's), which the estimate is compared with and "
                  "fitted to. The estimate is for the device each bench ran on (its layers, each max(roofline, "
                  "per-layer floor), plus a fixed cost), with the device file's constants and with those fitted "
                  f"from these benches; the last column is the estimate on {report.target}, not a measurement.",
                  markdown_table(["precision", "ran on", "device", "bench median ms", "profiled ms (fit)",
                                  "estimate ms", "estimate / profiled", "fitted estimate ms",
                                  f"estimate on {report.target} ms"], comps)]
    if report.fit:
        c = report.fit["constants"]
        parts += ["## Fitted constants", markdown_table(
            ["constant", "before", "fitted", "constrained by the data"],
            [[k, f"{report.fit['prior'][k]:.4g}", f"{c[k]:.4g}", "yes" if report.fit["determined"][k] else "no"]
             for k in report.fit["determined"]])]
    parts.append("![measured vs estimate](selftest.png)")
    return "\n\n".join(parts) + "\n"


def _plot(report: SelftestReport, path: Path) -> None:
    plt = pyplot()
    import numpy as np

    fig, ax = plt.subplots(figsize=(10, 3.2))
    labels = [f"{c.precision}\n{c.ran_on}" for c in report.comparisons]
    x = np.arange(len(labels))
    series = [("bench median", [c.bench_ms for c in report.comparisons]),
              ("profiled (fit)", [c.profiled_ms for c in report.comparisons]),
              ("estimate", [c.estimate_ms for c in report.comparisons]),
              ("fitted estimate", [c.fitted_ms or 0.0 for c in report.comparisons]),
              (f"estimate on {report.target}", [c.target_estimate_ms for c in report.comparisons])]
    width = 0.8 / len(series)
    for k, (name, values) in enumerate(series):
        ax.bar(x + (k - (len(series) - 1) / 2) * width, values, width=width, label=name)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("ms per 1 s window")
    ax.set_title(report.title(), fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never over them
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)

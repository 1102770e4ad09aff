"""`edge devices calibrate`: the latency model's constants fitted to what `edge bench` measured.

A bench JSON records, besides its timings, what a fit needs (`fit`): the layers of the bundle's
graph as its executor runs them (MACs, bytes, precision, steps) and measurements that each cover
a set of those layers: per-layer times from TensorRT's profiler where it runs, per-module times
from ONNX Runtime's profiling, and the end-to-end time, which also holds the fixed per-inference
cost. The fit minimises the squared log ratio of estimate to measurement over the four constants,
with a weak pull towards the current ones so that a constant the data cannot see (the compute
efficiency when no layer is compute-bound) stays where it was. The result is a user-level device
file that overrides the shipped one (`user_device_dir()`), and the next estimate says so.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from at2seld_edge.errors import EdgeError, ErrorKind
from at2seld_edge.io import atomic_write_text
from at2seld_edge.schema import format_validation_error
from at2seld_edge.yamlfile import read_json
from at2seld_edge.deploy.devices import (CPU_DEVICE, DeviceName, DeviceSpec, EstimateSpec, check_device_name,
                                         load_device, user_device_dir)
from at2seld_edge.deploy.latency_model import Layer, layer_bounds, layer_ms

PARAMS = ("per_layer_us", "per_inference_us", "compute_efficiency", "memory_efficiency")
_LOWER = np.log([1e-2, 1.0, 1e-3, 1e-3])
_UPPER = np.log([1e4, 1e6 + 1, 1.0, 8.0])


# ----------------------------------------------------------------------------- what a bench records


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class LayerRecord(_Strict):
    kind: str
    module: str
    name: str
    macs: float = Field(ge=0, le=1e15)  # a peta-MAC layer is no layer of a model one inference runs
    bytes: float = Field(ge=0, le=1e15)
    precision: Literal["fp32", "fp16", "int8"]
    steps: int = Field(1, ge=1, le=10_000_000)

    @classmethod
    def of(cls, layer: Layer) -> "LayerRecord":
        return cls(kind=layer.kind, module=layer.module, name=layer.name[:200], macs=layer.macs, bytes=layer.bytes,
                   precision=layer.precision, steps=layer.steps)

    def layer(self) -> Layer:
        return Layer(self.kind, self.module, [self.name], self.macs, self.bytes, self.precision, self.steps)


class Measurement(_Strict):
    label: str  # "end to end", a module, or an engine layer
    ms: float = Field(gt=0, le=1e7)  # under three hours
    layers: list[int]  # indices into FitRecord.layers
    fixed: bool  # an end-to-end time: it includes the per-inference cost


class FitRecord(_Strict):
    """The `fit` section of a bench JSON."""

    device: DeviceName  # the device spec whose peak and bandwidth the layers are measured against
    executor: Literal["tensorrt", "onnxruntime"]
    precision: Literal["fp32", "fp16", "int8"]
    power_mode: str | None = None
    method: str  # how the measurements were taken
    machine: str
    date: str
    layers: list[LayerRecord]
    measurements: list[Measurement] = Field(min_length=1)


def read_fit_record(path: Path) -> FitRecord:
    """The `fit` section of an `edge bench` JSON; one line naming the file on any mistake."""
    if not path.exists():
        raise EdgeError(f"{path}: bench JSON not found")
    data = read_json(path, "bench JSON")
    if not isinstance(data, dict) or "fit" not in data:
        raise EdgeError(f"{path}: no `fit` section (write it with `edge bench` of this version)")
    if data["fit"] is None:  # a bench that measured totals only (at2seld-bench, the C++ runtime's)
        data["fit"] = whole_window_record(path, data)
    try:
        record = FitRecord.model_validate(data["fit"])
    except ValidationError as e:
        raise EdgeError(f"{path}: fit.{format_validation_error(e, FitRecord)}") from None
    n = len(record.layers)
    bad = next((m for m in record.measurements if any(not 0 <= k < n for k in m.layers)), None)
    if bad is not None:
        raise EdgeError(f"{path}: measurement {bad.label!r} names a layer outside the {n} recorded")
    return record


def whole_window_record(path: Path, data: dict) -> dict:
    """A fit record from a bench JSON with end-to-end times only: the layers come from the
    bundle's graph (the latency model's fusion for the backend it ran on), the one measurement
    is the window's median, covering them all."""
    from at2seld_edge.deploy.bundle import load_bundle
    from at2seld_edge.deploy.latency_model import graph_layers, layer_precision, load_graph

    try:
        bundle = load_bundle(data["bundle"])
        median = float(data["window"]["median_ms"])
        backend = str(data["backend"])
    except (KeyError, TypeError, ValueError) as e:
        raise EdgeError(f"{path}: no `fit` section and no bundle or window time to derive one from ({e})") from None
    m = bundle.manifest
    executor = "tensorrt" if backend.startswith("tensorrt") else "onnxruntime"
    if executor == "onnxruntime" and "CPU" not in backend:
        raise EdgeError(f"{path}: measured on {backend}; the latency model has no executor for ONNX Runtime on CUDA")
    precision = layer_precision(m.precision)
    graph = load_graph(bundle.path(m.model), samples=m.window.samples)
    layers = graph_layers(graph, executor, precision)
    return FitRecord(device=m.target if executor == "tensorrt" else CPU_DEVICE, executor=executor, precision=precision,
                     method="end-to-end window time only (a bench without per-layer times)",
                     machine=str((data.get("machine") or {}).get("machine", "")), date=str(data.get("created_utc", ""))[:10],
                     layers=[LayerRecord.of(x) for x in layers],
                     measurements=module_measurements(layers, {}, median)).model_dump(mode="json")


# ----------------------------------------------------------------------------- the fit


@dataclass
class FitSample:
    """A measured time and the layers it covers, as (compute ms, memory ms) at the device's full
    peak and bandwidth, and steps."""

    label: str
    bounds: list[tuple[float, float, int]]
    measured_ms: float
    fixed: bool
    clock_ratio: float = 1.0  # the power mode's slow-down of the per-layer floor


def samples_of(record: FitRecord, device: DeviceSpec) -> list[FitSample]:
    return samples_from([r.layer() for r in record.layers], record.measurements, device, record.power_mode)


def samples_from(layers: list[Layer], measurements: list[Measurement], device: DeviceSpec,
                 power_mode: str | None = None) -> list[FitSample]:
    bounds = [(*layer_bounds(layer, device, power_mode), layer.steps) for layer in layers]
    ratio = device.clock_ratio(power_mode)
    return [FitSample(m.label, [bounds[k] for k in m.layers], m.ms, m.fixed, ratio) for m in measurements]


def module_measurements(layers: list[Layer], per_module_ms: dict[str, float], end_to_end_ms: float) -> list[Measurement]:
    """The end-to-end time over every layer, and each module's time over its layers."""
    out = [Measurement(label="end to end", ms=end_to_end_ms, layers=list(range(len(layers))), fixed=True)]
    for module, ms in per_module_ms.items():
        idx = [k for k, layer in enumerate(layers) if layer.module == module]
        if idx and ms > 0:
            out.append(Measurement(label=module, ms=ms, layers=idx, fixed=False))
    return out


def predict(sample: FitSample, c: EstimateSpec) -> float:
    total = sum(layer_ms(cm, mm, steps, c, sample.clock_ratio)[0] for cm, mm, steps in sample.bounds)
    return total + (c.per_inference_us * 1e-3 if sample.fixed else 0.0)


@dataclass
class FitResult:
    constants: EstimateSpec
    prior: EstimateSpec
    rows: list[tuple[str, float, float, float]]  # label, measured ms, estimate before, estimate after
    determined: dict[str, bool]  # did the data constrain this constant (else it stayed near the prior)

    def log_rms(self, after: bool = True) -> float:
        k = 3 if after else 2
        return float(np.sqrt(np.mean([np.log(r[k] / r[1]) ** 2 for r in self.rows])))

    def worst_ratio(self) -> float:
        return float(max(max(r[3] / r[1], r[1] / r[3]) for r in self.rows))

    def at_bounds(self) -> list[str]:
        """Constants the fit pushed to a bound: an efficiency at its ceiling says the device file's
        peak (or bandwidth) is below what was measured."""
        x = _x(self.constants)
        return [p for p, v, lo, hi in zip(PARAMS, x, _LOWER, _UPPER) if p != "per_inference_us" and
                (v <= lo + 1e-6 or v >= hi - 1e-6)]


def _spec(x: np.ndarray, prior: EstimateSpec, source: str) -> EstimateSpec:
    f, fixed, ec, em = np.exp(x)
    return prior.model_copy(update={"per_layer_us": float(f), "per_inference_us": float(max(fixed - 1.0, 0.0)),
                                    "compute_efficiency": float(ec), "memory_efficiency": float(em),
                                    "source": source})


def _x(c: EstimateSpec) -> np.ndarray:
    x = np.log([c.per_layer_us, c.per_inference_us + 1.0, c.compute_efficiency, c.memory_efficiency])
    return np.clip(x, _LOWER + 1e-9, _UPPER - 1e-9)


def fit(samples: list[FitSample], prior: EstimateSpec, source: str, prior_weight: float = 1e-6) -> FitResult:
    """Least squares on log(estimate / measurement). A constant the data cannot see at all (no
    layer compute-bound: the compute efficiency) keeps its prior value; among equally good fits
    (fewer measurements than constants) a faint pull picks the one nearest the prior."""
    if not samples:
        raise EdgeError("nothing to fit: the bench JSON holds no measurements", ErrorKind.INPUT)
    x0 = _x(prior)
    x = _solve(samples, prior, source, x0, np.ones(len(PARAMS), bool), prior_weight)
    at_fit, at_prior = _determined(x, samples, prior, source), _determined(x0, samples, prior, source)
    determined = {p: at_fit[p] or at_prior[p] for p in PARAMS}  # a fit may push a constant to where nothing sees it
    mask = np.array([determined[p] for p in PARAMS])
    if not mask.all():
        x = _solve(samples, prior, source, x0, mask, prior_weight) if mask.any() else x0
    fitted = _spec(x, prior, source)
    rows = [(s.label, s.measured_ms, predict(s, prior), predict(s, fitted)) for s in samples]
    return FitResult(fitted, prior, rows, determined)


def _solve(samples: list[FitSample], prior: EstimateSpec, source: str, x0: np.ndarray, free: np.ndarray,
           prior_weight: float) -> np.ndarray:
    """The free constants (log scale) that minimise the squared log errors, from the prior and a
    few scaled copies of it (the max() makes the surface piecewise)."""
    from scipy.optimize import least_squares

    measured = np.log([s.measured_ms for s in samples])

    def residuals(z):
        x = x0.copy()
        x[free] = z
        c = _spec(x, prior, source)
        data = np.log([max(predict(s, c), 1e-9) for s in samples]) - measured
        return np.concatenate([data, prior_weight * (z - x0[free])])

    lower, upper = _LOWER[free] + 1e-9, _UPPER[free] - 1e-9
    best = None
    for shift in ([0, 0, 0, 0], [-1.5, 0, 0, 0], [1.5, 0, 0, 0], [0, 1.5, -1, 0.5], [-1, -2, 0, 1]):
        start = np.clip(x0[free] + np.array(shift)[free], lower, upper)
        r = least_squares(residuals, start, bounds=(lower, upper), x_scale=1.0, diff_step=1e-4, ftol=1e-12,
                          xtol=1e-10, gtol=1e-12)
        if best is None or r.cost < best.cost:
            best = r
    x = x0.copy()
    x[free] = best.x
    return x


def _determined(x: np.ndarray, samples: list[FitSample], prior: EstimateSpec, source: str) -> dict[str, bool]:
    """A constant is determined when moving it moves some estimate at all (no layer in its regime:
    not)."""
    base = np.array([predict(s, _spec(x, prior, source)) for s in samples])
    out = {}
    for k, name in enumerate(PARAMS):
        moved = x.copy()
        moved[k] += np.log(1.1)
        pred = np.array([predict(s, _spec(moved, prior, source)) for s in samples])
        out[name] = bool(np.max(np.abs(pred / base - 1)) > 1e-6)
    return out


# ----------------------------------------------------------------------------- the device file


@dataclass
class Calibration:
    result: FitResult
    device: DeviceSpec  # the spec written, constants included
    path: Path
    benches: list[Path]


def calibrate(benches: list[Path], name: str | None = None, write: bool = True) -> Calibration:
    """Fit the constants of the benches' device and write `name` (default: that device) to the
    user-level device folder, where it overrides a shipped file of that name."""
    if name is not None:
        check_device_name(name)
    records = [read_fit_record(p) for p in benches]
    devices = {r.device for r in records}
    if len(devices) != 1:
        raise EdgeError(f"{', '.join(map(str, benches))}: the benches were measured against different devices "
                        f"({', '.join(sorted(devices))}); calibrate one device at a time")
    base = load_device(records[0].device)
    samples = [s for r in records for s in samples_of(r, base)]
    when = max(r.date for r in records)
    source = (f"fitted from edge bench on {records[0].machine} ({', '.join(sorted({r.method for r in records}))}), "
              f"{when}: {len(samples)} measurements from {', '.join(p.name for p in benches)}")
    result = fit(samples, base.estimate_constants(), source)
    spec = base.model_copy(update={"name": name or base.name, "estimate": result.constants})
    path = user_device_dir() / f"{spec.name}.yaml"
    if write:
        write_device(spec, path, result, benches)
    return Calibration(result, spec, path, benches)


def write_device(spec: DeviceSpec, path: Path, result: FitResult, benches: list[Path]) -> None:
    c = result.constants
    fixed = ", ".join(p for p, d in result.determined.items() if not d)
    header = [
        f"# Written by `edge devices calibrate` on {date.today().isoformat()} ({platform.node() or 'this machine'}); "
        f"overrides the shipped {spec.name}.yaml where that exists.",
        f"# estimate: {c.source}.",
        f"# Fit: log-RMS error {result.log_rms(False):.3f} before, {result.log_rms():.3f} after; worst ratio "
        f"{result.worst_ratio():.2f}x." + (f" Not constrained by these measurements (kept at the prior): {fixed}."
                                           if fixed else "")
        + (f" At a bound: {', '.join(result.at_bounds())}." if result.at_bounds() else ""),
        f"# Benches: {', '.join(str(p) for p in benches)}",
    ]
    body = yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True), sort_keys=False)
    atomic_write_text(path, "\n".join(header) + "\n" + body)

"""The device side of `edge search`: a config's cost as the profiler and the budget count it.

Latency is the latency model's estimate (deploy/latency_model.py) of the model's traced graph on
the target at the precision, over the budget's window and at its power mode, the figure `edge
profile` checks against a budget where it cannot measure on the target. Peak memory is weights at
the precision (INT8 keeps the front-end in FP16) plus peak live activations, parameters all of
them, as in the profile's total row. No run is timed: a trial's cost takes a trace and a shape pass.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from at2seld_edge.config import ModelConfig
from at2seld_edge.deploy.budgets import load_budget
from at2seld_edge.deploy.devices import DeviceSpec, load_device
from at2seld_edge.deploy.latency_model import BYTES, estimate_onnx
from at2seld_edge.deploy.profiler import module_precision, trace_onnx
from at2seld_edge.model import MODULE_NAMES, build_model
from at2seld_edge.search.search import Cost, DeviceBudget, Limits
from at2seld_edge.summary import activation_costs, example_audio

MB = 1e6  # as the profile report counts


def config_cost(cfg: ModelConfig, device: DeviceSpec, precision: str, window_s: float,
                power_mode: str | None = None) -> Cost:
    model = build_model(cfg).eval()
    audio = example_audio(model, window_s).numpy()
    with tempfile.TemporaryDirectory(prefix="edge-search-") as tmp:
        graph = trace_onnx(model, audio, Path(tmp) / "trial.onnx")
        latency = estimate_onnx(graph, device, precision, power_mode, samples=audio.shape[-1]).total_ms
    _, peak = activation_costs(model, window_s)
    weights = sum(p.numel() * BYTES[module_precision(name, precision)]
                  for name in MODULE_NAMES for p in getattr(model, name).parameters())
    params = sum(p.numel() for p in model.parameters())
    return Cost(latency, (weights + peak * BYTES[precision] / 4) / MB, params / 1e6)


def search_device(target: str, budget: str, precision: str) -> DeviceBudget:
    """The target, the budget's total limits and the cost function `edge search` optimizes against."""
    device, bud = load_device(target), load_budget(budget)
    device.power_mode(bud.power_mode)  # an unknown mode fails before any trial
    t = bud.total
    return DeviceBudget(device.name, bud.name, precision, Limits(t.latency_ms, t.peak_memory_mb, t.params_m),
                        lambda cfg: config_cost(cfg, device, precision, bud.window_s, bud.power_mode))

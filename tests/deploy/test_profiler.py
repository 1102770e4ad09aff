"""The profiler: per-module latency that adds up, ONNX node attribution, roofline, budget checks."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from onnx import helper

from at2seld_edge.deploy.budgets import load_budget
from at2seld_edge.deploy.devices import load_device
from at2seld_edge.deploy.engine import tensorrt_available
from at2seld_edge.deploy.profiler import (
    WHOLE_MODEL, Execution, attribute_nodes, measured_on_target, onnx_graph_costs, profile, roofline,
)
from at2seld_edge.deploy.report import check_budget, violation_error, write_report
from at2seld_edge.errors import ErrorKind
from at2seld_edge.model import MODULE_NAMES, build_model
from at2seld_edge.onnx_export import export_onnx, module_of_node
from tests.conftest import variant

TIGHT = {"name": "tight", "description": "deliberately too small", "total": {"latency_ms": 1e-4, "peak_memory_mb": 0.5},
         "modules": {"default": {"latency_share": 0.9}, "backbone": {"gmacs_per_second": 0.001}}}


@pytest.fixture(scope="module")
def nano():
    torch.manual_seed(0)
    return build_model(variant())


@pytest.fixture(scope="module")
def nano_onnx(nano, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "nano.onnx"
    export_onnx(nano, path, seconds=1.0)
    return path


def test_module_of_node_reads_the_export_scopes():
    assert module_of_node("/model/backbone/conv_block1/conv1/Conv") == "backbone"
    assert module_of_node("/track_transformer/layers.0/time_attn/MatMul") == "track_transformer"
    assert module_of_node("/Transpose") is None
    assert module_of_node("ReorderOutput_token_12") is None


def test_unscoped_optimizer_nodes_take_their_neighbours_module():
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="/model/frontend/Relu"),
             helper.make_node("Identity", ["a"], ["b"], name="ReorderInput"),
             helper.make_node("Identity", ["b"], ["c"], name="ReorderInput_token_2"),
             helper.make_node("Relu", ["c"], ["d"], name="/model/backbone/Relu"),
             helper.make_node("Identity", ["y"], ["e"], name="orphan_feeds_backbone"),
             helper.make_node("Add", ["e", "d"], ["f"], name="/model/backbone/Add")]
    owner = attribute_nodes(helper.make_graph(nodes, "g", [], []))
    assert owner == {"/model/frontend/Relu": "frontend", "ReorderInput": "frontend", "ReorderInput_token_2": "frontend",
                     "/model/backbone/Relu": "backbone", "orphan_feeds_backbone": "backbone",
                     "/model/backbone/Add": "backbone"}


def test_roofline_is_the_slower_of_compute_and_memory():
    d = load_device("jetson-orin-nano-8gb")  # 10 TFLOPS FP16 dense, 68 GB/s
    ms, bound = roofline(5e9, 1e6, d, "fp16", None)  # 1e10 ops: 1 ms; 1 MB: 0.015 ms
    assert bound == "compute" and ms == pytest.approx(1.0)
    ms, bound = roofline(1e3, 68e6, d, "fp16", None)
    assert bound == "memory" and ms == pytest.approx(1.0)
    assert roofline(5e9, 1e6, d, "int8", None)[0] == pytest.approx(0.5)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_module_times_add_up_to_the_end_to_end_time(nano, nano_onnx, backend):
    p = profile(nano, nano_onnx, load_device("x86-cpu"), "fp32", backend, 1.0, warmup=2, runs=12)
    assert [m.module for m in p.modules] == list(MODULE_NAMES)
    assert all(m.latency is not None and m.latency.median_ms > 0 for m in p.modules)
    assert p.latency_checked == "measured"  # a CPU backend on the CPU target
    # each run's module times are disjoint parts of its end-to-end time, so what is left over is never
    # negative; how large it is depends on the machine's load, so no bound on it is asserted here
    assert -0.01 <= p.residue_ms <= p.total.latency.p95_ms * 10, (p.residue_ms, p.total.latency)
    assert p.total.macs_per_second == pytest.approx(sum(m.macs_per_second for m in p.modules))


def test_onnxruntime_attribution_on_the_default_preset(nano, nano_onnx):
    p = profile(nano, nano_onnx, load_device("jetson-orin"), "fp16", "onnxruntime", 1.0, warmup=1, runs=4)
    times = {m.module: m.latency.median_ms for m in p.modules}
    assert all(t > 0 for t in times.values()), times
    assert times["frontend"] > times["heads"] and times["backbone"] > times["cross_stitch"]
    assert not any("without a module scope" in n for n in p.notes)
    assert p.latency_checked == "estimate" and any("checked against the estimate" in n for n in p.notes)


def test_precision_scales_weight_bytes(nano):
    d = load_device("jetson-orin")
    p32 = profile(nano, None, d, "fp32", "torch", 1.0, warmup=0, runs=2)
    p8 = profile(nano, None, d, "int8", "torch", 1.0, warmup=0, runs=2)
    assert p8.module("backbone").weight_bytes * 4 == p32.module("backbone").weight_bytes
    assert p8.module("frontend").weight_bytes * 2 == p32.module("frontend").weight_bytes  # kept in FP16
    assert p8.module("backbone").roofline_ms < p32.module("backbone").roofline_ms
    # no graph given: the estimate traces one
    assert p32.total.layers == p8.total.layers > 50 and p32.measured_on == "cpu"
    assert 0 < p8.total.estimate_ms <= p32.total.estimate_ms  # FP32 runs its big convolutions at 1/8 the peak


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(4, 8, kernel_size=5, stride=4)
        self.fc = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.conv(x).mean(-1))


def trace(module: torch.nn.Module, path, samples: int):
    """A foreign ONNX file: `module` traced on (1, 4, samples) audio with a dynamic time axis."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.randn(1, 4, samples),), str(path), dynamo=False,
                          input_names=["audio"], dynamic_axes={"audio": {2: "samples"}})
    return path


def test_onnx_without_module_scopes_is_profiled_as_one_module(tmp_path):
    path = trace(_Tiny(), tmp_path / "foreign.onnx", 2400)
    costs = onnx_graph_costs(path, 2400)
    frames = (2400 - 5) // 4 + 1
    assert costs["macs"] == 8 * frames * 4 * 5 + 8 * 3  # conv + linear, by hand
    assert costs["params"] == 4 * 8 * 5 + 8 + 8 * 3 + 3
    p = profile(None, path, load_device("x86-cpu"), "fp32", "onnxruntime", 0.1, warmup=1, runs=3, onnx_costs=costs)
    assert [m.module for m in p.modules] == [WHOLE_MODEL]
    assert any("no node carries a module scope" in n and "one module" in n for n in p.notes)


def test_tight_budget_fails_and_names_the_module(nano, tmp_path, write_yaml):
    budget = load_budget(write_yaml(TIGHT, "tight.yaml"))
    p = profile(nano, None, load_device("jetson-orin"), "fp16", "torch", 1.0, warmup=0, runs=2)
    checks = check_budget(p, budget)
    failed = {(c.scope, c.metric) for c in checks if not c.passed}
    assert ("backbone", "gmacs_per_second") in failed and ("total", "latency_ms") in failed
    assert ("total", "peak_memory_mb") in failed
    err = violation_error(checks, budget)
    assert err.kind is ErrorKind.BUDGET and err.exit_code == 3
    assert "backbone gmacs_per_second" in str(err) and "%" in str(err)
    paths = write_report(p, budget, checks, tmp_path / "report", {"artifact": "profile_report"})
    assert [x.name for x in paths] == ["report.md", "report.json", "report.png"]
    data = json.loads(paths[1].read_text())
    assert data["passed"] is False and data["manifest"]["artifact"] == "profile_report"
    assert "FAIL" in paths[0].read_text() and paths[2].read_bytes()[:4] == b"\x89PNG"


def test_generous_budget_passes(nano):
    p = profile(nano, None, load_device("jetson-orin"), "fp16", "torch", 1.0, warmup=0, runs=2)
    checks = check_budget(p, load_budget("realtime-100ms"))
    assert checks and all(c.passed for c in checks)
    assert violation_error(checks, load_budget("realtime-100ms")) is None


@pytest.mark.skipif(not tensorrt_available(), reason="TensorRT is not installed on this machine (Jetson / GPU only)")
@pytest.mark.tensorrt
def test_tensorrt_layer_profiler_attributes_layers(nano, nano_onnx, tmp_path):
    p = profile(nano, nano_onnx, load_device("cuda-gpu"), "fp16", "tensorrt", 1.0, warmup=2, runs=5, work_dir=tmp_path)
    assert p.latency_checked == "measured"
    assert sum(m.latency.median_ms for m in p.modules) > 0
    assert abs(p.residue_ms) <= 0.15 * p.total.latency.median_ms



def test_off_target_budget_is_checked_against_the_estimate_not_the_roofline(nano, nano_onnx):
    device = load_device("jetson-orin")
    p = profile(nano, nano_onnx, device, "fp16", "onnxruntime", 1.0, warmup=0, runs=2)
    c = device.estimate_constants()
    assert p.latency_checked == "estimate" and p.estimate["origin"] == "shipped devices/jetson-orin-nano-8gb.yaml"
    for m in p.modules:
        assert m.layers > 0 and m.estimate_ms >= m.layers * c.per_layer_us * 1e-3 - 1e-9  # each layer >= its floor
    assert p.total.estimate_ms == pytest.approx(sum(m.estimate_ms for m in p.modules) + c.per_inference_us * 1e-3)
    assert p.total.estimate_ms > 3 * p.total.roofline_ms  # at batch 1 the bound is far below
    total = next(x for x in check_budget(p, load_budget("realtime-100ms")) if x.scope == "total" and
                 x.metric == "latency_ms")
    assert total.value == pytest.approx(p.total.estimate_ms)


@pytest.mark.parametrize("kind,backend,gpu,expected", [
    ("x86-cpu", "onnxruntime", None, True), ("x86-cpu", "torch", "NVIDIA H100 80GB HBM3", False),
    ("jetson-orin", "onnxruntime", None, False), ("jetson-orin", "tensorrt", "Orin", True),
    ("nvidia-h100", "torch", "NVIDIA H100 80GB HBM3", True), ("nvidia-h100", "torch", "NVIDIA A100-SXM4-80GB", False),
])
def test_measured_on_target_only_where_the_backend_ran_on_the_targets_processor(kind, backend, gpu, expected):
    assert measured_on_target(load_device(kind), backend, gpu) is expected


CUDA = torch.cuda.is_available()


@pytest.mark.skipif(CUDA, reason="this machine has a CUDA GPU; the refusal is for machines without one")
def test_cuda_profile_without_a_gpu_is_one_usage_line(nano):
    from at2seld_edge.errors import EdgeError

    with pytest.raises(EdgeError, match="--device cuda: PyTorch .* sees no CUDA GPU") as e:
        profile(nano, None, load_device("nvidia-h100"), "fp16", "torch", 1.0, warmup=0, runs=2,
                execution=Execution("cuda"))
    assert e.value.kind is ErrorKind.USAGE


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (PyTorch sees none on this machine)")
@pytest.mark.parametrize("graphs", [False, True])
def test_torch_cuda_profile_times_modules_and_counts_kernels(nano, graphs):
    p = profile(nano, None, load_device("nvidia-h100"), "fp16", "torch", 1.0, warmup=3, runs=10,
                execution=Execution("cuda", graphs))
    assert p.measured_on != "cpu" and p.total.kernels > 20
    assert all(m.latency.median_ms > 0 and m.kernels > 0 for m in p.modules)
    if graphs:
        assert any("CUDA graph" in n for n in p.notes)
    else:
        assert abs(p.residue_ms) <= 0.5 * p.total.latency.median_ms


@pytest.mark.skipif("CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers(),
                    reason="needs onnxruntime-gpu with the CUDA provider (this onnxruntime has none)")
def test_onnxruntime_cuda_profile(nano, nano_onnx):
    p = profile(nano, nano_onnx, load_device("nvidia-h100"), "fp16", "onnxruntime", 1.0, warmup=2, runs=5,
                execution=Execution("cuda"))
    assert p.measured_on != "cpu" and p.total.latency.median_ms > 0


def _profile_of(estimates_ms: dict[str, float], memory_mb: float) -> "Profile":
    from at2seld_edge.deploy.profiler import ModuleProfile, Profile

    def module(name, ms, mb):
        return ModuleProfile(name, 1000, 1e6, int(mb * 5e5), int(mb * 5e5), None, ms / 4, "compute", ms)

    mods = [module(n, ms, memory_mb) for n, ms in estimates_ms.items()]
    total = module("total", sum(estimates_ms.values()), memory_mb * len(mods))
    return Profile("m.onnx", "at2seld-nano", "jetson-orin-nano-8gb", None, "fp16", "onnxruntime", 1.0, mods, total,
                   None, "estimate", [])


def test_the_profile_plot_reads_sub_millisecond_modules_against_a_50_ms_budget():
    from at2seld_edge.deploy.report import profile_figure
    from at2seld_edge.plots import pyplot

    ms = {"frontend": 1.0, "backbone": 0.6, "spatial_encoder": 0.4, "cross_stitch": 0.14, "track_transformer": 0.6,
          "smoother": 0.24, "heads": 0.04}
    fig = profile_figure(_profile_of(ms, 0.5), load_budget("realtime-100ms"))
    latency, memory = fig.axes
    for ax in (latency, memory):
        assert ax.get_xscale() == "log"  # a linear 0-35 ms axis drew the bars as slivers
        assert [t.get_text() for t in ax.get_yticklabels()][-1] == "total"  # with a total bar
    lo, hi = latency.get_xlim()
    assert lo <= 0.04 / 4 and hi >= 50.0  # the smallest bar (and its roofline) and the total limit in view
    bars = latency.patches
    assert len(bars) == len(ms) + 1 and bars[-1].get_x() + bars[-1].get_width() == pytest.approx(sum(ms.values()))
    ticks = {tuple(line.get_xdata()) for line in memory.get_lines()}
    assert (1024, 1024) in ticks  # the budget's memory limit, on the total bar
    assert memory.get_xlim()[1] >= 1024 and any("limit 1024 MB" == t.get_text() for t in memory.texts)
    pyplot().close(fig)

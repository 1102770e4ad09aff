"""Calibration: the fit recovers known constants from synthetic bench data, keeps what the data
cannot see near its prior, and writes a user-level device file the next estimate uses and names."""

from __future__ import annotations

import json
import re
from importlib import resources

import numpy as np
import pytest
import yaml

from at2seld_edge.deploy.calibrate import (
    FitRecord, LayerRecord, Measurement, calibrate, fit, predict, samples_from,
)
from at2seld_edge.deploy.devices import PACKAGE as DEVICES
from at2seld_edge.deploy.devices import EstimateSpec, load_device, user_device_dir
from at2seld_edge.deploy.latency_model import Layer, estimate_onnx
from at2seld_edge.errors import EdgeError
from tests.deploy.test_latency_model import conv_bn_relu_conv
from tests.test_cli import edge

TRUE = EstimateSpec(per_layer_us=12.0, per_inference_us=80.0, compute_efficiency=0.45, memory_efficiency=0.6,
                    source="truth")
PRIOR = EstimateSpec(per_layer_us=30.0, per_inference_us=200.0, compute_efficiency=0.9, memory_efficiency=0.2,
                     source="prior")


@pytest.fixture(autouse=True)
def user_devices(tmp_path, monkeypatch):
    """Every test writes its device files into its own folder, never the user's."""
    folder = tmp_path / "user-devices"
    monkeypatch.setenv("AT2SELD_EDGE_DEVICES", str(folder))
    return folder


def synthetic_layers(n: int = 160, seed: int = 0) -> list[Layer]:
    """Layers spanning the three regimes on a Jetson Orin Nano: tiny (floor), MAC-heavy, byte-heavy."""
    rng = np.random.default_rng(seed)
    layers = []
    for k in range(n):
        kind = k % 3
        macs = float(rng.uniform(1e4, 1e6) if kind != 1 else rng.uniform(2e7, 2e8))
        nbytes = float(rng.uniform(1e3, 1e5) if kind != 2 else rng.uniform(2e6, 2e7))
        layers.append(Layer("Conv", ["frontend", "backbone", "heads"][k % 3], [f"layer{k}"], macs, nbytes, "fp16"))
    return layers


def measure(layers: list[Layer], truth: EstimateSpec, noise: float, seed: int = 1):
    """Per-layer and end-to-end times the true constants give, with log-normal noise."""
    device = load_device("jetson-orin-nano-8gb")
    rng = np.random.default_rng(seed)
    every = list(range(len(layers)))
    exact = samples_from(layers, [Measurement(label="all", ms=1.0, layers=every, fixed=True)]
                         + [Measurement(label=f"l{k}", ms=1.0, layers=[k], fixed=False) for k in every], device)
    return [Measurement(label=s.label, ms=predict(s, truth) * float(np.exp(rng.normal(0, noise))),
                        layers=every if s.fixed else [int(s.label[1:])], fixed=s.fixed) for s in exact]


# (noise, constants expected back, tolerance): with 5% noise on a ~4 ms end-to-end time the 80 us
# per-inference cost is below what the data can resolve, so only the layer constants are checked.
@pytest.mark.parametrize("noise,keys,rel", [
    (0.0, ("per_layer_us", "per_inference_us", "compute_efficiency", "memory_efficiency"), 0.02),
    (0.05, ("per_layer_us", "compute_efficiency", "memory_efficiency"), 0.08),
])
def test_fit_recovers_known_constants_from_per_layer_times(noise, keys, rel):
    layers = synthetic_layers()
    device = load_device("jetson-orin-nano-8gb")
    result = fit(samples_from(layers, measure(layers, TRUE, noise), device), PRIOR, "synthetic")
    for key in keys:
        assert getattr(result.constants, key) == pytest.approx(getattr(TRUE, key), rel=rel), key
    assert all(result.determined.values())
    assert result.log_rms() < result.log_rms(after=False) and result.constants.source == "synthetic"


def test_a_constant_the_data_cannot_see_stays_at_its_prior():
    tiny = [Layer("Relu", "heads", [f"l{k}"], 10.0, 100.0, "fp16") for k in range(50)]  # every layer at the floor
    result = fit(samples_from(tiny, measure(tiny, TRUE, 0.0), load_device("jetson-orin-nano-8gb")), PRIOR, "t")
    assert result.constants.per_layer_us == pytest.approx(12.0, rel=0.02)
    assert not result.determined["compute_efficiency"] and not result.determined["memory_efficiency"]
    assert result.constants.compute_efficiency == PRIOR.compute_efficiency


def write_bench(path, layers: list[Layer], measurements: list[Measurement], device="jetson-orin-nano-8gb"):
    record = FitRecord(device=device, executor="tensorrt", precision="fp16", method="synthetic", machine="test",
                       date="2026-11-25", layers=[LayerRecord.of(x) for x in layers], measurements=measurements)
    path.write_text(json.dumps({"artifact": "bench_report", "fit": record.model_dump(mode="json")}))
    return path


def test_calibrated_file_overrides_the_shipped_one_and_the_estimate_says_so(tmp_path, user_devices):
    layers = synthetic_layers()
    bench = write_bench(tmp_path / "bench.json", layers, measure(layers, TRUE, 0.0))
    shipped = estimate_onnx(conv_bn_relu_conv(), load_device("jetson-orin"), "fp16")
    cal = calibrate([bench])
    assert cal.path == user_devices / "jetson-orin-nano-8gb.yaml" and cal.path.is_file()
    assert "fitted from edge bench on test" in cal.path.read_text()
    device = load_device("jetson-orin")  # the family name resolves to the overridden module
    assert device.origin == f"user override {cal.path}"
    assert device.estimate.per_layer_us == pytest.approx(12.0, rel=0.05)
    est = estimate_onnx(conv_bn_relu_conv(), device, "fp16")
    assert f"constants from user override {cal.path}" in est.describe() and "fitted from edge bench" in est.describe()
    assert est.total_ms < shipped.total_ms  # 12 us layers and 80 us per inference, not 20 and 150
    assert device.throughput == load_device("jetson-orin-nano-8gb").throughput  # only the estimate was refitted


def test_calibrate_under_a_new_name_leaves_the_shipped_device_alone(tmp_path, user_devices):
    layers = synthetic_layers(30)
    cal = calibrate([write_bench(tmp_path / "b.json", layers, measure(layers, TRUE, 0.0))], name="my-orin")
    assert cal.path == user_devices / "my-orin.yaml"
    assert load_device("my-orin").origin.startswith("user override")
    assert load_device("jetson-orin-nano-8gb").origin == "shipped devices/jetson-orin-nano-8gb.yaml"


@pytest.mark.parametrize("content,message", [
    ("not json", "not valid JSON"),
    ('{"artifact": "bench_report"}', "no `fit` section"),
    ('{"fit": {"device": "x"}}', "fit.key `executor`"),
    ('{"fit": ' + "[" * 10_000 + "]" * 10_000 + "}", "nested deeper than 32 levels"),  # RecursionError before
    ('{"fit": ' + '{"a": ' * 100 + "1" + "}" * 100 + "}", "nested deeper than 32 levels"),
    ('{"fit": {"device": "x", "measurements": [{"ms": Infinity}]}}', "Infinity is not a finite number"),
    ('{"fit": {"device": "x", "measurements": [{"ms": NaN}]}}', "NaN is not a finite number"),
    ('{"fit": {"device": "x", "measurements": [{"ms": 1e999}]}}', "1e999 is not a finite number"),
    ('{"fit": {"device": "x", "steps": ' + "9" * 5000 + "}}", "integer with 5000 digits"),
])
def test_bad_bench_json_is_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bench.json"
    path.write_text(content)
    with pytest.raises(EdgeError, match=f"bench.json(:1)?: .*{message}") as e:
        calibrate([path])
    assert "\n" not in str(e.value)


def test_measurement_naming_a_missing_layer_is_refused(tmp_path):
    layers = synthetic_layers(3)
    path = write_bench(tmp_path / "bench.json", layers, [Measurement(label="x", ms=1.0, layers=[7], fixed=True)])
    with pytest.raises(EdgeError, match="bench.json: measurement 'x' names a layer outside the 3 recorded"):
        calibrate([path])


def test_cli_calibrate_writes_the_override_and_edge_devices_lists_it(tmp_path, user_devices):
    layers = synthetic_layers(30)
    bench = write_bench(tmp_path / "bench.json", layers, measure(layers, TRUE, 0.0))
    r = edge("devices", "calibrate", "--bench", str(bench), "--name", "bench-board")
    assert r.returncode == 0, r.stderr
    assert "per_layer_us" in r.stdout and str(user_devices / "bench-board.yaml") in " ".join(r.stdout.split())
    r = edge("devices")
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if "bench-board" in x)
    assert "user override" in line and "12 us/layer" in line
    assert str(user_devices) in " ".join(r.stdout.split()) and user_device_dir() == user_devices


def test_missing_bench_json_is_one_line(tmp_path):
    with pytest.raises(EdgeError, match="none.json: bench JSON not found"):
        calibrate([tmp_path / "none.json"])


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/abs", "sub/dir", ".hidden", "x.yaml", ""])
def test_a_name_that_is_not_a_plain_device_name_is_refused_before_writing(tmp_path, user_devices, name):
    layers = synthetic_layers(3)
    bench = write_bench(tmp_path / "bench.json", layers, measure(layers, TRUE, 0.0))
    with pytest.raises(EdgeError, match="not a device name") as e:
        calibrate([bench], name=name)
    assert e.value.exit_code == 2
    assert not list(tmp_path.rglob("*.yaml"))  # nothing written, inside the user folder or outside it


def test_a_bench_whose_device_name_leaves_the_user_folder_is_refused(tmp_path, user_devices):
    layers = synthetic_layers(3)
    bench = write_bench(tmp_path / "bench.json", layers, measure(layers, TRUE, 0.0))
    data = json.loads(bench.read_text())
    data["fit"]["device"] = "../../x"
    bench.write_text(json.dumps(data))
    with pytest.raises(EdgeError, match=r"bench.json: fit.key `device`: '../../x' is not a device name"):
        calibrate([bench])
    spec = yaml.safe_load((resources.files(DEVICES) / "x86-cpu.yaml").read_text()) | {"name": "../../x"}
    (tmp_path / "x.yaml").write_text(yaml.safe_dump(spec))  # a device file by path, naming itself ../../x
    with pytest.raises(EdgeError, match=r"x.yaml: key `name`: '../../x' is not a device name \(letters, digits"):
        load_device(tmp_path / "x.yaml")
    assert not list(tmp_path.parent.glob("x.yaml"))


@pytest.mark.parametrize("where, value, message", [  # the first was least_squares' ValueError (residuals not finite)
    (("layers", 0, "macs"), 1e308, "fit.key `layers.0.macs`: Input should be less than or equal to 1000000000000000"),
    (("measurements", 0, "ms"), 1e300, "fit.key `measurements.0.ms`: Input should be less than or equal to"),
])
def test_absurd_figures_in_a_bench_are_refused(tmp_path, where, value, message):
    layers = synthetic_layers(3)
    bench = write_bench(tmp_path / "bench.json", layers, measure(layers, TRUE, 0.0))
    data = json.loads(bench.read_text())
    node = data["fit"]
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    bench.write_text(json.dumps(data))
    with pytest.raises(EdgeError, match=re.escape(message)):
        calibrate([bench])

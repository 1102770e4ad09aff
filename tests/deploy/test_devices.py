"""Device specs: every shipped one validates, names resolve, mistakes name the file and key."""

from __future__ import annotations

import pytest
import yaml
from importlib import resources

from at2seld_edge.deploy.devices import PACKAGE, device_names, load_device
from at2seld_edge.errors import EdgeError

REQUIRED = {"jetson-orin-agx-64gb", "jetson-orin-agx-32gb", "jetson-orin-nx-16gb", "jetson-orin-nx-8gb",
            "jetson-orin-nano-8gb", "jetson-orin-nano-4gb", "x86-cpu", "cuda-gpu"}


def test_required_devices_are_shipped():
    assert REQUIRED <= set(device_names())


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_shipped_device_validates_and_cites_sources(name):
    d = load_device(name)
    assert d.name == name
    assert d.throughput.int8_tops >= d.throughput.fp16_tflops >= d.throughput.fp32_tflops * 0.99
    text = (resources.files(PACKAGE) / f"{name}.yaml").read_text()
    assert "Source" in text or "datasheet" in text or "lscpu" in text  # each figure's source, in a comment
    if d.kind == "jetson":
        assert d.gpu.compute_capability == "8.7" and d.jetpack and d.power_modes


def test_family_name_resolves_to_the_smallest_common_module():
    assert load_device("jetson-orin").name == "jetson-orin-nano-8gb"


def test_orin_throughputs_are_consistent_with_the_published_sparse_tops():
    # NVIDIA's module TOPS are sparse INT8 of GPU + DLA
    published = {"jetson-orin-agx-64gb": 275, "jetson-orin-agx-32gb": 200, "jetson-orin-nx-16gb": 100,
                 "jetson-orin-nx-8gb": 70, "jetson-orin-nano-8gb": 40, "jetson-orin-nano-4gb": 20}
    for name, tops in published.items():
        d = load_device(name)
        assert d.throughput.int8_tops_sparse + d.dla.int8_tops_sparse == pytest.approx(tops, rel=0.01)
        assert d.throughput.int8_tops == pytest.approx(d.throughput.int8_tops_sparse / 2)
        assert d.throughput.fp32_tflops == pytest.approx(d.gpu.cuda_cores * 2 * d.gpu.max_clock_mhz * 1e-6, rel=0.02)


def test_power_mode_scales_the_peak_and_the_bandwidth():
    d = load_device("jetson-orin-nano-8gb")
    assert d.peak_ops_per_s("fp16", "MAXN_SUPER") == pytest.approx(10e12 * 1020 / 625)
    assert d.bandwidth_bytes_per_s("MAXN_SUPER") == pytest.approx(102e9)
    assert d.bandwidth_bytes_per_s(None) == pytest.approx(68e9)
    with pytest.raises(EdgeError, match="no power mode '99W'.*15W"):
        d.peak_ops_per_s("fp16", "99W")


def test_unknown_device_lists_the_known_ones():
    with pytest.raises(EdgeError, match="unknown device 'orin-pico'.*jetson-orin-nano-8gb.*x86-cpu"):
        load_device("orin-pico")


def test_wrong_key_and_wrong_type_name_the_file_and_key(tmp_path):
    data = yaml.safe_load((resources.files(PACKAGE) / "jetson-orin-nano-8gb.yaml").read_text())
    data["memory"]["bandwith_gbs"] = data["memory"].pop("bandwidth_gbs")
    path = tmp_path / "my-board.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(EdgeError, match=r"my-board.yaml: .*memory.bandwith_gbs.*unknown key.*bandwidth_gbs"):
        load_device(path)
    data["memory"]["bandwidth_gbs"] = "fast"
    del data["memory"]["bandwith_gbs"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(EdgeError, match=r"my-board.yaml: key `memory.bandwidth_gbs`: .*number.*'fast'"):
        load_device(path)


ESTIMATED = ["jetson-orin-agx-64gb", "jetson-orin-agx-32gb", "jetson-orin-nx-16gb", "jetson-orin-nx-8gb",
             "jetson-orin-nano-8gb", "jetson-orin-nano-4gb", "x86-cpu", "nvidia-h100"]


@pytest.mark.parametrize("name", ESTIMATED)
def test_estimate_constants_carry_their_provenance(name):
    d = load_device(name)
    text = (resources.files(PACKAGE) / f"{name}.yaml").read_text()
    assert d.estimate is not None and d.estimate.source
    assert "Latency-estimate constants" in text  # the derivation, in the file's comment
    assert d.executor() == ("onnxruntime" if d.kind == "cpu" else "tensorrt")


def test_orin_floors_scale_with_the_gpu_clock():
    for name in ESTIMATED[:6]:
        d = load_device(name)
        assert d.estimate.per_layer_us == pytest.approx(12_500 / d.gpu.max_clock_mhz, abs=0.05), name


def test_device_without_an_estimate_section_takes_its_kinds_defaults():
    from at2seld_edge.deploy.devices import KIND_DEFAULTS

    d = load_device("rtx-4090")
    assert d.estimate is None and d.estimate_constants() == KIND_DEFAULTS["gpu"]
    assert "nvidia-h100" in d.estimate_constants().source


def test_user_folder_comes_from_the_environment(monkeypatch, tmp_path):
    from at2seld_edge.deploy.devices import user_device_dir

    monkeypatch.setenv("AT2SELD_EDGE_DEVICES", str(tmp_path / "mine"))
    assert user_device_dir() == tmp_path / "mine"
    monkeypatch.delenv("AT2SELD_EDGE_DEVICES")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert user_device_dir() == tmp_path / "xdg" / "at2seld-edge" / "devices"


def test_user_file_overrides_the_shipped_one_and_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("AT2SELD_EDGE_DEVICES", str(tmp_path))
    data = yaml.safe_load((resources.files(PACKAGE) / "x86-cpu.yaml").read_text())
    data["estimate"]["per_layer_us"] = 1.25
    (tmp_path / "x86-cpu.yaml").write_text(yaml.safe_dump(data))
    d = load_device("x86-cpu")
    assert d.estimate.per_layer_us == 1.25 and d.origin == f"user override {tmp_path / 'x86-cpu.yaml'}"
    data["estimate"]["per_layer_us"] = -1
    (tmp_path / "x86-cpu.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(EdgeError, match=r"x86-cpu.yaml: key `estimate.per_layer_us`"):
        load_device("x86-cpu")


def test_a_user_override_of_another_name_or_that_is_a_folder_is_refused_naming_it(monkeypatch, tmp_path):
    """Ignoring either would estimate with the shipped figures while the user believes theirs are used."""
    monkeypatch.setenv("AT2SELD_EDGE_DEVICES", str(tmp_path))
    data = yaml.safe_load((resources.files(PACKAGE) / "x86-cpu.yaml").read_text())
    (tmp_path / "x86-cpu.yaml").write_text(yaml.safe_dump({**data, "name": "my-cpu"}))
    with pytest.raises(EdgeError, match=r"x86-cpu.yaml: a user device override named 'my-cpu' in the file of "
                                        r"'x86-cpu'.*rename the file to my-cpu.yaml"):
        load_device("x86-cpu")
    (tmp_path / "x86-cpu.yaml").unlink()
    (tmp_path / "x86-cpu.yaml").mkdir()
    with pytest.raises(EdgeError, match=r"x86-cpu.yaml: a user device override that is not a file"):
        load_device("x86-cpu")

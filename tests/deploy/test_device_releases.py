"""The Jetson facts of issue 24: each device's JetPack releases (TensorRT, CUDA, Python, Ubuntu),
the Thor target, the Orin Super power modes with their GPU clocks, every one with its source;
and the schema's rules for them."""

from __future__ import annotations

import pytest
import yaml

from at2seld_edge.deploy.build import BuildOptions, plan_build, target_tensorrt
from at2seld_edge.deploy.devices import device_names, load_device
from at2seld_edge.errors import EdgeError

JETSONS = [n for n in device_names() if load_device(n).kind == "jetson"]


@pytest.mark.parametrize("name", JETSONS)
def test_every_release_and_clocked_power_mode_names_its_source(name):
    d = load_device(name)
    for r in d.jetpack + d.jetpack_newer:
        assert r.source, f"{name}: JetPack {r.version} has no source"
        if _version(r.version) >= (6, 0):  # JetPack 6 is Ubuntu 22.04 with Python 3.10, JetPack 7 24.04 with 3.12
            assert (r.python, r.ubuntu) == (("3.10", "22.04") if r.version < "7" else ("3.12", "24.04")), (name, r.version)
    for m in d.power_modes:
        assert m.gpu_clock_mhz is None or m.source, f"{name}: power mode {m.name} has a clock and no source"
    assert sum(m.default for m in d.power_modes) <= 1
    newest = max(_version(r.version) for r in d.jetpack)
    assert all(_version(r.version) > newest for r in d.jetpack_newer)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


@pytest.mark.parametrize("name, tensorrt", [("jetson-orin-nano-8gb", "10.16.2"), ("jetson-orin-agx-64gb", "11.4.1"),
                                            ("jetson-thor", "11.4.1")])
def test_jetpack_7_releases_per_module(name, tensorrt):
    d = load_device(name)
    newer = {r.version: r for r in d.jetpack_newer}
    assert (newer["7.2"].tensorrt, newer["7.2"].cuda, newer["7.2"].python) == ("10.16.2", "13.2", "3.12")
    assert newer[max(newer)].tensorrt == tensorrt  # TensorRT 11.4.1 from JetPack 7.2.2: AGX Orin and Thor only


def test_the_default_build_target_stays_the_newest_jetpack_of_the_list():
    assert target_tensorrt(load_device("jetson-orin"), None) == "10.3"  # JetPack 6.2: jetpack_newer is not a target
    assert target_tensorrt(load_device("jetson-thor"), None) == "10.13"  # JetPack 7.1


def test_thor_is_blackwell_fp8_and_has_no_dla():
    d = load_device("jetson-thor")
    assert (d.gpu.compute_capability, d.gpu.cuda_cores, d.gpu.max_clock_mhz) == ("11.0", 2560, 1575)
    assert d.dla.cores == 0 and d.throughput.fp8_tflops == 517 and d.throughput.int8_tops_sparse == 1035
    assert [r.version for r in d.jetpack] == ["7.0", "7.1"] and {r.cuda for r in d.jetpack} == {"13.0"}
    with pytest.raises(EdgeError, match="--dla: jetson-thor has no DLA cores"):
        plan_build(BuildOptions(target="jetson-thor", dla=True, seconds=1.0), say=lambda m: None)


@pytest.mark.parametrize("name, modes, default", [
    ("jetson-orin-nano-8gb", {"15W": 612, "25W": 918, "MAXN_SUPER": 1020}, "25W"),
    ("jetson-orin-nano-4gb", {"10W": 612, "25W": 1020, "MAXN_SUPER": 1020}, "25W"),
    ("jetson-orin-nx-16gb", {"10W": 612, "15W": 612, "25W": 408, "40W": 1173, "MAXN_SUPER": 1173}, "40W"),
])
def test_orin_super_power_modes(name, modes, default):
    d = load_device(name)
    clocks = {m.name: m.gpu_clock_mhz for m in d.power_modes}
    assert {k: clocks[k] for k in modes} == modes
    assert [m.name for m in d.power_modes if m.default] == [default]
    assert d.power_mode("MAXN_SUPER").watts is None  # uncapped
    assert d.clock_ratio(default) == pytest.approx(d.gpu.max_clock_mhz / modes[default])


def test_two_default_power_modes_or_a_release_listed_twice_is_refused(tmp_path):
    d = load_device("jetson-orin-nano-8gb").model_dump(mode="json")
    for key, value, message in (
            ("power_modes", [{"name": "A", "default": True}, {"name": "B", "default": True}], "more than one power mode"),
            ("jetpack_newer", [d["jetpack"][-1]], "JetPack release is listed twice")):
        path = tmp_path / f"{key}.yaml"
        path.write_text(yaml.safe_dump({**d, key: value}))
        with pytest.raises(EdgeError, match=message):
            load_device(path)

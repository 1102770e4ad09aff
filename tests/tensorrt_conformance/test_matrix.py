"""The matrix holds a release of every TensorRT line a shipped Jetson's JetPack runs (from TensorRT
8.6, the oldest PyPI has bindings of), and its wheels are what `pip download` takes."""

from __future__ import annotations

from at2seld_edge.deploy.devices import device_names, load_device
from tests.tensorrt_conformance.matrix import MATRIX, release


def _line(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def test_the_matrix_covers_every_tensorrt_a_jetpack_runs():
    lines = {_line(r.version) for r in MATRIX}
    needed = {}
    for name in device_names():
        d = load_device(name)
        for r in d.jetpack + d.jetpack_newer:
            if _line(r.tensorrt) >= (8, 6):
                needed.setdefault(_line(r.tensorrt), []).append(f"{name} JetPack {r.version}")
    missing = {k: v for k, v in needed.items() if k not in lines}
    assert not missing, f"no matrix release for {missing}"
    assert set(needed) == lines  # and nothing in the matrix that no target runs


def test_releases_name_their_wheels():
    r = release("10.16.1.11")
    assert (r.distribution, r.major, r.wheel_prefix) == ("tensorrt-cu13-bindings", 10, "tensorrt_cu13_bindings-10.16.1.11-")
    assert release("8.6.1").wheel_prefix == "tensorrt_bindings-8.6.1-"

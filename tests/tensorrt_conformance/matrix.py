"""The TensorRT releases the toolkit is checked against: the Python bindings of each, as PyPI
serves them, one per TensorRT line a JetPack ships (devices/*.yaml's `jetpack` lists; TensorRT 8.5 of
JetPack 5.1 has no bindings wheel on PyPI). Where PyPI lacks the exact patch release JetPack
ships, the nearest one of the same minor line stands in: a patch release keeps the API.

Each wheel holds the real `tensorrt` extension module of that release (about 1 MB); the
libraries it links (libnvinfer, libnvonnxparser, libnvinfer_plugin; libnvparsers for 8.6) come
from `-libs` wheels that download from NVIDIA's servers, so the harness replaces them with stubs
(bindings.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Release:
    version: str  # what `tensorrt.__version__` reports
    requirement: str  # the bindings wheel, as `pip download` takes it
    why: str  # which JetPack runs this line, and why this exact build

    @property
    def distribution(self) -> str:
        return self.requirement.split("==")[0]

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def wheel_prefix(self) -> str:
        """The start of the wheel's file name (PEP 427): name with underscores, then the version."""
        return f"{self.distribution.replace('-', '_')}-{self.requirement.split('==')[1]}-"


MATRIX = (
    Release("8.6.1", "tensorrt-bindings==8.6.1",
            "JetPack 6.0 ships TensorRT 8.6.2; 8.6.1 is the only 8.6 build on PyPI (same 8.6 API)"),
    Release("10.3.0", "tensorrt-cu12-bindings==10.3.0",
            "JetPack 6.1 and 6.2.x ship TensorRT 10.3.0 with CUDA 12.6: the very build"),
    Release("10.13.3.9", "tensorrt-cu13-bindings==10.13.3.9",
            "JetPack 7.0/7.1 (Thor) ship TensorRT 10.13.3.9 with CUDA 13.0: the very build, for CUDA 13"),
    Release("10.16.1.11", "tensorrt-cu13-bindings==10.16.1.11",
            "JetPack 7.2 (Orin and Thor) ships TensorRT 10.16.2 with CUDA 13.2; PyPI's newest 10.16 is 10.16.1"),
    Release("11.4.0.106", "tensorrt-cu13-bindings==11.4.0.106",
            "JetPack 7.2.2 brings TensorRT 11.4.1 (AGX Orin, Thor); PyPI's newest 11.4 is 11.4.0, CUDA 13"),
)
VERSIONS = tuple(r.version for r in MATRIX)


def release(version: str) -> Release:
    for r in MATRIX:
        if r.version == version:
            return r
    raise KeyError(f"no TensorRT {version} in the conformance matrix ({', '.join(VERSIONS)})")

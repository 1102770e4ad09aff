"""Target devices: the figures a roofline estimate and a deployment decision need.

Throughput is the GPU's (or CPU's) peak at its maximum clock, dense unless a key says `sparse`;
a power mode that names a lower GPU clock scales it. DLA figures are listed for users who place
layers on the DLA; the profiler's roofline uses the GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from at2seld_edge.deploy.specs import load_named_yaml, shipped_names
from at2seld_edge.errors import EdgeError

PACKAGE = "at2seld_edge.devices"
FAMILIES = {"jetson-orin": "jetson-orin-nano-8gb"}  # family name -> its smallest common module
Precision = Literal["fp32", "fp16", "int8"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GpuSpec(_Strict):
    architecture: str
    compute_capability: str = Field(pattern=r"^\d+\.\d+$")
    cuda_cores: int = Field(gt=0)
    tensor_cores: int = Field(ge=0)
    max_clock_mhz: float = Field(gt=0)


class CpuSpec(_Strict):
    cores: int = Field(gt=0)
    clock_mhz: float = Field(gt=0)
    isa: list[str] = []


class Throughput(_Strict):
    fp32_tflops: float = Field(gt=0)
    fp16_tflops: float = Field(gt=0)  # dense (tensor cores on a GPU)
    int8_tops: float = Field(gt=0)  # dense
    int8_tops_sparse: float | None = Field(None, gt=0)  # 2:4 structured sparsity


class DlaSpec(_Strict):
    cores: int = Field(ge=0)
    int8_tops: float = Field(ge=0)
    int8_tops_sparse: float = Field(ge=0)


class MemorySpec(_Strict):
    size_gb: float = Field(gt=0)
    type: str
    bandwidth_gbs: float = Field(gt=0)


class PowerMode(_Strict):
    name: str
    watts: float = Field(gt=0)
    gpu_clock_mhz: float | None = Field(None, gt=0)  # None: not published; the maximum is assumed
    memory_bandwidth_gbs: float | None = Field(None, gt=0)
    jetpack_min: str | None = None


class JetPackRelease(_Strict):
    version: str
    l4t: str
    tensorrt: str
    cuda: str


class DeviceSpec(_Strict):
    name: str
    family: str
    kind: Literal["jetson", "gpu", "cpu"]
    description: str
    gpu: GpuSpec | None = None
    cpu: CpuSpec | None = None
    throughput: Throughput
    dla: DlaSpec
    memory: MemorySpec
    power_modes: list[PowerMode] = []
    jetpack: list[JetPackRelease] = []

    @model_validator(mode="after")
    def _processor(self) -> "DeviceSpec":
        if self.kind == "cpu" and self.cpu is None:
            raise ValueError("a cpu device needs a `cpu` section")
        if self.kind != "cpu" and self.gpu is None:
            raise ValueError(f"a {self.kind} device needs a `gpu` section")
        return self

    def power_mode(self, name: str | None) -> PowerMode | None:
        if name is None:
            return None
        for mode in self.power_modes:
            if mode.name == name:
                return mode
        known = ", ".join(m.name for m in self.power_modes) or "none"
        raise EdgeError(f"device {self.name} has no power mode {name!r} (known: {known})")

    def peak_ops_per_s(self, precision: Precision, power_mode: str | None = None) -> float:
        """Dense multiply-add operations (2 per MAC) per second at this precision and power mode."""
        t = self.throughput
        peak = {"fp32": t.fp32_tflops, "fp16": t.fp16_tflops, "int8": t.int8_tops}[precision] * 1e12
        mode = self.power_mode(power_mode)
        if mode is not None and mode.gpu_clock_mhz is not None and self.gpu is not None:
            peak *= mode.gpu_clock_mhz / self.gpu.max_clock_mhz
        return peak

    def bandwidth_bytes_per_s(self, power_mode: str | None = None) -> float:
        mode = self.power_mode(power_mode)
        if mode is not None and mode.memory_bandwidth_gbs is not None:
            return mode.memory_bandwidth_gbs * 1e9
        return self.memory.bandwidth_gbs * 1e9


def device_names() -> list[str]:
    return shipped_names(PACKAGE)


def load_device(name_or_path: str | Path) -> DeviceSpec:
    """A shipped device name, a family name (`jetson-orin`) or a path to a device YAML."""
    return load_named_yaml(name_or_path, PACKAGE, DeviceSpec, "device", FAMILIES)

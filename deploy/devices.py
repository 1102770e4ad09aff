"""Target devices: the figures a roofline, a latency estimate and a deployment decision need.

Throughput is the GPU's (or CPU's) peak at its maximum clock, dense unless a key says `sparse`;
a power mode that names a lower GPU clock scales it. DLA figures are listed for users who place
layers on the DLA; the profiler's roofline uses the GPU. The `estimate` section holds the latency
model's constants (deploy/latency_model.py) with their provenance; a device file without one
takes its kind's defaults below.

A device file in the user's folder (`user_device_dir()`, written by `edge devices calibrate`)
overrides the shipped file of the same name.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, PrivateAttr, model_validator

from at2seld_edge.deploy.specs import load_named_yaml, shipped_names
from at2seld_edge.errors import EdgeError, ErrorKind
from at2seld_edge.schema import Strict as _Strict

PACKAGE = "at2seld_edge.devices"
USER_DIR_ENV = "AT2SELD_EDGE_DEVICES"  # overrides the user-level device folder (tests, shared setups)
FAMILIES = {"jetson-orin": "jetson-orin-nano-8gb"}  # family name -> its smallest common module
CPU_DEVICE = "x86-cpu"  # the device spec ONNX Runtime on the CPU calibrates unless told another
Precision = Literal["fp32", "fp16", "int8"]
# A device name is a file name in the user's device folder: no folder part, no leading dot.
DEVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")


def device_name_problem(name: str) -> str | None:
    """Why `name` would put a user device file outside the user device folder, if it would."""
    if DEVICE_NAME.fullmatch(name) and not name.endswith((".yaml", ".yml")):
        return None
    return f"{name!r} is not a device name (letters, digits, '.', '_', '+', '-'; no folder part)"


def _device_name(name: str) -> str:
    problem = device_name_problem(name)
    if problem:
        raise ValueError(problem)
    return name


DeviceName = Annotated[str, AfterValidator(_device_name)]


def check_device_name(name: str, flag: str = "--name") -> str:
    problem = device_name_problem(name)
    if problem:
        raise EdgeError(f"{flag} {problem}; a device file is written as NAME.yaml in the user device folder",
                        ErrorKind.USAGE)
    return name


class GpuSpec(_Strict):
    architecture: str
    compute_capability: str = Field(pattern=r"^\d+\.\d+$")
    cuda_cores: int = Field(gt=0)
    tensor_cores: int = Field(ge=0)
    max_clock_mhz: float = Field(gt=0)
    match: list[str] = []  # substrings of the CUDA device name that mean "this is the target" (e.g. H100)


class CpuSpec(_Strict):
    cores: int = Field(gt=0)
    clock_mhz: float = Field(gt=0)
    isa: list[str] = []


class Throughput(_Strict):
    fp32_tflops: float = Field(gt=0)
    fp16_tflops: float = Field(gt=0)  # dense (tensor cores on a GPU)
    int8_tops: float = Field(gt=0)  # dense
    int8_tops_sparse: float | None = Field(None, gt=0)  # 2:4 structured sparsity
    fp8_tflops: float | None = Field(None, gt=0)  # dense; None: no FP8 tensor cores (or not recorded)
    fp4_tflops: float | None = Field(None, gt=0)  # dense; None: no FP4 tensor cores (or not recorded)


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
    watts: float | None = Field(None, gt=0)  # None: no power budget (a MAXN mode)
    gpu_clock_mhz: float | None = Field(None, gt=0)  # None: not published; the maximum is assumed
    memory_bandwidth_gbs: float | None = Field(None, gt=0)
    jetpack_min: str | None = None
    default: bool = False  # the mode the module boots in
    source: str | None = None


class JetPackRelease(_Strict):
    version: str
    l4t: str | None = None  # Jetson Linux
    tensorrt: str
    cuda: str
    python: str | None = None  # the system python3 (JetPack's TensorRT bindings are built for it)
    ubuntu: str | None = None
    source: str | None = None


class EstimateSpec(_Strict):
    """The latency model's constants: a layer costs max(2 * MACs / (peak * compute_efficiency),
    bytes / (bandwidth * memory_efficiency), per_layer_us); an inference adds per_inference_us."""

    per_layer_us: float = Field(gt=0, le=10_000)  # a layer's floor: launch, ramp and tail of a small kernel
    per_inference_us: float = Field(ge=0, le=1_000_000)  # enqueue, copies in and out, synchronisation
    compute_efficiency: float = Field(gt=0, le=1)  # fraction of peak MACs a batch-1 layer reaches
    memory_efficiency: float = Field(gt=0, le=8)  # fraction of the file's DRAM bandwidth (> 1: data stays in cache)
    executor: Literal["tensorrt", "onnxruntime"] | None = None  # None: TensorRT on a GPU, ONNX Runtime on a CPU
    source: str = Field(min_length=1)  # provenance: a published benchmark and the derivation, or the fit


# A device file without an `estimate` section takes its kind's: a GPU the constants fitted on
# issue 13's H100 table (devices/nvidia-h100.yaml), a Jetson those derived for the Orin Nano
# (devices/jetson-orin-nano-8gb.yaml), a CPU those fitted on this toolkit's CI machine
# (devices/x86-cpu.yaml). Each file's comment gives the derivation.
KIND_DEFAULTS = {
    "gpu": EstimateSpec(per_layer_us=11.5, per_inference_us=50.0, compute_efficiency=0.4, memory_efficiency=0.7,
                        source="default for discrete GPUs: devices/nvidia-h100.yaml's, fitted on issue 13's H100 table"),
    "jetson": EstimateSpec(per_layer_us=20.0, per_inference_us=150.0, compute_efficiency=0.4, memory_efficiency=0.7,
                           source="default for Jetson modules: devices/jetson-orin-nano-8gb.yaml's derivation"),
    "cpu": EstimateSpec(per_layer_us=9.3, per_inference_us=17.0, compute_efficiency=0.97, memory_efficiency=0.98,
                        source="default for CPUs: devices/x86-cpu.yaml's, fitted on the CI machine kind"),
}


class DeviceSpec(_Strict):
    name: DeviceName
    family: str
    kind: Literal["jetson", "gpu", "cpu"]
    description: str
    gpu: GpuSpec | None = None
    cpu: CpuSpec | None = None
    throughput: Throughput
    dla: DlaSpec
    memory: MemorySpec
    power_modes: list[PowerMode] = []
    jetpack: list[JetPackRelease] = []  # oldest first; the last is the one a build targets by default
    jetpack_newer: list[JetPackRelease] = []  # releases after that default, not yet build targets
    estimate: EstimateSpec | None = None
    _origin: str = PrivateAttr("")

    @property
    def origin(self) -> str:
        """The file this spec was read from: shipped, a user override, or a path."""
        return self._origin or f"device {self.name}"

    def estimate_constants(self) -> EstimateSpec:
        return self.estimate or KIND_DEFAULTS[self.kind]

    def executor(self) -> str:
        return self.estimate_constants().executor or ("onnxruntime" if self.kind == "cpu" else "tensorrt")

    def clock_ratio(self, power_mode: str | None = None) -> float:
        """How much slower than at its maximum clock this power mode runs a clock-bound kernel."""
        return self.peak_ops_per_s("fp32") / self.peak_ops_per_s("fp32", power_mode)

    @model_validator(mode="after")
    def _processor(self) -> "DeviceSpec":
        if self.kind == "cpu" and self.cpu is None:
            raise ValueError("a cpu device needs a `cpu` section")
        if self.kind != "cpu" and self.gpu is None:
            raise ValueError(f"a {self.kind} device needs a `gpu` section")
        if sum(m.default for m in self.power_modes) > 1:
            raise ValueError("more than one power mode says `default: true`")
        versions = [r.version for r in self.jetpack + self.jetpack_newer]
        if len(set(versions)) != len(versions):
            raise ValueError(f"a JetPack release is listed twice ({', '.join(versions)})")
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


def user_device_dir() -> Path:
    """Where `edge devices calibrate` writes: $AT2SELD_EDGE_DEVICES, else
    $XDG_CONFIG_HOME/at2seld-edge/devices, else ~/.config/at2seld-edge/devices."""
    if os.environ.get(USER_DIR_ENV):
        return Path(os.environ[USER_DIR_ENV])
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "at2seld-edge" / "devices"


def user_device_names() -> list[str]:
    root = user_device_dir()
    return sorted(p.stem for p in root.glob("*.yaml")) if root.is_dir() else []


def load_device(name_or_path: str | Path) -> DeviceSpec:
    """A device name (the user's override first, then the shipped file), a family name
    (`jetson-orin`) or a path to a device YAML; `origin` says which file it was."""
    name = FAMILIES.get(str(name_or_path), str(name_or_path))
    user = user_device_dir() / f"{name}.yaml"
    if "/" not in name and not name.endswith((".yaml", ".yml")) and (user.exists() or user.is_symlink()):
        spec, origin = _user_override(user, name), f"user override {user}"
    elif name in device_names() and not Path(name).exists():
        spec, origin = load_named_yaml(name, PACKAGE, DeviceSpec, "device"), f"shipped devices/{name}.yaml"
    else:
        spec, origin = load_named_yaml(name_or_path, PACKAGE, DeviceSpec, "device", FAMILIES), f"file {name_or_path}"
    spec._origin = origin
    return spec


def _user_override(path: Path, name: str) -> DeviceSpec:
    """A user device file, which must be a file and carry the name it overrides: one that is not
    is refused (ignoring it would estimate with another device's figures without a word)."""
    if not path.is_file():
        raise EdgeError(f"{path}: a user device override that is not a file; remove it or write the {name} device "
                        "file there (edge devices calibrate)")
    spec = load_named_yaml(path, PACKAGE, DeviceSpec, "device")
    if spec.name != name:
        raise EdgeError(f"{path}: a user device override named {spec.name!r} in the file of {name!r}; an override "
                        f"must carry its file's name (rename the file to {spec.name}.yaml or set `name: {name}`)")
    return spec

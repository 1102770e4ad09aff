"""A stand-in of cuda-python's runtime API (`cuda.bindings.runtime`) on host memory, for the
TensorRT stand-in's runs: "device" buffers are host buffers whose addresses the engine stand-in
reads and writes, copies are memmove, streams do nothing, and the one "GPU" has the name and
compute capability a test gives it. Only the calls the toolkit makes are here; this is a fake of
the CUDA side so that the TensorRT side can run, not a checked surface like standin.py."""

from __future__ import annotations

import ctypes
import enum
import sys
import types
from dataclasses import dataclass


class cudaError_t(enum.IntEnum):  # noqa: N801 (cuda-python's names)
    cudaSuccess = 0
    cudaErrorInvalidValue = 1


class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3


@dataclass
class cudaDeviceProp:  # noqa: N801
    name: bytes
    major: int
    minor: int


def make_runtime(gpu_name: str = "Orin", compute_capability: str = "8.7") -> types.ModuleType:
    rt = types.ModuleType("cuda.bindings.runtime", __doc__)
    buffers: dict[int, ctypes.Array] = {}
    major, minor = (int(x) for x in compute_capability.split("."))
    rt.cudaError_t, rt.cudaMemcpyKind, rt.buffers = cudaError_t, cudaMemcpyKind, buffers
    ok = cudaError_t.cudaSuccess

    def cudaMalloc(size):  # noqa: N802
        buf = ctypes.create_string_buffer(max(int(size), 1))
        buffers[ctypes.addressof(buf)] = buf
        return ok, ctypes.addressof(buf)

    def cudaFree(ptr):  # noqa: N802
        return (ok,) if buffers.pop(int(ptr), None) is not None else (cudaError_t.cudaErrorInvalidValue,)

    def cudaMemcpyAsync(dst, src, count, kind, stream):  # noqa: N802
        ctypes.memmove(int(dst), int(src), int(count))
        return (ok,)

    rt.cudaMalloc, rt.cudaFree, rt.cudaMemcpyAsync = cudaMalloc, cudaFree, cudaMemcpyAsync
    rt.cudaStreamCreate = lambda: (ok, 1)
    rt.cudaStreamSynchronize = lambda stream: (ok,)
    rt.cudaGetDeviceProperties = lambda device: (ok, cudaDeviceProp(gpu_name.encode(), major, minor))
    return rt


def install(monkeypatch, runtime: types.ModuleType) -> None:
    """Make `import cuda.bindings.runtime` give `runtime` for this test."""
    cuda, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
    cuda.bindings, bindings.runtime = bindings, runtime
    for name, module in (("cuda", cuda), ("cuda.bindings", bindings), ("cuda.bindings.runtime", runtime)):
        monkeypatch.setitem(sys.modules, name, module)

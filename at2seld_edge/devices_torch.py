"""Where torch runs: `--device auto|cpu|cuda[:N]` resolved against this machine, and a model
called on that device from code that speaks numpy on the CPU (evaluation, threshold
calibration).

`auto` is CUDA where torch sees a GPU (under torchrun, the GPU of the process's local rank),
else the CPU. `cuda` where torch sees none is one clear error, a USAGE error (exit 2) like
`--device cuda` of the ONNX Runtime commands: the flag, not a file, is what the user changes.
"""

from __future__ import annotations

import os
import re
from contextlib import nullcontext
from typing import Annotated, Any

import torch
from pydantic import AfterValidator

from at2seld_edge.errors import EdgeError, ErrorKind

DEVICE_FLAG = re.compile(r"auto|cpu|cuda(:\d+)?")


def _device_flag(value: str) -> str:
    if not DEVICE_FLAG.fullmatch(value):
        raise ValueError("expected auto, cpu, cuda or cuda:N")
    return value


TorchDevice = Annotated[str, AfterValidator(_device_flag)]  # an options field named `device`


def _no_cuda_reason() -> str:
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return "torch sees no GPU" + (f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else "")


def resolve_device(flag: str, local_rank: int = 0, local_processes: int = 1) -> torch.device:
    """The torch device a `--device` flag names on this machine. Under torchrun
    (`local_processes` > 1 on this node) `cuda` and `auto` mean the GPU of the local rank, and
    `cuda:N` is refused: every process would train on the same GPU."""
    if not DEVICE_FLAG.fullmatch(flag):
        raise EdgeError(f"--device {flag!r}: expected auto, cpu, cuda or cuda:N", ErrorKind.USAGE)
    if flag == "cpu" or (flag == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise EdgeError(f"--device {flag}: no CUDA device here ({_no_cuda_reason()}); use --device cpu or auto",
                        ErrorKind.USAGE)
    count = torch.cuda.device_count()
    if ":" in flag:
        if local_processes > 1:
            raise EdgeError(f"--device {flag}: torchrun started {local_processes} processes on this node; give "
                            "--device cuda and each takes the GPU of its local rank", ErrorKind.USAGE)
        index = int(flag.split(":")[1])
    else:
        index = local_rank
    if index >= count:
        what = f"--device {flag}" if ":" in flag else f"local rank {local_rank}"
        raise EdgeError(f"{what}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})",
                        ErrorKind.USAGE)
    return torch.device("cuda", index)


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed precision on `device` in `dtype`; none for None."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


class DeviceModel:
    """A model on `device` (moved there), called like the CPU model: CPU tensors in, CPU float32
    tensors out, so `predict_clips` and the decoders run unchanged on any device."""

    def __init__(self, model: torch.nn.Module, device: torch.device | str = "cpu",
                 amp_dtype: torch.dtype | None = None):
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.config = model.config
        self.amp_dtype = amp_dtype

    def eval(self) -> "DeviceModel":
        self.model.eval()
        return self

    def __call__(self, audio: torch.Tensor) -> dict[str, Any]:
        with autocast(self.device, self.amp_dtype):
            out = self.model(audio.to(self.device, non_blocking=True))
        return {k: v.float().cpu() for k, v in out.items()}


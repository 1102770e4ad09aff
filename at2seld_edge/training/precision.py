"""`--amp bf16|fp16|off`: autocast for the training step, with a gradient scaler for fp16.

The DSP front-ends (STFT, mel filterbank, logarithm, spatial descriptors) stay in FP32 under
autocast: a power spectrum's quiet bins, then their logarithm, do not survive 8 bits of
mantissa. Everything after them runs in the autocast dtype where torch's autocast lists allow.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from at2seld_edge.devices_torch import autocast
from at2seld_edge.errors import EdgeError, ErrorKind
from at2seld_edge.model.backbones.base import LogmelExtractor, SpectrogramExtractor
from at2seld_edge.model.frontend import Frontend

AmpMode = Literal["bf16", "fp16", "off"]
AMP_DTYPES: dict[str, torch.dtype | None] = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}
FP32_MODULES = (Frontend, SpectrogramExtractor, LogmelExtractor)


def check_amp(amp: str, device: torch.device) -> None:
    if amp == "fp16" and device.type != "cuda":
        raise EdgeError("--amp fp16: needs a CUDA device (its gradient scaler is CUDA's); use --amp bf16 on a CPU",
                        ErrorKind.USAGE)
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise EdgeError(f"--amp bf16: {torch.cuda.get_device_name(device)} has no bfloat16; use --amp fp16",
                        ErrorKind.USAGE)


def _fp32_forward(module: nn.Module) -> None:
    inner = module.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        x = next((a for a in args if isinstance(a, torch.Tensor)), None)
        if x is None or not torch.is_autocast_enabled(x.device.type):
            return inner(*args, **kwargs)
        args = tuple(a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)
        with torch.autocast(x.device.type, enabled=False):
            return inner(*args, **kwargs)

    module.forward = forward  # an instance attribute: the state dict and the class are untouched


class Precision:
    """The training step's arithmetic: autocast dtype, scaled backward (fp16), optimizer step."""

    def __init__(self, amp: str, device: torch.device):
        check_amp(amp, device)
        self.amp, self.device, self.dtype = amp, device, AMP_DTYPES[amp]
        self.scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None

    @property
    def skips_non_finite_steps(self) -> bool:
        """fp16's loss scaling overflows now and then by design: the scaler skips that step."""
        return self.scaler is not None

    def prepare(self, model: nn.Module) -> None:
        """Keep the model's DSP front-ends out of autocast."""
        if self.dtype is not None:
            for m in model.modules():
                if isinstance(m, FP32_MODULES):
                    _fp32_forward(m)

    def autocast(self):
        return autocast(self.device, self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Gradients in their true scale (before clipping)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)

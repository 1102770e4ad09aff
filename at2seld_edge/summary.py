"""Per-module parameters and MACs per second of audio, from torch's FLOP counter (MACs = FLOPs / 2)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from at2seld_edge.errors import EdgeError
from at2seld_edge.model import AT2SELD, MODULE_NAMES


@dataclass
class ModuleCost:
    module: str
    params: int
    trainable_params: int  # the rest are frozen constants (DFT kernels, mel filters)
    macs_per_second: float


@dataclass
class ModelSummary:
    config: str
    seconds: float
    modules: list[ModuleCost]
    total_params: int
    total_macs_per_second: float

    def to_dict(self) -> dict:
        return asdict(self)


def example_audio(model: AT2SELD, seconds: float, batch: int = 1, seed: int = 0) -> torch.Tensor:
    hop = model.config.audio.label_hop_samples
    samples = round(seconds * model.config.audio.sample_rate)
    if samples <= 0 or samples % hop:
        raise EdgeError(f"--seconds {seconds:g} is not a whole number of {model.config.audio.label_hop_s:g} s label hops")
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, 4, samples, generator=g)


def summarize(model: AT2SELD, seconds: float = 1.0) -> ModelSummary:
    model.eval()
    audio = example_audio(model, seconds)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(audio)
    counts = counter.get_flop_counts()
    root = type(model).__name__
    modules = []
    for name in MODULE_NAMES:
        flops = sum(counts.get(f"{root}.{name}", {}).values())
        params = list(getattr(model, name).parameters())
        modules.append(ModuleCost(name, sum(p.numel() for p in params),
                                  sum(p.numel() for p in params if p.requires_grad), flops / 2 / seconds))
    total_flops = sum(counts.get("Global", {}).values())
    return ModelSummary(model.config.name, seconds, modules, sum(p.numel() for p in model.parameters()),
                        total_flops / 2 / seconds)

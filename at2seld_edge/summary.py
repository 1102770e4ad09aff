"""Per-module parameters and MACs per second of audio, from torch's FLOP counter (MACs = FLOPs / 2),
and activation memory, from following every tensor an inference creates."""

from __future__ import annotations

import weakref
from collections import defaultdict
from dataclasses import asdict, dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from at2seld_edge.errors import EdgeError, ErrorKind
from at2seld_edge.limits import MAX_WINDOW_S
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
    if not 0 < seconds <= MAX_WINDOW_S:  # NaN fails too
        raise EdgeError(f"--seconds {seconds:g}: from one label hop to {MAX_WINDOW_S:g} s (one inference)",
                        ErrorKind.USAGE)
    samples = round(seconds * model.config.audio.sample_rate)
    if samples <= 0 or samples % hop:
        raise EdgeError(f"--seconds {seconds:g} is not a whole number of {model.config.audio.label_hop_s:g} s label hops")
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, 4, samples, generator=g)


def count_macs(module: torch.nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-accumulates of one forward call, as torch's FLOP counter sees them."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*inputs)
    return counter.get_total_flops() // 2


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


# ----------------------------------------------------------------------------- activation memory


@dataclass
class ActivationCost:
    """Bytes at FP32 of one inference; the profiler scales them to the deployment precision."""

    peak_bytes: int  # most bytes live at once while the module runs: what it allocated + its inputs
    written_bytes: int  # bytes of every tensor its ops produced (unfused traffic)


class _ActivationTracker(TorchDispatchMode):
    """Follows every tensor the ops produce until Python frees it (no_grad, so nothing else holds
    them), attributing each storage to the module that allocated it."""

    def __init__(self):
        super().__init__()
        self.current = OTHER
        self.live: dict[int, list] = {}  # storage address -> [bytes, module, references]
        self.live_bytes = 0
        self.live_by_module: dict[str, int] = defaultdict(int)
        self.input_bytes: dict[str, int] = defaultdict(int)
        self.peak_by_module: dict[str, int] = defaultdict(int)
        self.written: dict[str, int] = defaultdict(int)
        self.peak_total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                self._track(t)
        m = self.current
        self.peak_by_module[m] = max(self.peak_by_module[m], self.live_by_module[m] + self.input_bytes[m])
        self.peak_total = max(self.peak_total, self.live_bytes)
        return out

    def _track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        entry = self.live.get(key)
        if entry is None:
            entry = self.live[key] = [storage.nbytes(), self.current, 0]
            self.live_bytes += entry[0]
            self.live_by_module[self.current] += entry[0]
            self.written[self.current] += entry[0]
        entry[2] += 1
        weakref.finalize(t, self._release, key)

    def _release(self, key: int) -> None:
        entry = self.live.get(key)
        if entry is None:
            return
        entry[2] -= 1
        if entry[2] == 0:
            del self.live[key]
            self.live_bytes -= entry[0]
            self.live_by_module[entry[1]] -= entry[0]

    def enter(self, name: str, inputs) -> None:
        self.current = name
        self.input_bytes[name] = sum(t.nbytes for t in tree_flatten(inputs)[0] if isinstance(t, torch.Tensor))

    def leave(self) -> None:
        self.current = OTHER


OTHER = "other"  # ops outside the named modules (the glue in AT2SELD.forward)


def activation_costs(model: AT2SELD, seconds: float = 1.0) -> tuple[dict[str, ActivationCost], int]:
    """Per module ActivationCost, and the peak live bytes of the whole inference (input included)."""
    model.eval()
    audio = example_audio(model, seconds)
    tracker = _ActivationTracker()
    handles = []
    for name in MODULE_NAMES:
        module = getattr(model, name)
        handles.append(module.register_forward_pre_hook(lambda _m, inp, n=name: tracker.enter(n, inp)))
        handles.append(module.register_forward_hook(lambda *_: tracker.leave()))
    try:
        with torch.no_grad(), tracker:
            out = model(audio)
        del out
    finally:
        for h in handles:
            h.remove()
    costs = {name: ActivationCost(tracker.peak_by_module[name], tracker.written[name]) for name in MODULE_NAMES}
    return costs, tracker.peak_total + audio.nbytes

"""Causal layers and the state a stream carries from one hop to the next.

A causal model (`smoother.causal: true`) looks only back in time, in every part: the STFTs frame
each hop's samples with the samples before them (a frame ends where its hop ends), every conv
with a time extent pads the past only, the omni resampler's FIR filter is one-sided, the track
transformer attends to the last `history_frames` frames, and the GRU smoother runs forward. Whole
clips, those layers zero-pad the past. In a stream, each keeps its left context (the last
samples, frames, keys and values it needs) as explicit state: named tensors of fixed shape that a
stream step reads and returns, so the exported stream graph takes one hop of audio and the state,
and gives the hop's frames and the next state; ONNX Runtime, TensorRT and the C++ runtime run it
alike. A stream that starts from zeros computes exactly what the whole clip computes.

Per-layer caches rather than an input ring buffer (the cheaper of the two): the nano encoders
reach 1.1 s back (10 label frames plus the STFT window), so a ring buffer would re-run 1.2 s of
audio through the encoders for every 100 ms hop, more than a whole 1 s window costs, while the
per-layer caches hold two input frames per 3x3 conv and the STFTs' last n_fft - hop samples
(19k floats for nano; with the 30-frame key/value cache and the GRU state, 31k floats, 121 KiB)
and each hop computes only its own frames (about a tenth of a 1 s window).
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator, Mapping

import torch
import torch.nn.functional as F

from at2seld_edge.errors import EdgeError, ErrorKind

_ACTIVE: contextvars.ContextVar["StreamState | None"] = contextvars.ContextVar("at2seld_stream", default=None)


class StreamState:
    """The state one stream step reads (`given`, by name) and writes (`next`). A name not given
    starts as zeros: the zero padding of the whole-clip computation."""

    def __init__(self, given: Mapping[str, torch.Tensor] | None = None):
        self.given = dict(given or {})
        self.next: dict[str, torch.Tensor] = {}

    def read(self, key: str, shape: list[int], like: torch.Tensor) -> torch.Tensor:
        if key in self.next:
            raise EdgeError(f"stream state {key!r} is used by two layers", ErrorKind.CHECK)
        got = self.given.get(key)
        if got is None:
            return like.new_zeros(shape)
        if list(got.shape) != list(shape):
            raise EdgeError(f"stream state {key!r} has shape {list(got.shape)}, the layer needs {list(shape)}",
                            ErrorKind.USAGE)
        return got

    def left_context(self, key: str, x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
        """`x` with the last `size` entries before it along `dim` (from the previous step) in
        front; keeps the last `size` entries of the result for the next step."""
        dim = dim % x.dim()
        shape = list(x.shape)
        shape[dim] = size
        full = torch.cat([self.read(key, shape, x), x], dim)
        # a Gather of constant indices, not a Slice: TensorRT's parser adds ~20 shape layers per Slice
        keep = torch.arange(full.shape[dim] - size, full.shape[dim], device=x.device)
        self.next[key] = full.index_select(dim, keep)
        return full

    def carry(self, key: str, shape: list[int], like: torch.Tensor) -> torch.Tensor:
        """A recurrent state (zeros at the start); the layer `put`s its next value."""
        return self.read(key, shape, like)

    def put(self, key: str, value: torch.Tensor) -> None:
        self.next[key] = value


@contextlib.contextmanager
def streaming(state: StreamState) -> Iterator[StreamState]:
    """Within this block, the model computes one stream step: its input is the new audio, its
    causal layers read and write `state`."""
    token = _ACTIVE.set(state)
    try:
        yield state
    finally:
        _ACTIVE.reset(token)


def active_stream() -> StreamState | None:
    return _ACTIVE.get()


class CausalLayer:
    """Mixin of layers with a causal mode; `assign_stream_keys` names each by its module path,
    which is also the name of its stream state."""

    causal: bool = False
    state_key: str = ""


def assign_stream_keys(model: torch.nn.Module, causal: bool) -> None:
    for name, module in model.named_modules():
        if isinstance(module, CausalLayer):
            module.state_key, module.causal = name, causal


def left_context(layer: CausalLayer, x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """`size` entries of the past in front of `x` along `dim`: the stream state's within a stream
    step, else zeros (one ONNX Pad)."""
    if size == 0:
        return x
    state = active_stream()
    if state is not None:
        return state.left_context(layer.state_key, x, size, dim)
    dim = dim % x.dim()
    pad = [0, 0] * (x.dim() - 1 - dim) + [size, 0]
    return F.pad(x, pad)


class TimeConv2d(torch.nn.Conv2d, CausalLayer):
    """A Conv2d over (time, frequency) maps; causal, it pads the past `kernel - 1` frames instead of
    centring, and in a stream those frames are its cached input. Same parameters (and names) as
    Conv2d, so checkpoints and the BatchNorm fold see a Conv2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.causal:
            return super().forward(x)
        if self.stride[0] != 1 or self.dilation[0] != 1:
            raise EdgeError(f"{self.state_key}: a causal conv needs time stride and dilation 1", ErrorKind.USAGE)
        x = left_context(self, x, self.kernel_size[0] - 1, dim=2)
        return F.conv2d(x, self.weight, self.bias, self.stride, (0, self.padding[1]), self.dilation, self.groups)


def band_mask(queries: int, keys: int, window: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Additive attention mask (queries, keys): the last query sits at the last key; a query sees
    itself and the `window` keys before it, nothing after (-1e4: finite in FP16)."""
    q = torch.arange(queries) + (keys - queries)
    lag = q.unsqueeze(1) - torch.arange(keys).unsqueeze(0)
    return ((lag < 0) | (lag > window)).to(dtype) * MASKED


MASKED = -1.0e4

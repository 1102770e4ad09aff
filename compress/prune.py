"""Passive (data-free) structured pruning of the backbone's convolution filters.

A filter's importance comes from the weights alone. `passive` follows Singh & Plumbley,
"Efficient CNNs via Passive Filter Pruning" (IEEE/ACM TASLP 2025), the criterion behind E-PANNs:
each filter (out-channel slice, c_in x k x k) is reduced to its rank-1 approximation; its operator
norm (largest singular value) measures how much it can contribute to the output, and a filter
whose rank-1 direction nearly repeats that of a filter with a larger norm adds little the network
does not already compute. Importance = operator norm x distance (1 - |cosine|) to the nearest
filter of larger norm, so a redundant copy scores near zero and goes first. `l1` is the
entry-wise-norm baseline (Li et al., 2017).

Pruning works on the state dict: a filter's removal slices its conv, its BatchNorm and every
input that reads its channel (the next conv, a depthwise conv and its BatchNorm, the cross-stitch
unit, the fusion layer, the semantic-presence head). The result is a config with the new
`backbone.channels` and a state dict that loads strictly into the model that config builds: a
normal, smaller dense model that needs nothing of the original.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from at2seld_edge.config import ModelConfig
from at2seld_edge.errors import EdgeError
from at2seld_edge.model import AT2SELD, build_model
from at2seld_edge.model.backbones import BACKBONES
from at2seld_edge.registry import Registry

# ----------------------------------------------------------------------------- importance criteria

FilterImportance = Callable[[torch.Tensor], torch.Tensor]
IMPORTANCE: Registry[FilterImportance] = Registry("prune method")


@IMPORTANCE.register("passive")
def operator_norm_importance(weight: torch.Tensor) -> torch.Tensor:
    """weight (n_out, c_in, kh, kw) -> importance per output filter (n_out,)."""
    w = weight.detach().double()
    n = w.shape[0]
    mats = w.reshape(n, w.shape[1], -1)  # each filter as a c_in x (kh*kw) matrix
    u, s, vh = torch.linalg.svd(mats, full_matrices=False)
    norm = s[:, 0]  # operator norm
    rank1 = (u[:, :, :1] * vh[:, :1, :]).reshape(n, -1)  # unit-norm rank-1 direction
    cos = (rank1 @ rank1.T).abs()
    distance = (1.0 - cos).clamp_min(0.0)
    larger = norm.unsqueeze(0) > norm.unsqueeze(1)  # [i, j]: filter j has a larger norm than i
    tie = (norm.unsqueeze(0) == norm.unsqueeze(1)) & (torch.arange(n).unsqueeze(0) < torch.arange(n).unsqueeze(1))
    candidates = torch.where(larger | tie, distance, torch.full_like(distance, 1.0))
    nearest = candidates.min(dim=1).values
    return (norm * nearest).float()


@IMPORTANCE.register("l1")
def l1_importance(weight: torch.Tensor) -> torch.Tensor:
    return weight.detach().abs().flatten(1).sum(dim=1)


# ----------------------------------------------------------------------------- what a filter touches


@dataclass
class Slice:
    """Keep only the chosen channels of `key` along `dim`, within [offset, offset + n)."""

    key: str
    dim: int
    offset: int = 0


@dataclass
class PrunableConv:
    """One conv whose output filters may be removed, and every tensor indexed by them."""

    name: str
    weight_key: str
    channel_index: int  # position in backbone.channels
    slices: list[Slice] = field(default_factory=list)

    def filters(self, state: dict[str, torch.Tensor]) -> int:
        return state[self.weight_key].shape[0]


def _bn(prefix: str) -> list[Slice]:
    return [Slice(f"{prefix}.{p}", 0) for p in ("weight", "bias", "running_mean", "running_var")]


PlanBuilder = Callable[[AT2SELD], list[PrunableConv]]
PRUNING_PLANS: Registry[PlanBuilder] = Registry("pruning plan")


@PRUNING_PLANS.register("panns_cnn")
def panns_cnn_plan(model: AT2SELD) -> list[PrunableConv]:
    """CNN14 / CNN10 / E-PANNs: conv1 -> bn1 -> conv2 -> bn2 in each block, block to block."""
    n_blocks = len(model.backbone.stages)
    convs = []
    for i in range(1, n_blocks + 1):
        p = f"backbone.conv_block{i}"
        convs.append(PrunableConv(f"conv_block{i}.conv1", f"{p}.conv1.weight", 2 * (i - 1),
                                  [Slice(f"{p}.conv1.weight", 0), *_bn(f"{p}.bn1"), Slice(f"{p}.conv2.weight", 1)]))
        nxt = [Slice(f"backbone.conv_block{i + 1}.conv1.weight", 1)] if i < n_blocks else []
        convs.append(PrunableConv(f"conv_block{i}.conv2", f"{p}.conv2.weight", 2 * i - 1,
                                  [Slice(f"{p}.conv2.weight", 0), *_bn(f"{p}.bn2"), *nxt]))
    return convs


@PRUNING_PLANS.register("mobilenetv1")
def mobilenet_plan(model: AT2SELD) -> list[PrunableConv]:
    """The full conv and the 13 pointwise convs; a pointwise conv's filters are read by the next
    depthwise conv (its filters and groups go with them) and by the next pointwise conv."""
    n = len(model.backbone.stages)
    convs = []
    for i in range(n):
        p = f"backbone.features.{i}"
        own = [Slice(f"{p}.0.weight", 0), *_bn(f"{p}.2")] if i == 0 else [Slice(f"{p}.4.weight", 0), *_bn(f"{p}.5")]
        nxt = []
        if i + 1 < n:
            q = f"backbone.features.{i + 1}"
            nxt = [Slice(f"{q}.0.weight", 0), *_bn(f"{q}.2"), Slice(f"{q}.4.weight", 1)]
        key = f"{p}.0.weight" if i == 0 else f"{p}.4.weight"
        convs.append(PrunableConv(f"features.{i}", key, i, own + nxt))
    return convs


PLAN_OF_BACKBONE = {"cnn14": "panns_cnn", "cnn10": "panns_cnn", "epanns": "panns_cnn", "mobilenetv1": "mobilenetv1"}


def pruning_plan(model: AT2SELD) -> list[PrunableConv]:
    """The backbone's plan plus the readers of its output outside the backbone."""
    if model.config.backbone is None:
        raise EdgeError(f"no pruning plan for architecture {model.config.architecture!r}: it has no backbone to prune "
                        "(compress it with --int8 alone)")
    name = model.config.backbone.name
    if name not in PLAN_OF_BACKBONE:
        raise EdgeError(f"no pruning plan for backbone {name!r} (known: {', '.join(sorted(PLAN_OF_BACKBONE))})")
    convs = PRUNING_PLANS.get(PLAN_OF_BACKBONE[name])(model)
    cs = model.config.cross_stitch
    unit = [Slice("cross_stitch.unit.spa_to_sem.weight", 0), Slice("cross_stitch.unit.sem_to_spa.weight", 1),
            Slice("cross_stitch.unit.alpha_sem", 0)]
    last = convs[-1]
    last.slices.append(Slice("cross_stitch.fusion.0.weight", 1, 0))  # [sem | spa] columns: sem first
    if model.heads.semantic_presence is not None:
        last.slices.append(Slice("heads.semantic_presence.weight", 1))
    if cs.enabled and cs.position == "late":
        last.slices += unit
    elif cs.enabled and cs.position == "early":
        arch = BACKBONES.get(name)
        coupled = cs.early_backbone_stage * arch.stage_width - 1
        next(c for c in convs if c.channel_index == coupled).slices += unit
    return convs


# ----------------------------------------------------------------------------- pruning


@dataclass
class PruneResult:
    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    kept: dict[str, list[int]]  # conv name -> kept filter indices (of the original)
    method: str
    ratio: float

    def build(self) -> AT2SELD:
        model = build_model(self.config)
        model.load_state_dict(self.state_dict, strict=True)
        return model


def _apply(state: dict[str, torch.Tensor], s: Slice, keep: torch.Tensor, n_filters: int) -> None:
    t = state[s.key]
    idx = torch.cat([torch.arange(s.offset), keep + s.offset, torch.arange(s.offset + n_filters, t.shape[s.dim])])
    state[s.key] = t.index_select(s.dim, idx).clone()


def passive_filter_prune(model: AT2SELD, ratio: float | dict[str, float], method: str = "passive",
                         min_filters: int = 4) -> PruneResult:
    """Remove the least important `ratio` of each prunable conv's filters (one ratio for all, or
    per conv name); filters are ranked within their layer."""
    if isinstance(ratio, (int, float)) and not 0.0 < ratio < 1.0:
        raise EdgeError(f"--prune-ratio {ratio:g} is outside (0, 1)")
    importance = IMPORTANCE.get(method)
    plan = pruning_plan(model)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    channels = list(BACKBONES.get(model.config.backbone.name).channels(model.config.backbone))
    kept: dict[str, list[int]] = {}
    for conv in plan:
        r = ratio.get(conv.name, 0.0) if isinstance(ratio, dict) else ratio
        n = conv.filters(state)
        keep_n = min(n, max(min_filters, n - math.floor(r * n)))
        scores = importance(state[conv.weight_key])
        keep = torch.sort(torch.topk(scores, keep_n).indices).values
        for s in conv.slices:
            _apply(state, s, keep, n)
        kept[conv.name] = keep.tolist()
        channels[conv.channel_index] = keep_n
    b = model.config.backbone.model_copy(update={"channels": channels})
    cfg = model.config.model_copy(update={"backbone": b})
    cfg = type(cfg).model_validate(cfg.model_dump())  # re-validated, so the fingerprint is the new model's
    result = PruneResult(cfg, state, kept, method, ratio if isinstance(ratio, float) else float("nan"))
    result.build()  # proves the slices are consistent: strict load into the smaller model
    return result

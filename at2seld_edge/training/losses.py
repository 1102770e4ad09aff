"""Permutation-aware SELD loss over tracks.

For every (clip, frame, class) the K <= N active reference events sit in target tracks 0..K-1.
Each candidate assignment maps the N output tracks to reference events (or to "inactive"); the
loss of the best candidate is taken, independently per frame and class:

- `pit`: the N! permutations of (events, then inactive slots): exactly K tracks are active, the
  others are trained silent.
- `adpit` (auxiliary duplicating PIT, Shimada et al., ICASSP 2022): every surjective map of the N
  tracks onto the K events; with fewer events than tracks, events are duplicated so all tracks
  are active (decoding then merges same-class duplicates).

Per track: SED is binary cross-entropy (or focal loss, gamma > 0) of the track's class logit;
DOA is the squared error of the Cartesian vector, counted only where the candidate marks the
track active (activity-conditioned) unless `doa_supervision: all`, and averaged over the tracks
it is counted on.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import torch
import torch.nn.functional as F


@lru_cache(maxsize=None)
def candidate_maps(kind: str, n_tracks: int) -> torch.Tensor:
    """(K = 0..N, P, N) long: for K active events, P candidate maps track -> event index or -1.
    Lists shorter than P are padded by repeating their first map (the min is unaffected)."""
    per_k = []
    for k in range(n_tracks + 1):
        if kind == "pit":
            base = list(range(k)) + [-1] * (n_tracks - k)
            maps = sorted(set(itertools.permutations(base)))
        elif kind == "adpit":
            if k == 0:
                maps = [tuple([-1] * n_tracks)]
            else:
                maps = [m for m in itertools.product(range(k), repeat=n_tracks) if set(m) == set(range(k))]
        else:
            raise ValueError(f"unknown permutation kind {kind!r}")
        per_k.append(maps)
    p = max(len(m) for m in per_k)
    return torch.tensor([m + [m[0]] * (p - len(m)) for m in per_k], dtype=torch.long)


def focal_bce_with_logits(logits: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if gamma == 0:
        return bce
    p_t = torch.exp(-bce)  # probability given to the true label
    return (1 - p_t) ** gamma * bce


Term = tuple[torch.Tensor, torch.Tensor]  # (sum, count): a mean whose parts can be summed across processes


def mean(term: Term) -> torch.Tensor:
    return term[0] / term[1].clamp(min=1.0)


def seld_track_terms(sed_logits: torch.Tensor, doa: torch.Tensor, activity: torch.Tensor, doa_target: torch.Tensor,
                     kind: str = "pit", sed_weight: float = 1.0, doa_weight: float = 1.0, focal_gamma: float = 0.0,
                     doa_supervision: str = "active") -> dict[str, Term]:
    """The SED and DOA terms of `seld_track_loss` as (sum, count), so that a batch spread over
    processes can be normalized by its global counts."""
    b, t, n, c = activity.shape
    maps = candidate_maps(kind, n).to(activity.device)  # (N+1, P, N)
    k = activity.sum(dim=2).long().clamp(max=n)  # (B, T, C) active events per class
    cand = maps[k]  # (B, T, C, P, N)
    active = (cand >= 0).to(activity.dtype)  # candidate activity per output track
    src = cand.clamp(min=0)
    # reference DOA of the event each output track is mapped to: (B, T, C, P, N, 3)
    ref = doa_target.permute(0, 1, 3, 2, 4)  # (B, T, C, N, 3)
    idx = src.unsqueeze(-1).expand(*src.shape, 3)
    cand_doa = torch.gather(ref.unsqueeze(3).expand(-1, -1, -1, cand.shape[3], -1, -1), 4, idx)
    logits = sed_logits.permute(0, 1, 3, 2).unsqueeze(3)  # (B, T, C, 1, N)
    sed = focal_bce_with_logits(logits.expand_as(active), active, focal_gamma).mean(dim=-1)  # (B, T, C, P)
    pred = doa.permute(0, 1, 3, 2, 4).unsqueeze(3)  # (B, T, C, 1, N, 3)
    sq = ((pred - cand_doa * active.unsqueeze(-1)) ** 2).sum(dim=-1)  # (B, T, C, P, N)
    if doa_supervision == "active":
        sq = sq * active
    # candidate choice per (clip, frame, class) on the summed cost ...
    total = sed_weight * sed + doa_weight * sq.sum(dim=-1)
    best = total.argmin(dim=-1, keepdim=True)  # (B, T, C, 1)
    sed_best = sed.gather(-1, best)
    pick = best.unsqueeze(-1).expand(-1, -1, -1, 1, n)
    sq_best = sq.gather(3, pick).squeeze(3)  # (B, T, C, N)
    # ... but the DOA term is the mean over the supervised tracks only, so that silence (most of
    # the frames and classes) does not dilute it
    supervised = (active.gather(3, pick).sum() if doa_supervision == "active"
                  else torch.tensor(float(sq_best.numel()), device=sq_best.device))
    return {"sed": (sed_best.sum(), torch.tensor(float(sed_best.numel()), device=sed_best.device)),
            "doa": (sq_best.sum(), supervised.detach())}


def seld_track_loss(sed_logits: torch.Tensor, doa: torch.Tensor, activity: torch.Tensor, doa_target: torch.Tensor,
                    kind: str = "pit", sed_weight: float = 1.0, doa_weight: float = 1.0, focal_gamma: float = 0.0,
                    doa_supervision: str = "active") -> dict[str, torch.Tensor]:
    """sed_logits, activity (B, T, N, C); doa, doa_target (B, T, N, C, 3). Returns the total and
    its SED and DOA parts (each the mean over clips, frames and classes of the best candidate)."""
    terms = seld_track_terms(sed_logits, doa, activity, doa_target, kind, sed_weight, doa_weight, focal_gamma,
                             doa_supervision)
    sed, doa_part = mean(terms["sed"]), mean(terms["doa"])
    return {"loss": weighted_total({"sed": sed, "doa": doa_part}, sed_weight, doa_weight), "sed": sed, "doa": doa_part}


def weighted_total(means: dict[str, torch.Tensor], sed_weight: float, doa_weight: float,
                   semantic_weight: float = 0.0) -> torch.Tensor:
    """The total loss of its parts' means: SED and DOA, plus the semantic term where there is one."""
    total = sed_weight * means["sed"] + doa_weight * means["doa"]
    if "semantic" in means:
        total = total + semantic_weight * means["semantic"]
    return total


def semantic_presence_term(clip_logits: torch.Tensor, activity: torch.Tensor) -> Term:
    """`semantic_presence_loss` as (sum, count)."""
    present = (activity.amax(dim=(1, 2)) > 0).to(clip_logits.dtype)
    bce = F.binary_cross_entropy_with_logits(clip_logits, present, reduction="sum")
    return bce, torch.tensor(float(present.numel()), device=clip_logits.device)


def semantic_presence_loss(clip_logits: torch.Tensor, activity: torch.Tensor) -> torch.Tensor:
    """Clip-level class presence: a class is present if any track is active in any frame."""
    return mean(semantic_presence_term(clip_logits, activity))

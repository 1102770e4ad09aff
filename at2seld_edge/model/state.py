"""Strict state-dict matching with messages that name every wrong key."""

from __future__ import annotations

from typing import Mapping

import torch


def state_dict_problems(own: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor],
                        ignore: frozenset[str] = frozenset()) -> list[str]:
    """Missing, unexpected and shape-mismatched keys of `given` against `own`; [] when it fits."""
    missing = [k for k in own if k not in given]
    unexpected = [k for k in given if k not in own and k not in ignore]
    mismatched = [f"{k} {tuple(given[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in given and given[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch: {'; '.join(mismatched)}")
    return problems

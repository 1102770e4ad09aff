"""Deployment budgets: limits per module and in total, checked against a profile.

Latency is per label hop: a streaming deployment re-runs the model every `hop_s` on the last
`window_s` of audio, so one inference over `window_s` must finish within `latency_ms`. A module
that the budget does not name inherits the `default` entry of `modules`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from at2seld_edge.deploy.specs import load_named_yaml, shipped_names
from at2seld_edge.limits import MAX_WINDOW_S
from at2seld_edge.model import MODULE_NAMES
from at2seld_edge.schema import Strict as _Strict

PACKAGE = "at2seld_edge.profiles"
DEFAULT_KEY = "default"


class Limits(_Strict):
    """Every limit is optional; an absent one is not checked."""

    latency_ms: float | None = Field(None, gt=0)  # one inference over window_s
    latency_share: float | None = Field(None, gt=0, le=1)  # fraction of the total latency limit (modules only)
    peak_memory_mb: float | None = Field(None, gt=0)  # weights + peak live activations
    gmacs_per_second: float | None = Field(None, gt=0)  # per second of audio
    params_m: float | None = Field(None, gt=0)


class Budget(_Strict):
    name: str
    description: str
    hop_s: float = Field(0.1, gt=0, le=MAX_WINDOW_S)
    window_s: float = Field(1.0, gt=0, le=MAX_WINDOW_S)  # one inference; a dynamic bundle takes at most this
    target: str | None = None  # the device the budget was written for (informative)
    power_mode: str | None = None  # the roofline runs at this mode's clocks
    total: Limits
    modules: dict[str, Limits] = {}

    @field_validator("modules")
    @classmethod
    def _known_modules(cls, v: dict[str, Limits]) -> dict[str, Limits]:
        allowed = (DEFAULT_KEY, *MODULE_NAMES)
        for key in v:
            if key not in allowed:
                raise ValueError(f"unknown module {key!r} (expected one of: {', '.join(allowed)})")
        return v

    @field_validator("total")
    @classmethod
    def _no_share_in_total(cls, v: Limits) -> Limits:
        if v.latency_share is not None:
            raise ValueError("latency_share is a module limit (a share of total.latency_ms)")
        return v

    def module_limits(self, module: str) -> Limits:
        """The module's own limits, each missing one taken from `default`."""
        base = self.modules.get(DEFAULT_KEY, Limits())
        own = self.modules.get(module, Limits())
        merged = base.model_dump() | {k: v for k, v in own.model_dump().items() if v is not None}
        return Limits(**merged)

    def module_latency_limit_ms(self, module: str) -> float | None:
        lim = self.module_limits(module)
        limits = [x for x in (lim.latency_ms,
                              lim.latency_share * self.total.latency_ms
                              if lim.latency_share is not None and self.total.latency_ms is not None else None)
                  if x is not None]
        return min(limits) if limits else None


def budget_names() -> list[str]:
    return shipped_names(PACKAGE)


def load_budget(name_or_path: str | Path) -> Budget:
    return load_named_yaml(name_or_path, PACKAGE, Budget, "budget")

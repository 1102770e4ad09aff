"""How closely a deployed graph reproduces the PyTorch FP32 model: the one definition that `edge
compress` (choosing which modules go INT8), `edge build` (its golden check) and `edge verify`
(on the device) all judge by, under the same tolerances.

An FP32 backend must match the model number for number; FP16 and INT8 change numbers by design,
so they must match the SED decisions (probability above the class threshold) and the DOA angle
of the tracks the reference calls active, per input: at least `min_decision_agreement` of the
decisions equal, mean and 95th-percentile angle within the limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from at2seld_edge.evaluation.decode import sigmoid
from at2seld_edge.evaluation.metrics import angular_distance
from at2seld_edge.options import Int8Limits

GOLDEN_INPUTS = 3  # synthetic FOA scenes every bundle is checked on
GOLDEN_SEED = 20260


FP16_TOLERANCE = {"min_decision_agreement": 0.99, "max_mean_doa_error_deg": 2.0, "max_p95_doa_error_deg": 5.0}
# (tolerance key, Comparison attribute, how the value must relate to the limit)
LIMITS = (("max_abs_logit", "max_abs_logit", "<="), ("max_abs_doa", "max_abs_doa", "<="),
          ("min_decision_agreement", "decision_agreement", ">="),
          ("max_mean_doa_error_deg", "mean_doa_error_deg", "<="), ("max_p95_doa_error_deg", "p95_doa_error_deg", "<="))


def tolerances(precision: str, int8: dict | None = None) -> dict:
    """The limits a graph of `precision` is judged by (INT8 and best: `int8`, else the defaults)."""
    if precision == "fp32":
        return {"max_abs_logit": 1e-3, "max_abs_doa": 1e-3}
    if precision == "fp16":
        return dict(FP16_TOLERANCE)
    return dict(int8 or Int8Limits().int8_tolerance)


@dataclass
class Comparison:
    input: int
    max_abs_logit: float
    max_abs_doa: float
    decision_agreement: float
    mean_doa_error_deg: float
    p95_doa_error_deg: float
    failures: list[str] = field(default_factory=list)

    def severity(self, tol: dict) -> float:
        """How close to its limits this input is, the nearest limit counting: 1 at a limit, over 1
        past it (the agreement as its shortfall, 1 - agreement, against the limit's)."""
        ratios = []
        for key, attr, op in LIMITS:
            limit, value = tol.get(key), getattr(self, attr)
            if limit is not None:
                ratios.append(value / max(limit, 1e-12) if op == "<=" else (1 - value) / max(1 - limit, 1e-9))
        return max(ratios, default=0.0)


def compare(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], thresholds: np.ndarray, tol: dict,
            index: int = 0) -> Comparison:
    """One input: the outputs `got` against the reference's, under `tol`."""
    ref_on = sigmoid(ref["sed_logits"]) > thresholds
    got_on = sigmoid(got["sed_logits"]) > thresholds
    err = angular_distance(got["doa"][ref_on], ref["doa"][ref_on]) if ref_on.any() else np.zeros(1)
    c = Comparison(index, float(np.abs(got["sed_logits"] - ref["sed_logits"]).max()),
                   float(np.abs(got["doa"] - ref["doa"]).max()), float((ref_on == got_on).mean()),
                   float(err.mean()), float(np.percentile(err, 95)))
    for key, attr, op in LIMITS:
        limit, value = tol.get(key), getattr(c, attr)
        if limit is not None and not (value <= limit if op == "<=" else value >= limit):
            c.failures.append(f"input {index}: {key.removeprefix('max_').removeprefix('min_')} {value:.4g} "
                              f"(must be {op} {limit:g})")
    return c


def golden_inputs(seconds: float) -> list[np.ndarray]:
    """The golden scenes: the same for every bundle and for compression's INT8 choice."""
    from at2seld_edge.data.synth import DEFAULT_CLASSES, synthetic_scenes

    return synthetic_scenes(GOLDEN_INPUTS, seconds, GOLDEN_SEED, DEFAULT_CLASSES)

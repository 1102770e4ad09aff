"""Golden inputs and outputs, and the check that a backend reproduces them.

The golden outputs are the PyTorch FP32 model's (what the checkpoint computes). An FP32 backend
must match them number for number; FP16 and INT8 change numbers by design, so they must match
the SED decisions (probability above the class threshold) and the DOA angle of the tracks the
golden model calls active.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from at2seld_edge.evaluation.decode import sigmoid
from at2seld_edge.evaluation.metrics import angular_distance
from at2seld_edge.io import atomic_path, markdown_table
from at2seld_edge.model import OUTPUT_NAMES

TOLERANCES = {
    "fp32": {"max_abs_logit": 1e-3, "max_abs_doa": 1e-3},
    "fp16": {"min_decision_agreement": 0.99, "max_mean_doa_error_deg": 2.0, "max_p95_doa_error_deg": 5.0},
    "int8": {"min_decision_agreement": 0.95, "max_mean_doa_error_deg": 5.0, "max_p95_doa_error_deg": 15.0},
}
TOLERANCES["best"] = TOLERANCES["int8"]


def write_golden(model, audios: list[np.ndarray], path: Path) -> None:
    """Run the PyTorch model on each input; save inputs and outputs in one .npz (atomically)."""
    model = model.eval()
    outs = {k: [] for k in OUTPUT_NAMES}
    with torch.no_grad():
        for a in audios:
            o = model(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None])
            for k in OUTPUT_NAMES:
                outs[k].append(o[k][0].numpy())
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, audio=np.stack(audios).astype(np.float32), **{k: np.stack(v) for k, v in outs.items()})


def read_golden(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@dataclass
class Comparison:
    input: int
    max_abs_logit: float
    max_abs_doa: float
    decision_agreement: float
    mean_doa_error_deg: float
    p95_doa_error_deg: float
    failures: list[str] = field(default_factory=list)


def compare(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], thresholds: np.ndarray, tol: dict,
            index: int = 0) -> Comparison:
    """One golden input: the backend's outputs against the reference's, under `tol`."""
    ref_on = sigmoid(ref["sed_logits"]) > thresholds
    got_on = sigmoid(got["sed_logits"]) > thresholds
    err = angular_distance(got["doa"][ref_on], ref["doa"][ref_on]) if ref_on.any() else np.zeros(1)
    c = Comparison(index, float(np.abs(got["sed_logits"] - ref["sed_logits"]).max()),
                   float(np.abs(got["doa"] - ref["doa"]).max()), float((ref_on == got_on).mean()),
                   float(err.mean()), float(np.percentile(err, 95)))
    checks = [("max_abs_logit", c.max_abs_logit, "<="), ("max_abs_doa", c.max_abs_doa, "<="),
              ("min_decision_agreement", c.decision_agreement, ">="),
              ("max_mean_doa_error_deg", c.mean_doa_error_deg, "<="), ("max_p95_doa_error_deg", c.p95_doa_error_deg, "<=")]
    for key, value, op in checks:
        limit = tol.get(key)
        if limit is not None and not (value <= limit if op == "<=" else value >= limit):
            c.failures.append(f"input {index}: {key.removeprefix('max_').removeprefix('min_')} {value:.4g} "
                              f"(must be {op} {limit:g})")
    return c


@dataclass
class VerifyReport:
    backend: str
    precision: str
    tolerances: dict
    rows: list[Comparison]

    @property
    def passed(self) -> bool:
        return not any(r.failures for r in self.rows)

    @property
    def failures(self) -> list[str]:
        return [f for r in self.rows for f in r.failures]

    def table(self) -> tuple[list[str], list[list[str]]]:
        header = ["input", "max abs logit diff", "max abs DOA diff", "SED decisions agree", "mean DOA err deg",
                  "p95 DOA err deg", "result"]
        rows = [[str(r.input), f"{r.max_abs_logit:.2e}", f"{r.max_abs_doa:.2e}", f"{r.decision_agreement:.2%}",
                 f"{r.mean_doa_error_deg:.3f}", f"{r.p95_doa_error_deg:.3f}", "FAIL" if r.failures else "PASS"]
                for r in self.rows]
        return header, rows

    def markdown(self) -> str:
        tol = ", ".join(f"{k} {v:g}" for k, v in self.tolerances.items() if v is not None)
        return (f"verify: {self.backend}, {self.precision} bundle, tolerances: {tol}\n\n"
                + markdown_table(*self.table()) + "\n")

    def to_dict(self) -> dict:
        return {"backend": self.backend, "precision": self.precision, "tolerances": self.tolerances,
                "passed": self.passed, "rows": [asdict(r) for r in self.rows]}


def verify(runtime) -> VerifyReport:
    """Run every golden input of the runtime's bundle on its backend and compare."""
    m = runtime.manifest
    golden = read_golden(runtime.bundle.path(m.golden))
    tol = m.tolerances.model_dump()
    rows = []
    for i in range(len(golden["audio"])):
        got = runtime.infer(golden["audio"][i: i + 1])
        ref = {k: golden[k][i] for k in OUTPUT_NAMES}
        rows.append(compare(ref, {k: got[k][0] for k in OUTPUT_NAMES}, runtime.bundle.thresholds, tol, i))
    return VerifyReport(runtime.session.name, m.precision, tol, rows)

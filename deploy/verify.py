"""Golden inputs and outputs, and the check that a backend reproduces them.

The golden outputs are the PyTorch FP32 model's (what the checkpoint computes); the comparison
and its tolerances are `evaluation.agreement`'s, the definition compression judges INT8 by too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from at2seld_edge.evaluation.agreement import Comparison, compare, tolerances  # noqa: F401 (re-exported)
from at2seld_edge.io import atomic_path, markdown_table
from at2seld_edge.model import OUTPUT_NAMES

TOLERANCES = {p: tolerances(p) for p in ("fp32", "fp16", "int8", "best")}  # the defaults


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

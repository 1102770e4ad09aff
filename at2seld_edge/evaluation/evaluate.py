"""Score a checkpoint on a split, or existing output CSVs against references; calibrate thresholds."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from at2seld_edge.data.dataset import clip_targets, read_audio
from at2seld_edge.data.formats import LABEL_FORMATS, TrackTargets
from at2seld_edge.data.spec import Clip
from at2seld_edge.errors import EdgeError
from at2seld_edge.evaluation.decode import (decode, frames_from_events, frames_from_targets, predict_clip,
                                            read_output_csv, write_output_csv)
from at2seld_edge.evaluation.metrics import Frames, SeldMetrics2023, SeldMetrics2024, angular_distance
from at2seld_edge.io import atomic_write_text, markdown_table

THRESHOLD_GRID = tuple(round(x, 2) for x in np.arange(0.1, 0.91, 0.05))


@dataclass
class ClipOutput:
    clip: Clip
    probs: np.ndarray  # (T, N, C)
    doa: np.ndarray  # (T, N, C, 3)
    targets: TrackTargets


def predict_clips(model, clips: list[Clip], progress: Callable[[], None] | None = None) -> list[ClipOutput]:
    cfg = model.config
    hop = cfg.audio.label_hop_samples
    outs = []
    for clip in clips:
        probs, doa = predict_clip(model, read_audio(clip), hop)
        outs.append(ClipOutput(clip, probs, doa, clip_targets(clip, hop, cfg.num_classes, cfg.heads.n_tracks)))
        if progress:
            progress()
    return outs


def score_frames(pairs: list[tuple[Frames, Frames, int]], n_classes: int) -> SeldMetrics2023:
    m = SeldMetrics2023(n_classes)
    for pred, ref, n_frames in pairs:
        m.update(pred, ref, n_frames)
    return m


def score_outputs(outputs: list[ClipOutput], thresholds: np.ndarray) -> SeldMetrics2023:
    n_classes = outputs[0].probs.shape[-1]
    return score_frames([(decode(o.probs, o.doa, thresholds), frames_from_targets(o.targets), len(o.probs))
                         for o in outputs], n_classes)


def calibrate_thresholds(outputs: list[ClipOutput], grid: tuple[float, ...] = THRESHOLD_GRID) -> tuple[np.ndarray, np.ndarray]:
    """Per-class SED thresholds maximizing the location-aware F (20 degrees) on these outputs.
    Classes are decoded independently, so each class takes its own best grid value (ties: the
    value nearest 0.5). Returns (thresholds, best F per class)."""
    n_classes = outputs[0].probs.shape[-1]
    f_by_grid = np.stack([score_outputs(outputs, np.full(n_classes, th)).classwise()["F"] for th in grid])  # (G, C)
    g = np.asarray(grid)
    best = []
    for c in range(n_classes):
        top = np.flatnonzero(np.isclose(f_by_grid[:, c], f_by_grid[:, c].max()))
        best.append(top[np.argmin(np.abs(g[top] - 0.5))])
    best = np.array(best)
    return g[best], f_by_grid[best, np.arange(n_classes)]


def oracle_doa_error(outputs: list[ClipOutput]) -> float:
    """Mean DOA error with reference activity: each active reference event takes the closest of
    its class's predicted track vectors, whatever the SED says."""
    errs = []
    for o in outputs:
        t, n, c = np.nonzero(o.targets.activity)
        if len(t):
            ref = o.targets.doa[t, n, c]  # (K, 3)
            cand = o.doa[t, :, c]  # (K, N, 3)
            errs.append(angular_distance(cand, ref[:, None, :]).min(axis=1))
    return float(np.concatenate(errs).mean()) if errs else float("nan")


def classwise_table(classwise: dict[str, np.ndarray], classes: list[str]) -> str:
    keys = list(classwise)
    rows = [[name, *(f"{classwise[k][i]:.3f}" for k in keys)] for i, name in enumerate(classes)]
    return markdown_table(["class", *keys], rows) + "\n"


def write_report(out_dir: Path, results: dict, classwise: dict[str, np.ndarray], classes: list[str], extra: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "metrics.json", json.dumps({**results, **extra, "classwise": {
        name: {k: float(v[i]) for k, v in classwise.items()} for i, name in enumerate(classes)}}, indent=2))
    atomic_write_text(out_dir / "per_class.md", classwise_table(classwise, classes))


def evaluate_outputs(outputs: list[ClipOutput], thresholds: np.ndarray, classes: list[str], out_dir: Path,
                     oracle_activity: bool = False, extra: dict | None = None) -> dict:
    """Write one DCASE output CSV per clip, metrics.json and per_class.md; return the metrics."""
    pairs = []
    for o in outputs:
        pred = decode(o.probs, o.doa, thresholds)
        write_output_csv(out_dir / "output" / f"{Path(o.clip.name).name}.csv", pred)
        pairs.append((pred, frames_from_targets(o.targets), len(o.probs)))
    m = score_frames(pairs, len(classes))
    results = m.results()
    info = {"clips": len(outputs), "thresholds": [float(t) for t in thresholds], **(extra or {})}
    if oracle_activity:
        results["oracle_activity_DOA_error"] = oracle_doa_error(outputs)
    write_report(out_dir, results, m.classwise(), classes, info)
    return results


def evaluate_csv_dirs(pred_dir: Path, ref_dir: Path, fmt_name: str, n_classes: int | None, out_dir: Path | None) -> dict:
    """Score existing output CSVs against reference metadata CSVs of a label format (matched by
    file stem). With distances in both, the DCASE2024 metrics are added."""
    fmt = LABEL_FORMATS.get(fmt_name)
    n_classes = n_classes or len(fmt.classes)
    refs = {p.stem: p for p in sorted(Path(ref_dir).rglob("*.csv"))}
    preds = {p.stem: p for p in sorted(Path(pred_dir).rglob("*.csv"))}
    if not refs:
        raise EdgeError(f"{ref_dir}: no reference CSV files")
    missing = sorted(set(refs) - set(preds))
    if missing:
        raise EdgeError(f"{pred_dir}: no prediction for {len(missing)} reference clip(s): {', '.join(missing[:5])}")
    m23 = SeldMetrics2023(n_classes)
    m24 = SeldMetrics2024(n_classes) if fmt.has_distance else None
    for stem, ref_path in refs.items():
        ref = frames_from_events(fmt.read(ref_path, n_classes))
        pred = read_output_csv(preds[stem], n_classes, fmt.distance_unit_m or 1.0)
        n_frames = max([*ref, *pred, -1]) + 1
        m23.update(pred, ref, n_frames)
        if m24 is not None and all(d.distance is not None for dets in pred.values() for d in dets):
            m24.update(pred, ref, n_frames)
    results = {"dcase2023": m23.results()}
    if m24 is not None and m24.n_ref.sum():
        results["dcase2024"] = m24.results()
    if out_dir is not None:
        classes = list(fmt.classes)[:n_classes] + [f"class_{i}" for i in range(len(fmt.classes), n_classes)]
        write_report(Path(out_dir), results, m23.classwise(), classes, {"clips": len(refs)})
    return results

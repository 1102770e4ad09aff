"""DCASE SELD metrics, from the official definitions (Mesaros et al., WASPAA 2019; Politis et al.,
TASLP 2020; the DCASE 2022-2024 task 3 evaluation code).

`SeldMetrics2023`, used in DCASE 2022 and 2023: predictions and references are grouped into 1 s
segments of 10 label frames. Per segment and class, reference and predicted DOAs are matched
frame by frame with the Hungarian algorithm, the angular errors of each matched reference track
are averaged over the segment, and that track counts as a true positive if the average is within
20 degrees (else a spatial false positive). Extra predicted or reference tracks count as false
positives / negatives. Scores are macro-averaged over classes:
  ER   = (S + D + I) / N_ref            (substitutions, deletions, insertions per segment)
  F    = TP / (TP + FP_spatial + (FP + FN) / 2)      per class, then the mean
  LE   = mean angular error of matched tracks        per class (180 if none), then the mean
  LR   = matched / (matched + missed)                per class, then the mean
  SELD = mean(ER, 1 - F, LE / 180, 1 - LR)           per class, then the mean

`SeldMetrics2024` (DCASE 2024, with distance): frame-wise. A matched pair is a true positive if
its angular error is within 20 degrees and its relative distance error |d - d_ref| / d_ref within
1; DOAE and RDE average over matched pairs. As the current official scorer does, every class
counts in the macro averages of F, LR and SELD (a class never detected scores F 0), while DOAE,
DE and RDE average over the classes that have matched pairs. Per class, SELD = mean(1 - F,
DOAE / 180, RDE). Without predicted distances (`eval_distance=False`: our model has no distance
output) the distance threshold and RDE drop out and, as in the official code's 2023-style score
for that case, SELD = nanmean(ER, 1 - F, DOAE / 180, 1 - LR) per class (DOAE is NaN for a class
without matched pairs, so its SELD averages the other three), then the mean over classes.

Which frames are scored follows the official scorers too (`official_frame_count`): a clip is
scored up to its last *reference* frame index, exclusive, in whole 1 s segments for the 2023
metrics (so a segment containing that frame is scored whole) and frame by frame for 2024;
predictions past that point are not scored.

Frames are dicts `{frame: [Detection, ...]}`; a clip is scored with `update(pred, ref, n_frames)`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

EPS = np.finfo(float).eps
FRAMES_PER_SEGMENT = 10


@dataclass(frozen=True)
class Detection:
    cls: int
    track: int
    xyz: tuple[float, float, float]
    distance: float | None = None


Frames = dict[int, list[Detection]]


def angular_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Degrees between Cartesian vectors a (..., 3) and b (..., 3), any norms. (The official code
    adds 1e-10 under the square root, which makes a vector 0.0008 degrees from itself; clamping
    the norm instead keeps identical vectors at exactly 0.)"""
    a = a / np.maximum(np.sqrt((a ** 2).sum(-1, keepdims=True)), 1e-10)
    b = b / np.maximum(np.sqrt((b ** 2).sum(-1, keepdims=True)), 1e-10)
    return np.degrees(np.arccos(np.clip((a * b).sum(-1), -1.0, 1.0)))


def match(ref: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hungarian matching of reference and predicted DOAs (R, 3), (P, 3) by angular distance:
    (errors in degrees, reference rows, prediction rows) of the min(R, P) matched pairs."""
    cost = angular_distance(ref[:, None, :], pred[None, :, :])
    rows, cols = linear_sum_assignment(cost)
    return cost[rows, cols], rows, cols


class SeldMetrics2023:
    def __init__(self, n_classes: int, doa_threshold: float = 20.0):
        self.n = n_classes
        self.doa_threshold = doa_threshold
        z = lambda: np.zeros(n_classes)  # noqa: E731
        self.tp, self.fp, self.fp_spatial, self.fn, self.n_ref = z(), z(), z(), z(), z()
        self.total_de, self.de_tp, self.de_fn = z(), z(), z()
        self.s = self.d = self.i = 0

    @staticmethod
    def segments(frames: Frames, n_frames: int) -> list[dict[int, dict[int, list[np.ndarray]]]]:
        """[segment][class] -> {frame within segment: DOAs (K, 3)}."""
        n_seg = -(-n_frames // FRAMES_PER_SEGMENT)
        out: list[dict[int, dict[int, list]]] = [{} for _ in range(n_seg)]
        for f, dets in frames.items():
            if not 0 <= f < n_seg * FRAMES_PER_SEGMENT:
                continue
            seg = out[f // FRAMES_PER_SEGMENT]
            for det in dets:
                seg.setdefault(det.cls, {}).setdefault(f % FRAMES_PER_SEGMENT, []).append(det.xyz)
        return [{c: {f: np.array(v) for f, v in per.items()} for c, per in seg.items()} for seg in out]

    def update(self, pred: Frames, ref: Frames, n_frames: int) -> None:
        for p_seg, r_seg in zip(self.segments(pred, n_frames), self.segments(ref, n_frames)):
            loc_fn = loc_fp = 0
            for c in range(self.n):
                in_ref, in_pred = c in r_seg, c in p_seg
                n_ref_doas = max(len(v) for v in r_seg[c].values()) if in_ref else 0
                n_pred_doas = max(len(v) for v in p_seg[c].values()) if in_pred else 0
                self.n_ref[c] += n_ref_doas
                if in_ref and in_pred:
                    per_track: dict[int, list[float]] = {}
                    for f, ref_doas in r_seg[c].items():
                        if f in p_seg[c]:
                            errs, rows, _ = match(ref_doas, p_seg[c][f])
                            for e, r in zip(errs, rows):
                                per_track.setdefault(int(r), []).append(float(e))
                    if not per_track:
                        # reference and prediction never share a frame in this segment; the
                        # official code counts the predicted tracks as missed here
                        loc_fn += n_pred_doas
                        self.fn[c] += n_pred_doas
                        self.de_fn[c] += n_pred_doas
                        continue
                    for errs in per_track.values():
                        avg = sum(errs) / len(errs)
                        self.total_de[c] += avg
                        self.de_tp[c] += 1
                        if avg <= self.doa_threshold:
                            self.tp[c] += 1
                        else:
                            loc_fp += 1
                            self.fp_spatial[c] += 1
                    if n_pred_doas > n_ref_doas:
                        loc_fp += n_pred_doas - n_ref_doas
                        self.fp[c] += n_pred_doas - n_ref_doas
                    elif n_pred_doas < n_ref_doas:
                        loc_fn += n_ref_doas - n_pred_doas
                        self.fn[c] += n_ref_doas - n_pred_doas
                        self.de_fn[c] += n_ref_doas - n_pred_doas
                elif in_ref:
                    loc_fn += n_ref_doas
                    self.fn[c] += n_ref_doas
                    self.de_fn[c] += n_ref_doas
                elif in_pred:
                    loc_fp += n_pred_doas
                    self.fp[c] += n_pred_doas
            self.s += min(loc_fp, loc_fn)
            self.d += max(0, loc_fn - loc_fp)
            self.i += max(0, loc_fp - loc_fn)

    def classwise(self) -> dict[str, np.ndarray]:
        er = (self.s + self.d + self.i) / (self.n_ref.sum() + EPS)
        f = self.tp / (EPS + self.tp + self.fp_spatial + 0.5 * (self.fp + self.fn))
        le = np.where(self.de_tp > 0, self.total_de / (self.de_tp + EPS), 180.0)
        lr = self.de_tp / (EPS + self.de_tp + self.de_fn)
        seld = np.mean([np.full(self.n, er), 1 - f, le / 180.0, 1 - lr], axis=0)
        return {"ER": np.full(self.n, er), "F": f, "LE": le, "LR": lr, "SELD": seld}

    def results(self) -> dict[str, float]:
        cw = self.classwise()
        return {"ER": float(cw["ER"][0]), "F": float(cw["F"].mean()), "LE": float(cw["LE"].mean()),
                "LR": float(cw["LR"].mean()), "SELD": float(cw["SELD"].mean())}


class SeldMetrics2024:
    def __init__(self, n_classes: int, doa_threshold: float = 20.0, reldist_threshold: float = 1.0,
                 eval_distance: bool = True):
        self.n = n_classes
        self.eval_distance = eval_distance
        self.doa_threshold, self.reldist_threshold = doa_threshold, reldist_threshold
        z = lambda: np.zeros(n_classes)  # noqa: E731
        self.tp, self.fp, self.fp_spatial, self.fn, self.n_ref = z(), z(), z(), z(), z()
        self.total_ang, self.total_dist, self.total_reldist, self.de_tp, self.de_fn = z(), z(), z(), z(), z()
        self.s = self.d = self.i = 0

    def update(self, pred: Frames, ref: Frames, n_frames: int) -> None:
        for f in range(n_frames):
            loc_fn = loc_fp = 0
            p_by_c: dict[int, list[Detection]] = {}
            r_by_c: dict[int, list[Detection]] = {}
            for det in pred.get(f, []):
                p_by_c.setdefault(det.cls, []).append(det)
            for det in ref.get(f, []):
                r_by_c.setdefault(det.cls, []).append(det)
            for c in range(self.n):
                rs, ps = r_by_c.get(c, []), p_by_c.get(c, [])
                self.n_ref[c] += len(rs)
                if rs and ps:
                    errs, rows, cols = match(np.array([d.xyz for d in rs]), np.array([d.xyz for d in ps]))
                    rd = np.array([rs[r].distance or 0.0 for r in rows])
                    pd = np.array([ps[k].distance or 0.0 for k in cols])
                    dist_err = np.abs(rd - pd)
                    rel = dist_err / (rd + EPS)
                    k = len(errs)
                    far = rel > self.reldist_threshold if self.eval_distance else np.zeros(k, bool)
                    spatial_fp = int(np.sum((errs > self.doa_threshold) | far))
                    extra_fp, fn = max(0, len(ps) - len(rs)), max(0, len(rs) - len(ps))
                    self.total_ang[c] += errs.sum()
                    self.total_dist[c] += dist_err.sum()
                    self.total_reldist[c] += rel.sum()
                    self.tp[c] += k - spatial_fp
                    self.de_tp[c] += k
                    self.fp[c] += extra_fp
                    self.fp_spatial[c] += spatial_fp
                    self.fn[c] += fn
                    self.de_fn[c] += fn
                    loc_fp += extra_fp + spatial_fp
                    loc_fn += fn
                elif rs:
                    loc_fn += len(rs)
                    self.fn[c] += len(rs)
                    self.de_fn[c] += len(rs)
                elif ps:
                    loc_fp += len(ps)
                    self.fp[c] += len(ps)
            self.s += min(loc_fp, loc_fn)
            self.d += max(0, loc_fn - loc_fp)
            self.i += max(0, loc_fp - loc_fn)

    def classwise(self) -> dict[str, np.ndarray]:
        f = self.tp / (EPS + self.tp + self.fp_spatial + 0.5 * (self.fp + self.fn))
        with np.errstate(invalid="ignore", divide="ignore"):
            doae = np.where(self.de_tp > 0, self.total_ang / self.de_tp, np.nan)
            de = np.where(self.de_tp > 0, self.total_dist / self.de_tp, np.nan)
            rde = np.where(self.de_tp > 0, self.total_reldist / self.de_tp, np.nan)
        lr = self.de_tp / (EPS + self.de_tp + self.de_fn)
        er = np.full(self.n, (self.s + self.d + self.i) / (self.n_ref.sum() + EPS))
        parts = [1 - f, doae / 180.0, rde] if self.eval_distance else [er, 1 - f, doae / 180.0, 1 - lr]
        seld = _nanmean(np.stack(parts), axis=0)
        out = {"ER": er, "F": f, "DOAE": doae, "DE": de, "RDE": rde, "LR": lr, "SELD": seld}
        if not self.eval_distance:
            del out["DE"], out["RDE"]
        return out

    def results(self) -> dict[str, float]:
        """Macro averages as the official scorer takes them: F, LR and SELD over every class,
        the localization and distance errors over the classes that have matched pairs."""
        cw = self.classwise()
        return {k: float(v[0]) if k == "ER" else float(_nanmean(v) if k in ("DOAE", "DE", "RDE") else v.mean())
                for k, v in cw.items()}


def _nanmean(a: np.ndarray, axis: int | None = None):
    """np.nanmean without its warning for an all-NaN slice (the result is NaN, as it should be)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


def official_frame_count(ref: Frames) -> int:
    """How many frames of a clip the official DCASE scorers score: its largest reference frame
    index (they take `max(frames)` as the frame count, so that frame itself falls outside the
    frame-wise range); 0 for a clip without reference events."""
    return max(ref, default=0)

"""From model outputs to DCASE events and back: decoding with per-class thresholds, output CSVs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from at2seld_edge.data.formats import FrameEvent, TrackTargets, check_row, read_rows, sph_to_xyz, xyz_to_sph
from at2seld_edge.errors import EdgeError
from at2seld_edge.evaluation.metrics import Detection, Frames, angular_distance
from at2seld_edge.io import atomic_write_text
from at2seld_edge.limits import MAX_WINDOW_S  # long recordings are run in windows of at most this length

MERGE_DEG = 15.0  # same-class tracks closer than this are one source (duplicates of ADPIT training)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logits -> probabilities in float64 (no overflow warning, exact enough to compare with a threshold)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def predict_clip(model: torch.nn.Module, audio: np.ndarray, label_hop: int) -> tuple[np.ndarray, np.ndarray]:
    """audio (4, samples) -> SED probabilities (T, N, C) and DOA vectors (T, N, C, 3)."""
    n_frames = audio.shape[1] // label_hop
    cfg = model.config
    if n_frames == 0:  # shorter than one label frame: nothing to predict
        n, c = cfg.heads.n_tracks, cfg.num_classes
        return np.zeros((0, n, c), np.float32), np.zeros((0, n, c, 3), np.float32)
    window = int(MAX_WINDOW_S / cfg.audio.label_hop_s) * label_hop
    probs, doas = [], []
    model.eval()
    with torch.no_grad():
        for start in range(0, n_frames * label_hop, window):
            chunk = audio[:, start: min(start + window, n_frames * label_hop)]
            out = model(torch.from_numpy(np.ascontiguousarray(chunk))[None])
            probs.append(torch.sigmoid(out["sed_logits"][0]).numpy())
            doas.append(out["doa"][0].numpy())
    return np.concatenate(probs), np.concatenate(doas)


def decode(probs: np.ndarray, doa: np.ndarray, thresholds: np.ndarray) -> Frames:
    """Active tracks (probability above the class threshold) as detections; same-class tracks
    within MERGE_DEG of each other are merged (vectors averaged)."""
    frames: Frames = {}
    t_idx, n_idx, c_idx = np.nonzero(probs > thresholds[None, None, :])
    for t in np.unique(t_idx):
        dets = []
        sel = t_idx == t
        for c in np.unique(c_idx[sel]):
            tracks = n_idx[sel & (c_idx == c)]
            tracks = tracks[np.argsort(-probs[t, tracks, c])]
            kept: list[list[int]] = []
            for n in tracks:
                for group in kept:
                    if angular_distance(doa[t, group[0], c], doa[t, n, c]) < MERGE_DEG:
                        group.append(int(n))
                        break
                else:
                    kept.append([int(n)])
            for group in kept:
                v = doa[t, group, c].mean(axis=0)
                v = v / (np.linalg.norm(v) + 1e-12)
                dets.append(Detection(int(c), group[0], (float(v[0]), float(v[1]), float(v[2]))))
        frames[int(t)] = dets
    return frames


def frames_from_targets(t: TrackTargets, with_distance: bool = False) -> Frames:
    frames: Frames = {}
    for f, n, c in zip(*np.nonzero(t.activity)):
        v = t.doa[f, n, c]
        frames.setdefault(int(f), []).append(
            Detection(int(c), int(n), (float(v[0]), float(v[1]), float(v[2])),
                      float(t.distance[f, n, c]) if with_distance else None))
    return frames


def frames_from_events(events: list[FrameEvent]) -> Frames:
    frames: Frames = {}
    for e in events:
        frames.setdefault(e.frame, []).append(Detection(e.cls, e.source, e.xyz(), e.distance))
    return frames


def write_output_csv(path: Path, frames: Frames, with_distance: bool = False) -> None:
    """DCASE output format: frame, class, track, azimuth, elevation (degrees) [, distance (metres)]."""
    rows = []
    for f in sorted(frames):
        for d in sorted(frames[f], key=lambda d: (d.cls, d.track)):
            az, el = xyz_to_sph(np.array(d.xyz))
            row = f"{f},{d.cls},{d.track},{float(az):.2f},{float(el):.2f}"
            if with_distance:
                row += f",{d.distance or 0.0:.3f}"
            rows.append(row + "\n")
    atomic_write_text(path, "".join(rows))


def read_output_csv(path: Path, n_classes: int) -> Frames:
    """A prediction CSV: frame, class, track, azimuth, elevation [, distance in metres, as the
    official output format has it (only references are in centimetres)]; each row checked as a
    reference row is (`formats.check_row`)."""
    frames: Frames = {}
    for lineno, cols in read_rows(path, "prediction file"):
        if lineno == 1 and cols[0].lower() == "frame":
            continue
        if len(cols) not in (5, 6):
            raise EdgeError(f"{path}:{lineno}: expected 5 or 6 columns (frame, class, track, azimuth, elevation[, distance])")
        try:
            row = FrameEvent(int(cols[0]), int(cols[1]), int(cols[2]), float(cols[3]), float(cols[4]),
                             float(cols[5]) if len(cols) == 6 else None)
        except ValueError:
            raise EdgeError(f"{path}:{lineno}: not a number in {','.join(cols)!r}") from None
        check_row(path, lineno, row, n_classes, ident="track")
        frames.setdefault(row.frame, []).append(Detection(row.cls, row.source, row.xyz(), row.distance))
    return frames

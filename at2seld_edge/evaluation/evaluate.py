"""Score a checkpoint on a split, or existing output CSVs against references; calibrate thresholds."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from at2seld_edge.data.dataset import clip_targets, read_audio
from at2seld_edge.data.formats import LABEL_FORMATS, TrackTargets
from at2seld_edge.data.spec import Clip
from at2seld_edge.errors import EdgeError, ErrorKind
from at2seld_edge.evaluation.decode import (decode, frames_from_events, frames_from_targets, predict_clip,
                                            read_output_csv, write_output_csv)
from at2seld_edge.evaluation.metrics import (FRAMES_PER_SEGMENT, Frames, SeldMetrics2023, SeldMetrics2024,
                                             angular_distance, official_frame_count)
from at2seld_edge.io import atomic_write_text, markdown_table

THRESHOLD_GRID = tuple(round(x, 2) for x in np.arange(0.1, 0.91, 0.05))
CLASS_INDEX_LIMIT = 1024  # the largest class index a CSV may hold when the class count is read from the CSVs


@dataclass
class ClipOutput:
    clip: Clip
    probs: np.ndarray  # (T, N, C)
    doa: np.ndarray  # (T, N, C, 3)
    targets: TrackTargets


def clip_output(cfg, clip: Clip, probs: np.ndarray, doa: np.ndarray) -> ClipOutput:
    """A clip's predictions with its targets (predictions gathered from other processes too)."""
    return ClipOutput(clip, probs, doa, clip_targets(clip, cfg.audio.label_hop_samples, cfg.num_classes,
                                                     cfg.heads.n_tracks))


def predict_clips(model, clips: list[Clip], progress: Callable[[], None] | None = None) -> list[ClipOutput]:
    """`model`: the torch model on the CPU, or on any device as a `devices_torch.DeviceModel`,
    or an ONNX Runtime model."""
    hop = model.config.audio.label_hop_samples
    outs = []
    for clip in clips:
        outs.append(clip_output(model.config, clip, *predict_clip(model, read_audio(clip), hop)))
        if progress:
            progress()
    return outs


def score_frames(pairs: list[tuple[Frames, Frames, int]], n_classes: int) -> SeldMetrics2023:
    """DCASE 2022/2023 metrics of (prediction, reference, frames to score) clips."""
    m = SeldMetrics2023(n_classes)
    for pred, ref, n_frames in pairs:
        m.update(pred, ref, n_frames)
    return m


def score_outputs(outputs: list[ClipOutput], thresholds: np.ndarray) -> SeldMetrics2023:
    """The score training selects models and calibrates thresholds on: every frame of each clip,
    so a false alarm after a clip's last event counts (the official reports stop at the last
    reference frame; see `evaluate_outputs`)."""
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


@dataclass
class Scores:
    """One scoring run: the DCASE 2022/2023 metrics (and the 2024 ones where the references carry
    distances), per class and macro-averaged, with what the user should know about how."""

    results: dict[str, dict[str, float]]  # "dcase2023" / "dcase2024" -> macro averages
    classwise: dict[str, dict[str, np.ndarray]]
    classes: list[str]
    clips: int
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # oracle DOA error, thresholds, checkpoint, ...

    def to_json(self) -> dict:
        """The 2023 metrics at the top level (as training reports them), the 2024 ones nested."""
        out = {**self.results["dcase2023"], **{k: v for k, v in self.results.items() if k != "dcase2023"}}
        classwise = {fam: {name: {k: float(v[i]) for k, v in cw.items()} for i, name in enumerate(self.classes)}
                     for fam, cw in self.classwise.items()}
        return {**out, "clips": self.clips, **self.extra, "notes": self.notes,
                "classwise": classwise["dcase2023"], **({"classwise_2024": classwise["dcase2024"]}
                                                         if "dcase2024" in classwise else {})}

    def write(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "metrics.json", json.dumps(self.to_json(), indent=2))
        text = "\n".join(f"## {fam}\n\n{classwise_table(cw, self.classes)}" for fam, cw in self.classwise.items())
        atomic_write_text(out_dir / "per_class.md", text + "".join(f"\nNote: {n}\n" for n in self.notes))


class _Scorer:
    """Accumulates clips into the 2023 metrics and, for a format with distances, the 2024 ones."""

    def __init__(self, classes: list[str], with_2024: bool, eval_distance: bool):
        self.classes = classes
        self.m23 = SeldMetrics2023(len(classes))
        self.m24 = SeldMetrics2024(len(classes), eval_distance=eval_distance) if with_2024 else None
        self.clips = self.ignored_rows = 0
        self.seen = np.zeros(len(classes), bool)

    def add(self, pred: Frames, ref: Frames) -> None:
        n = official_frame_count(ref)
        self.m23.update(pred, ref, n)
        if self.m24 is not None:
            self.m24.update(pred, ref, n)
        scored_to = -(-n // FRAMES_PER_SEGMENT) * FRAMES_PER_SEGMENT  # whole segments (2023)
        self.ignored_rows += sum(len(d) for f, d in pred.items() if f >= scored_to)
        for dets in ref.values():
            self.seen[[d.cls for d in dets]] = True
        self.clips += 1

    def scores(self, notes: list[str], extra: dict) -> Scores:
        results, classwise = {"dcase2023": self.m23.results()}, {"dcase2023": self.m23.classwise()}
        if self.m24 is not None:
            results["dcase2024"], classwise["dcase2024"] = self.m24.results(), self.m24.classwise()
            if not self.m24.eval_distance:
                notes.append("dcase2024 metrics without distance: the predictions carry none, so RDE and the "
                             "distance threshold are left out and, as the official code does then, SELD = "
                             "nanmean(ER, 1 - F, DOAE / 180, 1 - LR) per class")
        if self.ignored_rows:
            notes.append(f"{self.ignored_rows} predicted rows after a clip's last reference frame were not scored, "
                         "as the official DCASE scorers do")
        absent = [c for c, s in zip(self.classes, self.seen) if not s]
        if absent:
            notes.append(f"class(es) never in the references: {', '.join(absent)}; the macro averages count them "
                         "(F 0, LE 180, LR 0), as the official code does")
        return Scores(results, classwise, self.classes, self.clips, notes, extra)


def classwise_table(classwise: dict[str, np.ndarray], classes: list[str]) -> str:
    keys = list(classwise)
    rows = [[name, *(f"{classwise[k][i]:.3f}" for k in keys)] for i, name in enumerate(classes)]
    return markdown_table(["class", *keys], rows) + "\n"


def evaluate_outputs(outputs: list[ClipOutput], thresholds: np.ndarray, classes: list[str], out_dir: Path,
                     oracle_activity: bool = False, extra: dict | None = None, with_2024: bool = False) -> Scores:
    """Write one DCASE output CSV per clip, metrics.json and per_class.md; return the scores.
    `with_2024`: the dataset's references carry distances (the model predicts none)."""
    scorer = _Scorer(classes, with_2024, eval_distance=False)
    for o in outputs:
        pred = decode(o.probs, o.doa, thresholds)
        write_output_csv(out_dir / "output" / f"{Path(o.clip.name).name}.csv", pred)
        scorer.add(pred, frames_from_targets(o.targets))
    info = {"thresholds": [float(t) for t in thresholds], **(extra or {})}
    if oracle_activity:
        info["oracle_activity_DOA_error"] = oracle_doa_error(outputs)
    scores = scorer.scores([], info)
    scores.write(out_dir)
    return scores


def class_names(label_format: str, n: int) -> list[str]:
    """The format's own class names where `n` is its class count, else neutral ones (class0, ...):
    a CSV row holds a class index only, so another count means another class list."""
    names = LABEL_FORMATS.get(label_format).classes
    return list(names) if n == len(names) else [f"class{i}" for i in range(n)]


def split_folders(ref: Path, split: str) -> list[Path]:
    """The subfolders of a metadata folder holding every split that make up `split`: the one
    named so, or those named `split-*` (dev-test takes dev-test-sony and dev-test-tau)."""
    subs = sorted(p for p in ref.iterdir() if p.is_dir()) if ref.is_dir() else []
    chosen = [p for p in subs if p.name == split or p.name.startswith(split + "-")]
    if not chosen:
        have = ", ".join(p.name for p in subs) or "none"
        raise EdgeError(f"{ref}: no split folder {split!r} or {split}-* (subfolders: {have})")
    return chosen


@dataclass
class CsvScoring:
    """What `edge evaluate --pred/--ref` scores: reference CSVs of a label format (all of them, the
    clips of one split of a dataset spec, or the split subfolders of --ref) against prediction
    CSVs of the same stems."""

    pred_dir: Path
    ref_dir: Path
    label_format: str
    classes: list[str] | None  # None: as many as the CSVs' largest class index says
    only: set[str] | None = None  # reference stems to score (a split); None: every CSV under ref_dir
    split_dirs: list[Path] | None = None  # the subfolders of ref_dir that hold the split; None: all of it

    @classmethod
    def resolve(cls, pred: Path, ref: Path | None, data: Path | None, split: str | None, label_format: str | None,
                num_classes: int | None) -> "CsvScoring":
        """What `--pred/--ref/--data/--split/--format/--classes` name, checked: a dataset spec
        gives the classes, the format, the references and which clips a split holds."""
        only = split_dirs = None
        if data is not None:
            from at2seld_edge.data.spec import load_dataset

            ds = load_dataset(data)
            if label_format is not None and label_format != ds.spec.format:
                raise EdgeError(f"--format {label_format}: {data} is {ds.spec.format}", ErrorKind.USAGE)
            if num_classes is not None and num_classes != len(ds.classes):
                raise EdgeError(f"--classes {num_classes}: {data} has {len(ds.classes)} classes", ErrorKind.USAGE)
            classes, label_format = ds.classes, ds.spec.format
            ref = ref or ds.root / ds.spec.metadata_dir
            only = ds.split_stems(split) if split is not None else None
        else:
            if ref is None:
                raise EdgeError("score CSVs with both --pred and --ref (or --pred and --data)", ErrorKind.USAGE)
            label_format = label_format or "dcase2023"
            classes = class_names(label_format, num_classes) if num_classes is not None else None
        for folder, flag in ((pred, "--pred"), (ref, "--ref")):
            if not folder.is_dir():
                raise EdgeError(f"{folder}: {flag} folder not found")
        if data is None and split is not None:
            split_dirs = split_folders(ref, split)
        return cls(pred, ref, label_format, classes, only, split_dirs)


def evaluate_csv_dirs(req: CsvScoring, out_dir: Path | None = None) -> Scores:
    """Score output CSVs against reference metadata CSVs, by file stem. References are read in
    their format's distance unit (cm for dcase2024); predictions carry metres, as in the official
    output format. With distances in the references, the DCASE2024 metrics are added."""
    fmt = LABEL_FORMATS.get(req.label_format)
    refs = {p.stem: p for root in (req.split_dirs or [Path(req.ref_dir)]) for p in sorted(root.rglob("*.csv"))
            if req.only is None or p.stem in req.only}
    preds = {p.stem: p for p in sorted(Path(req.pred_dir).rglob("*.csv"))}
    if not refs:
        raise EdgeError(f"{req.ref_dir}: no reference CSV files" + (" of the chosen split" if req.only else ""))
    missing = sorted(set(refs) - set(preds))
    if missing:
        raise EdgeError(f"{req.pred_dir}: no prediction for {len(missing)} reference clip(s): {', '.join(missing[:5])}"
                        + _split_hint(req))
    bound = len(req.classes) if req.classes is not None else CLASS_INDEX_LIMIT
    loaded = [(read_output_csv(preds[stem], bound), frames_from_events(fmt.read(path, bound)))
              for stem, path in refs.items()]
    notes: list[str] = []
    classes = req.classes if req.classes is not None else _classes_from_csvs(req, loaded, notes)
    eval_distance = fmt.has_distance and all(d.distance is not None for pred, _ in loaded
                                              for dets in pred.values() for d in dets)
    scorer = _Scorer(classes, fmt.has_distance, eval_distance)
    for pred, ref in loaded:
        scorer.add(pred, ref)
    scores = scorer.scores(notes, {"pred": str(req.pred_dir), "ref": str(req.ref_dir), "format": req.label_format})
    if out_dir is not None:
        scores.write(Path(out_dir))
    return scores


def _classes_from_csvs(req: CsvScoring, loaded: list[tuple[Frames, Frames]], notes: list[str]) -> list[str]:
    """Without --classes or --data: as many classes as the largest index in the CSVs says."""
    n = 1 + max((d.cls for frames in (f for pair in loaded for f in pair) for dets in frames.values() for d in dets),
                default=-1)
    if n == 0:
        raise EdgeError(f"{req.ref_dir}: no event in any reference or prediction CSV, so no class count; give "
                        "--classes (or --data)", ErrorKind.USAGE)
    classes = class_names(req.label_format, n)
    named = f"the {req.label_format} format's names" if classes[0] != "class0" else f"class0..class{n - 1}"
    notes.append(f"{n} classes, read from the CSVs (largest class index + 1), named {named}; --classes N (or "
                 "--data) sets the count when the last classes never occur")
    return classes


def _split_hint(req: CsvScoring) -> str:
    """For missing predictions under a --ref that holds several splits: how to choose one."""
    if req.split_dirs is not None or req.only is not None:
        return ""
    subs = sorted(p.name for p in Path(req.ref_dir).iterdir() if p.is_dir())
    return f" ({req.ref_dir} holds {', '.join(subs)}: choose a split with --split)" if len(subs) > 1 else ""

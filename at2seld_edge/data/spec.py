"""Dataset spec (validated YAML) and the clips of a split.

```yaml
name: synth-seld
format: dcase2023          # a label format (see formats.py)
root: .                    # relative to this file
audio_dir: foa_dev         # FOA wavs, mirrored by ...
metadata_dir: metadata_dev # ... the label CSVs (same sub-folders and stems)
sample_rate: 24000
classes: [tone, harmonic, ...]   # optional: the format's own list
splits:                    # by fold and/or room, from the file names
  train: {folds: [1, 2]}
  val: {folds: [3]}
  test: {folds: [4]}
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import soundfile as sf
from pydantic import Field, ValidationError, field_validator

from at2seld_edge.data.formats import LABEL_FORMATS, LABEL_HOP_S, FrameEvent, LabelFormat
from at2seld_edge.errors import EdgeError
from at2seld_edge.limits import MAX_ABS_SAMPLE, MAX_CLASSES, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from at2seld_edge.schema import Strict, format_validation_error
from at2seld_edge.yamlfile import read_yaml_mapping


class SplitSelector(Strict):
    folds: list[int] | None = None
    rooms: list[int] | None = None

    def selects(self, fold: int, room: int) -> bool:
        return (self.folds is None or fold in self.folds) and (self.rooms is None or room in self.rooms)


class DatasetSpec(Strict):
    name: str
    format: str
    root: str = "."
    audio_dir: str = "foa_dev"
    metadata_dir: str = "metadata_dev"
    sample_rate: int = Field(24000, ge=MIN_SAMPLE_RATE, le=MAX_SAMPLE_RATE)
    classes: list[str] | None = Field(None, max_length=MAX_CLASSES)
    splits: dict[str, SplitSelector]
    provenance: dict[str, Any] | None = None  # how the dataset was made (e.g. `edge data synth` settings)

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: str) -> str:
        return LABEL_FORMATS.require(v)

    @field_validator("classes")
    @classmethod
    def _distinct(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            dup = sorted({c for c in v if v.count(c) > 1})
            if dup:
                raise ValueError(f"class name(s) given twice: {', '.join(dup)}")
            if not v:
                raise ValueError("at least one class")
        return v

    @property
    def label_format(self) -> LabelFormat:
        return LABEL_FORMATS.get(self.format)

    @property
    def class_names(self) -> list[str]:
        return list(self.classes) if self.classes is not None else list(self.label_format.classes)


@dataclass
class Clip:
    name: str  # relative path without suffix, e.g. dev-train/fold1_room1_mix001
    wav: Path
    csv: Path
    fold: int
    room: int
    samples: int
    events: list[FrameEvent] = field(repr=False, default_factory=list)


@dataclass
class Dataset:
    spec: DatasetSpec
    spec_path: Path
    root: Path

    @property
    def classes(self) -> list[str]:
        return self.spec.class_names

    def split_stems(self, split: str) -> set[str]:
        """The label-file stems of a split, from the file names alone (for scoring CSVs)."""
        selector = self._selector(split)
        fmt = self.spec.label_format
        stems = {p.stem for p in (self.root / self.spec.metadata_dir).rglob("*.csv")}
        return {s for s in stems if selector.selects(*fmt.fold_room(s))}

    def _selector(self, split: str) -> SplitSelector:
        if split not in self.spec.splits:
            raise EdgeError(f"{self.spec_path}: no split {split!r} (splits: {', '.join(self.spec.splits)})")
        return self.spec.splits[split]

    def clips(self, split: str, skip_bad: bool = False, skipped: list[str] | None = None) -> list[Clip]:
        """The clips of a split, each checked (wav present, 4 channels, sample rate, labels parse).
        With skip_bad, bad clips are left out and described in `skipped`."""
        selector = self._selector(split)
        meta_dir = self.root / self.spec.metadata_dir
        audio_dir = self.root / self.spec.audio_dir
        if not meta_dir.is_dir():
            raise EdgeError(f"{self.spec_path}: metadata folder {meta_dir} not found")
        fmt = self.spec.label_format
        out: list[Clip] = []
        for csv in sorted(meta_dir.rglob("*.csv")):
            rel = csv.relative_to(meta_dir).with_suffix("")
            try:
                fold, room = fmt.fold_room(csv.stem)
                if not selector.selects(fold, room):
                    continue
                out.append(self._check_clip(str(rel), audio_dir / rel.with_suffix(".wav"), csv, fold, room))
            except EdgeError as e:
                if not skip_bad:
                    raise
                if skipped is not None:
                    skipped.append(str(e))
        if not out:
            raise EdgeError(f"{self.spec_path}: split {split!r} is empty (no clip matches {selector.model_dump(exclude_none=True)})")
        return out

    def _check_clip(self, name: str, wav: Path, csv: Path, fold: int, room: int) -> Clip:
        if not wav.is_file():
            raise EdgeError(f"{wav}: not a regular file (a FIFO, folder or device); give the wav itself" if wav.exists()
                            else f"{csv}: no audio file {wav} for these labels")
        try:
            info = sf.info(str(wav))
        except Exception as e:
            raise EdgeError(f"{wav}: not a readable audio file: {e}") from None
        if info.channels != 4:
            raise EdgeError(f"{wav}: {info.channels} channels, expected 4 (FOA: W, Y, Z, X)")
        if info.samplerate != self.spec.sample_rate:
            raise EdgeError(f"{wav}: sample rate {info.samplerate} Hz, the dataset spec says {self.spec.sample_rate} Hz")
        declared = declared_wav_frames(wav, info)
        if declared is not None and declared > info.frames:
            raise EdgeError(f"{wav}: truncated: its header declares {declared} frames, the file holds {info.frames}")
        events = self.spec.label_format.read(csv, len(self.classes))
        hop = round(LABEL_HOP_S * info.samplerate)
        late = [e.frame for e in events if e.frame * hop >= info.frames]
        if late:
            raise EdgeError(f"{csv}: label frame {min(late)} starts after the audio ends ({info.frames} samples = "
                            f"{info.frames / hop:.1f} frames of {wav.name}); {len(late)} such row(s)")
        return Clip(name, wav, csv, fold, room, info.frames, events)

    def check(self, skip_bad: bool = False, progress: Callable[[], None] | None = None) -> "DatasetCheck":
        """`edge data check`: every split's clips as training reads them, every sample read for
        non-finite values, and what is odd about the dataset as a whole (stray files, rooms in
        more than one split)."""
        report = DatasetCheck()
        rooms: dict[str, set[int]] = {}
        for split in self.spec.splits:
            clips = self.clips(split, skip_bad, report.skipped)
            good = []
            for clip in clips:
                bad = first_bad_sample(clip.wav)
                if bad is not None:
                    problem = f"{clip.wav}: {bad}"
                    if not skip_bad:
                        raise EdgeError(problem)
                    report.skipped.append(problem)
                    continue
                good.append(clip)
                report.files_read += 1
                if progress:
                    progress()
            rooms[split] = {c.room for c in good}
            report.warnings += [f"{c.csv}: no events (an empty label file): the clip trains and scores as silence; "
                                "check it was not cut short" for c in good if not c.events]
            report.splits[split] = SplitSummary(len(good), sum(c.samples for c in good) / self.spec.sample_rate,
                                                sum(len(c.events) for c in good))
        report.warnings += self._stray_files() + _shared_rooms(rooms)
        return report

    def _stray_files(self) -> list[str]:
        audio_dir, meta_dir = self.root / self.spec.audio_dir, self.root / self.spec.metadata_dir
        wavs = {p.relative_to(audio_dir).with_suffix("") for p in audio_dir.rglob("*.wav")} if audio_dir.is_dir() else set()
        csvs = {p.relative_to(meta_dir).with_suffix("") for p in meta_dir.rglob("*.csv")}
        out = [f"{audio_dir / w}.wav: no label CSV (not used)" for w in sorted(wavs - csvs)]
        return out + [f"{meta_dir / c}.csv: no wav" for c in sorted(csvs - wavs)]


@dataclass
class SplitSummary:
    clips: int
    seconds: float
    event_frames: int


@dataclass
class DatasetCheck:
    splits: dict[str, SplitSummary] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    files_read: int = 0


def _shared_rooms(rooms: dict[str, set[int]]) -> list[str]:
    names = list(rooms)
    return [f"splits {a} and {b} share room(s) {', '.join(map(str, sorted(rooms[a] & rooms[b])))}: one of them is "
            "then not scored in rooms the other never heard"
            for i, a in enumerate(names) for b in names[i + 1:] if rooms[a] & rooms[b]]


def declared_wav_frames(path: Path, info) -> int | None:
    """The frame count a RIFF/WAVE header declares (its `data` chunk size), to catch a file cut
    short in a copy; libsndfile itself reports only what is there. None for other containers."""
    if info.format != "WAV":
        return None
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            cid, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if cid == b"fmt ":
                fmt = f.read(size)
                block_align = int.from_bytes(fmt[12:14], "little")
                size -= len(fmt)
            elif cid == b"data":
                if size in (0, 0xFFFFFFFF) or not block_align:  # streaming writers leave it open
                    return None
                return size // block_align
            f.seek(size + (size & 1), 1)


def first_bad_sample(path: Path, block: int = 1 << 16) -> str | None:
    """What is wrong with the first bad sample of a float wav (PCM cannot hold one): NaN or Inf,
    or a magnitude past MAX_ABS_SAMPLE (float audio lies in [-1, 1]; 1e30 is a scaling bug that
    overflows the features)."""
    if sf.info(str(path)).subtype not in ("FLOAT", "DOUBLE"):
        return None
    start = 0
    for data in sf.blocks(str(path), blocksize=block, dtype="float64", always_2d=True):
        bad = np.argwhere(~(np.abs(data) <= MAX_ABS_SAMPLE))  # NaN compares False
        if len(bad):
            (i, ch), value = bad[0], data[tuple(bad[0])]
            if not np.isfinite(value):
                return f"non-finite sample (NaN or Inf) at sample {start + int(i)}, channel {int(ch)}"
            return (f"sample {value:.3g} at sample {start + int(i)}, channel {int(ch)}: float audio lies in [-1, 1]; "
                    f"past {MAX_ABS_SAMPLE:g} it is a scaling mistake")
        start += len(data)
    return None


def load_dataset(path: str | Path) -> Dataset:
    path = Path(path)
    if not path.exists():
        raise EdgeError(f"{path}: dataset spec not found")  # a folder or FIFO: read_text says which
    data = read_yaml_mapping(path, "dataset spec")
    try:
        spec = DatasetSpec.model_validate(data)
    except ValidationError as e:
        raise EdgeError(f"{path}: {format_validation_error(e, DatasetSpec)}") from None
    return Dataset(spec, path, (path.parent / spec.root).resolve())

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
from typing import Any

import soundfile as sf
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from at2seld_edge.config import format_validation_error
from at2seld_edge.data.formats import LABEL_FORMATS, FrameEvent, LabelFormat
from at2seld_edge.errors import EdgeError


class SplitSelector(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    folds: list[int] | None = None
    rooms: list[int] | None = None

    def selects(self, fold: int, room: int) -> bool:
        return (self.folds is None or fold in self.folds) and (self.rooms is None or room in self.rooms)


class DatasetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    format: str
    root: str = "."
    audio_dir: str = "foa_dev"
    metadata_dir: str = "metadata_dev"
    sample_rate: int = Field(24000, gt=0)
    classes: list[str] | None = None
    splits: dict[str, SplitSelector]
    provenance: dict[str, Any] | None = None  # how the dataset was made (e.g. `edge data synth` settings)

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: str) -> str:
        return LABEL_FORMATS.require(v)

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

    def clips(self, split: str, skip_bad: bool = False, skipped: list[str] | None = None) -> list[Clip]:
        """The clips of a split, each checked (wav present, 4 channels, sample rate, labels parse).
        With skip_bad, bad clips are left out and described in `skipped`."""
        if split not in self.spec.splits:
            raise EdgeError(f"{self.spec_path}: no split {split!r} (splits: {', '.join(self.spec.splits)})")
        selector = self.spec.splits[split]
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
            raise EdgeError(f"{csv}: no audio file {wav} for these labels")
        try:
            info = sf.info(str(wav))
        except Exception as e:
            raise EdgeError(f"{wav}: not a readable audio file: {e}") from None
        if info.channels != 4:
            raise EdgeError(f"{wav}: {info.channels} channels, expected 4 (FOA: W, Y, Z, X)")
        if info.samplerate != self.spec.sample_rate:
            raise EdgeError(f"{wav}: sample rate {info.samplerate} Hz, the dataset spec says {self.spec.sample_rate} Hz")
        events = self.spec.label_format.read(csv, len(self.classes))
        return Clip(name, wav, csv, fold, room, info.frames, events)


def load_dataset(path: str | Path) -> Dataset:
    path = Path(path)
    if not path.is_file():
        raise EdgeError(f"{path}: dataset spec not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise EdgeError(f"{path}: not valid YAML: {e}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise EdgeError(f"{path}: expected a mapping of dataset spec keys")
    try:
        spec = DatasetSpec.model_validate(data)
    except ValidationError as e:
        raise EdgeError(f"{path}: {format_validation_error(e, DatasetSpec)}") from None
    return Dataset(spec, path, (path.parent / spec.root).resolve())

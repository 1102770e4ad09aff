"""DCASE SELD label formats, read into one representation: frame-wise events at 100 ms.

| format            | rows                                                   | classes |
|-------------------|--------------------------------------------------------|---------|
| `dcase2023`       | frame, class, source, azimuth, elevation               | STARSS23 (13) |
| `dcase2024`       | frame, class, source, azimuth, elevation, distance(cm) | STARSS23 (13) |
| `tau-nigens-2021` | frame, class, track, azimuth, elevation                | NIGENS (12) |
| `tau-nigens-2020` | frame, class, track, azimuth, elevation                | NIGENS (14) |
| `tau2019`         | sound_event_recording, start_time, end_time, ele, azi, dist | TAU 2019 (11) |

Angles are degrees, azimuth counter-clockwise from the front (+x) towards the left (+y),
elevation up; distances are metres once read.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from at2seld_edge.errors import EdgeError
from at2seld_edge.io import read_text_file
from at2seld_edge.limits import MAX_FRAME, MAX_SOURCE_ID
from at2seld_edge.registry import Registry

LABEL_HOP_S = 0.1  # every format is read onto 100 ms label frames

STARSS23_CLASSES = (
    "femaleSpeech", "maleSpeech", "clapping", "telephone", "laughter", "domesticSounds", "footsteps",
    "doorCupboard", "music", "musicInstrument", "waterTap", "bell", "knock",
)
NIGENS_2020_CLASSES = (
    "alarm", "crying baby", "crash", "barking dog", "running engine", "female scream", "female speech",
    "burning fire", "footsteps", "knocking on door", "male scream", "male speech", "ringing phone", "piano",
)
NIGENS_2021_CLASSES = (
    "alarm", "crying baby", "crash", "barking dog", "female scream", "female speech", "footsteps",
    "knocking on door", "male scream", "male speech", "ringing phone", "piano",
)
TAU2019_CLASSES = (
    "knock", "drawer", "clearthroat", "phone", "keysDrop", "speech", "keyboard", "pageturn", "cough",
    "doorslam", "laughter",
)


@dataclass(frozen=True)
class FrameEvent:
    """One source active in one 100 ms label frame."""

    frame: int
    cls: int
    source: int
    azimuth: float
    elevation: float
    distance: float | None = None

    def xyz(self) -> tuple[float, float, float]:
        return sph_to_xyz(self.azimuth, self.elevation)


def sph_to_xyz(azimuth_deg: float, elevation_deg: float) -> tuple[float, float, float]:
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)


def xyz_to_sph(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cartesian (..., 3) -> azimuth, elevation in degrees."""
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    return np.degrees(np.arctan2(y, x)), np.degrees(np.arctan2(z, np.hypot(x, y)))


@dataclass(frozen=True)
class LabelFormat:
    name: str
    classes: tuple[str, ...]
    distance_unit_m: float | None  # metres per unit of the distance column; None: no distance
    clip_pattern: re.Pattern  # groups 'fold' and 'room' from the file stem
    read: Callable[[Path, int], list[FrameEvent]]

    @property
    def has_distance(self) -> bool:
        return self.distance_unit_m is not None

    def fold_room(self, stem: str) -> tuple[int, int]:
        m = self.clip_pattern.search(stem)
        if not m:
            raise EdgeError(f"{stem}: file name does not follow the {self.name} pattern {self.clip_pattern.pattern!r}")
        return int(m.group("fold")), int(m.group("room"))


LABEL_FORMATS: Registry[LabelFormat] = Registry("label format")


def _bad(path: Path, lineno: int, what: str) -> EdgeError:
    return EdgeError(f"{path}:{lineno}: {what}")


def read_rows(path: Path, kind: str = "label file") -> list[tuple[int, list[str]]]:
    """The non-blank lines of a CSV (a regular file: a FIFO is refused, not waited on), as
    (line number, stripped cells)."""
    text = read_text_file(path, kind)
    return [(i, [c.strip() for c in line.split(",")]) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


def _check_class(path: Path, lineno: int, cls: int, n_classes: int) -> None:
    if not 0 <= cls < n_classes:
        raise _bad(path, lineno, f"class index {cls} out of range (the dataset has {n_classes} classes)")


def check_row(path: Path, lineno: int, row: FrameEvent, n_classes: int, ident: str = "source id") -> None:
    """One row of a frame-wise CSV, a reference's (`ident` the source id) or a prediction's (the
    track): every value finite and in its range, else one line naming the file and the line."""
    if not 0 <= row.frame <= MAX_FRAME:
        raise _bad(path, lineno, f"frame {row.frame} outside 0..{MAX_FRAME} (24 h of 100 ms frames)")
    if not 0 <= row.source <= MAX_SOURCE_ID:
        raise _bad(path, lineno, f"{ident} {row.source} outside 0..{MAX_SOURCE_ID} (the events of one clip)")
    _check_class(path, lineno, row.cls, n_classes)
    if not (-180 <= row.azimuth <= 360 and -90 <= row.elevation <= 90):  # NaN fails both
        raise _bad(path, lineno, f"direction out of range: azimuth {row.azimuth}, elevation {row.elevation} "
                                 "(degrees: azimuth -180..360, elevation -90..90)")
    if row.distance is not None and not (math.isfinite(row.distance) and row.distance >= 0):
        raise _bad(path, lineno, f"distance {row.distance} is not a finite number >= 0")


def _frame_reader(distance_scale: float | None) -> Callable[[Path, int], list[FrameEvent]]:
    """Frame-wise CSV (2020-2024); `distance_scale` converts the 6th column to metres."""
    n_cols = 5 if distance_scale is None else 6

    def read(path: Path, n_classes: int) -> list[FrameEvent]:
        events = []
        for lineno, cols in read_rows(path):
            if lineno == 1 and cols[0].lower() == "frame":
                continue  # tolerate a header row
            if len(cols) < n_cols:
                raise _bad(path, lineno, f"expected {n_cols} columns, got {len(cols)}: {','.join(cols)!r}")
            try:
                event = FrameEvent(int(cols[0]), int(cols[1]), int(cols[2]), float(cols[3]), float(cols[4]),
                                   float(cols[5]) * distance_scale if distance_scale is not None else None)
            except ValueError:
                raise _bad(path, lineno, f"not a number in {','.join(cols)!r}") from None
            check_row(path, lineno, event, n_classes)
            events.append(event)
        return events

    return read


def _read_tau2019(classes: tuple[str, ...]) -> Callable[[Path, int], list[FrameEvent]]:
    def read(path: Path, n_classes: int) -> list[FrameEvent]:
        events = []
        for lineno, cols in read_rows(path):
            if lineno == 1 and cols[0] == "sound_event_recording":
                continue
            if len(cols) < 6:
                raise _bad(path, lineno, f"expected 6 columns, got {len(cols)}")
            name = re.sub(r"\d+$", "", cols[0])
            if name not in classes:
                raise _bad(path, lineno, f"unknown sound event {cols[0]!r} (classes: {', '.join(classes)})")
            cls = classes.index(name)
            _check_class(path, lineno, cls, n_classes)
            try:
                start, end, el, az, dist = (float(c) for c in cols[1:6])
            except ValueError:
                raise _bad(path, lineno, f"not a number in {','.join(cols)!r}") from None
            if not (math.isfinite(start) and math.isfinite(end) and 0 <= start <= end):
                raise _bad(path, lineno, f"event from {start} to {end} s: times must be finite, >= 0, end >= start")
            if end / LABEL_HOP_S > MAX_FRAME:
                raise _bad(path, lineno, f"event ends at {end} s, beyond 24 h")
            first, last = math.floor(start / LABEL_HOP_S + 1e-9), math.ceil(end / LABEL_HOP_S - 1e-9)
            events += [FrameEvent(f, cls, lineno, az, el, dist) for f in range(first, max(last, first + 1))]
        return events

    return read


_FOLD_ROOM = re.compile(r"fold(?P<fold>\d+)_room(?P<room>\d+)")
LABEL_FORMATS.register("dcase2023")(LabelFormat("dcase2023", STARSS23_CLASSES, None, _FOLD_ROOM, _frame_reader(None)))
LABEL_FORMATS.register("dcase2024")(LabelFormat("dcase2024", STARSS23_CLASSES, 0.01, _FOLD_ROOM, _frame_reader(0.01)))
LABEL_FORMATS.register("tau-nigens-2021")(
    LabelFormat("tau-nigens-2021", NIGENS_2021_CLASSES, None, _FOLD_ROOM, _frame_reader(None)))
LABEL_FORMATS.register("tau-nigens-2020")(
    LabelFormat("tau-nigens-2020", NIGENS_2020_CLASSES, None, _FOLD_ROOM, _frame_reader(None)))
LABEL_FORMATS.register("tau2019")(
    LabelFormat("tau2019", TAU2019_CLASSES, 1.0, re.compile(r"split(?P<fold>\d+)_ir(?P<room>\d+)"),
                _read_tau2019(TAU2019_CLASSES)))


def write_dcase2023_csv(path: Path, events: list[FrameEvent]) -> str:
    """DCASE2023 metadata text (frame, class, source, azimuth, elevation; integer degrees)."""
    rows = sorted(events, key=lambda e: (e.frame, e.cls, e.source))
    return "".join(f"{e.frame},{e.cls},{e.source},{round(e.azimuth)},{round(e.elevation)}\n" for e in rows)


@dataclass
class TrackTargets:
    """Track-wise targets of one clip: same-class overlapping events fill distinct tracks, in
    source order; tracks beyond the first K active ones of a class are empty."""

    activity: np.ndarray  # (T, N, C) float32 0/1
    doa: np.ndarray  # (T, N, C, 3) unit vectors where active, else 0
    distance: np.ndarray  # (T, N, C) metres where known, else 0
    dropped: int = 0  # events beyond N_tracks for their class and frame

    @classmethod
    def from_events(cls, events: list[FrameEvent], n_frames: int, n_classes: int, n_tracks: int) -> "TrackTargets":
        act = np.zeros((n_frames, n_tracks, n_classes), np.float32)
        doa = np.zeros((n_frames, n_tracks, n_classes, 3), np.float32)
        dist = np.zeros((n_frames, n_tracks, n_classes), np.float32)
        dropped = 0
        for e in sorted(events, key=lambda e: (e.frame, e.cls, e.source)):
            if e.frame >= n_frames:
                continue
            slot = int(act[e.frame, :, e.cls].sum())
            if slot >= n_tracks:
                dropped += 1
                continue
            act[e.frame, slot, e.cls] = 1.0
            doa[e.frame, slot, e.cls] = e.xyz()
            dist[e.frame, slot, e.cls] = e.distance or 0.0
        return cls(act, doa, dist, dropped)

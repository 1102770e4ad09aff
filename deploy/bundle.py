"""The deployment bundle: a folder of model files and `manifest.json`, which says what the model
expects and produces and holds the sha256 of every file, so a device can prove it runs exactly
what was built. Written whole or not at all; loaded only after every hash and version checks out.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

import at2seld_edge
from at2seld_edge.config import format_validation_error
from at2seld_edge.errors import EdgeError, ErrorKind
from at2seld_edge.io import atomic_write_text, sha256_file

FORMAT = "at2seld-edge.bundle/1"
MANIFEST = "manifest.json"
Precision = Literal["fp32", "fp16", "int8", "best"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TensorSpec(_Strict):
    name: str
    shape: list[int | str]  # a string is a dynamic axis
    dtype: str


class FileEntry(_Strict):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class Window(_Strict):
    """What one inference takes: a fixed `samples`, or any multiple of the label hop between
    `min_samples` and `max_samples` (TensorRT's optimization profile) when `dynamic_time`."""

    dynamic_time: bool
    samples: int = Field(gt=0)  # the static length, or the profile's optimum
    min_samples: int = Field(gt=0)
    max_samples: int = Field(gt=0)


class Stream(_Strict):
    """The two graphs a causal model streams with: the encoders over a window of audio that
    reaches `context_samples` back and `lookahead_samples` ahead of the new hop, and the track
    transformer + GRU smoother, fed the new frames with the history of fused frames and the GRU
    state carried from the last call."""

    encoder: str
    decoder: str
    context_samples: int = Field(ge=0)
    lookahead_samples: int = Field(ge=0)
    hop_samples: int = Field(gt=0)
    state_shape: list[int]


class Tolerances(_Strict):
    """How closely a backend must reproduce the golden (PyTorch FP32) outputs."""

    max_abs_logit: float | None = None  # FP32: raw outputs
    max_abs_doa: float | None = None
    min_decision_agreement: float | None = None  # reduced precision: SED decisions...
    max_mean_doa_error_deg: float | None = None  # ...and DOA angle on the golden-active tracks
    max_p95_doa_error_deg: float | None = None


class Engine(_Strict):
    """A serialized TensorRT engine runs only on the TensorRT version and GPU it was built with."""

    file: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    dla_core: int | None = None
    layer_info: str | None = None
    timing_cache: str | None = None


class BundleManifest(_Strict):
    format: Literal["at2seld-edge.bundle/1"] = FORMAT
    toolkit_version: str
    created_utc: str
    target: str
    target_tensorrt: str  # the TensorRT version the graph was linted for
    precision: Precision
    model: str  # the ONNX file the engine is built from
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    sample_rate: int
    channel_order: str
    label_hop_s: float
    label_hop_samples: int
    window: Window
    causal: bool
    stream: Stream | None = None
    class_names: list[str]
    thresholds: list[float]
    config_name: str
    config_fingerprint: str
    source_checkpoint: str
    source_checkpoint_sha256: str | None
    calibration_cache: str | None = None
    golden: str
    tolerances: Tolerances
    profile_report: str | None = None
    build_script: str
    engine: Engine | None = None
    steps: list[dict] = []
    files: dict[str, FileEntry]


def file_entries(root: Path) -> dict[str, FileEntry]:
    """Every file under `root` but the manifest, by POSIX relative path."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST and not p.name.startswith("."):
            out[p.relative_to(root).as_posix()] = FileEntry(sha256=sha256_file(p), bytes=p.stat().st_size)
    return out


def write_manifest(root: Path, manifest: dict) -> BundleManifest:
    """Hash every file, validate, write manifest.json atomically."""
    try:
        m = BundleManifest.model_validate({**manifest, "files": file_entries(root)})
    except ValidationError as e:
        raise EdgeError(f"{root / MANIFEST}: {format_validation_error(e, BundleManifest)}", ErrorKind.CHECK) from None
    atomic_write_text(root / MANIFEST, m.model_dump_json(indent=2) + "\n")
    return m


def publish(work: Path, out: Path) -> None:
    """Move a finished bundle from its work folder onto `out`: an older bundle there is replaced
    whole (never merged); anything else there is left alone and refused."""
    if out.exists():
        if not (out / MANIFEST).is_file() and any(out.iterdir()):
            raise EdgeError(f"{out}: exists, is not empty and is not a bundle; give another --out")
        old = out.with_name(out.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
        os.replace(work, out)
        shutil.rmtree(old)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(work, out)


class Bundle:
    """A bundle folder whose manifest validated and whose files all match their sha256."""

    def __init__(self, root: Path, manifest: BundleManifest):
        self.root, self.manifest = root, manifest

    def path(self, name: str) -> Path:
        return self.root / name

    @property
    def thresholds(self) -> np.ndarray:
        return np.asarray(self.manifest.thresholds, dtype=np.float32)


def load_bundle(root: str | Path, check_hashes: bool = True) -> Bundle:
    root = Path(root)
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise EdgeError(f"{root}: not a bundle (no {MANIFEST})")
    try:
        data = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EdgeError(f"{mpath}: not readable JSON ({e})") from None
    if isinstance(data, dict) and data.get("format") != FORMAT:
        raise EdgeError(f"{mpath}: bundle format {data.get('format')!r}; this toolkit "
                        f"({at2seld_edge.__version__}) reads {FORMAT!r}")
    try:
        manifest = BundleManifest.model_validate(data)
    except ValidationError as e:
        raise EdgeError(f"{mpath}: {format_validation_error(e, BundleManifest)}") from None
    if _major(manifest.toolkit_version) != _major(at2seld_edge.__version__):
        raise EdgeError(f"{mpath}: made by at2seld-edge {manifest.toolkit_version}; this is "
                        f"{at2seld_edge.__version__} (a different major version); rebuild the bundle")
    if check_hashes:
        problems = []
        for name, entry in manifest.files.items():
            p = root / name
            if not p.is_file():
                problems.append(f"{name}: missing")
            elif p.stat().st_size != entry.bytes or sha256_file(p) != entry.sha256:
                problems.append(f"{name}: sha256 differs from the manifest (changed after the build)")
        referenced = [manifest.model, manifest.golden, manifest.build_script]
        referenced += [f for f in (manifest.calibration_cache, manifest.profile_report) if f]
        if manifest.stream is not None:
            referenced += [manifest.stream.encoder, manifest.stream.decoder]
        if manifest.engine is not None:
            referenced.append(manifest.engine.file)
        problems += [f"{name}: named by the manifest but not hashed in it" for name in referenced
                     if name not in manifest.files]
        if problems:
            raise EdgeError(f"{root}: bundle integrity check failed: " + "; ".join(problems), ErrorKind.CHECK)
    return Bundle(root, manifest)


def _major(version: str) -> str:
    parts = version.split(".")
    return parts[0] if parts[0] != "0" else ".".join(parts[:2])  # 0.x: the minor is the major

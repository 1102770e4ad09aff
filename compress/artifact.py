"""The compression stage's artifact: its manifest (`manifest.json`), written by `edge compress`
beside the models and read by `edge build --compressed`. It says how the folder was made (source
checkpoint, dataset, options) and what it holds (the final checkpoint, the FP32 and INT8 graphs,
the modules INT8 kept float), with every file's sha256."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from at2seld_edge.config import format_validation_error
from at2seld_edge.errors import EdgeError
from at2seld_edge.io import atomic_write_text, sha256_file

FORMAT = "at2seld-edge.compression/1"
MANIFEST = "manifest.json"


class CompressionManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["at2seld-edge.compression/1"] = FORMAT
    toolkit_version: str
    created_utc: str
    source_checkpoint: str
    source_checkpoint_sha256: str | None
    data: str  # the dataset spec it fine-tuned, calibrated and scored on
    classes: list[str]
    options: dict  # CompressOptions, as given
    checkpoint: str | None  # the last stage's checkpoint in this folder; None: the source (no pruning)
    fp32_model: str
    int8_model: str | None = None
    calibration_cache: str | None = None
    float_modules: list[str] | None = None  # modules INT8 kept float; None: no INT8
    files: dict[str, str] = {}  # name -> sha256

    def checkpoint_path(self, folder: Path) -> Path:
        return folder / self.checkpoint if self.checkpoint else Path(self.source_checkpoint)


def write_compression_manifest(folder: Path, manifest: CompressionManifest) -> CompressionManifest:
    named = [manifest.checkpoint, manifest.fp32_model, manifest.int8_model, manifest.calibration_cache]
    m = manifest.model_copy(update={"files": {n: sha256_file(folder / n) for n in named if n}})
    atomic_write_text(folder / MANIFEST, m.model_dump_json(indent=2) + "\n")
    return m


def read_compression_manifest(folder: Path) -> CompressionManifest:
    """The manifest of an `edge compress` folder, checked against the files it names."""
    path = folder / MANIFEST
    if not path.is_file():
        partial = folder.with_name(folder.name + ".partial")
        hint = f" ({partial} holds an unfinished run: run edge compress again to finish it)" if partial.exists() else ""
        raise EdgeError(f"{folder}: not an edge compress output (no {MANIFEST}){hint}")
    try:
        m = CompressionManifest.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EdgeError(f"{path}: not readable JSON ({e})") from None
    except ValidationError as e:
        raise EdgeError(f"{path}: {format_validation_error(e, CompressionManifest)}") from None
    for name, sha in m.files.items():
        p = folder / name
        if not p.is_file() or sha256_file(p) != sha:
            raise EdgeError(f"{folder / name}: {'missing' if not p.is_file() else 'changed since edge compress wrote it'}")
    if m.checkpoint is None and not m.checkpoint_path(folder).is_file():
        raise EdgeError(f"{folder}: no pruned checkpoint, and its source checkpoint {m.source_checkpoint} is gone")
    return m

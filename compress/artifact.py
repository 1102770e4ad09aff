"""The compression stage's artifact: its manifest (`manifest.json`), written by `edge compress`
beside the models and read by `edge build --compressed`. It says how the folder was made (source
checkpoint, dataset, options) and what it holds (the final checkpoint, the FP32 and INT8 graphs,
the modules INT8 kept float), with every file's sha256."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import ValidationError, field_validator

from at2seld_edge.errors import EdgeError
from at2seld_edge.io import atomic_write_text, sha256_file
from at2seld_edge.schema import Strict, format_validation_error
from at2seld_edge.yamlfile import read_json

FORMAT = "at2seld-edge.compression/1"
MANIFEST = "manifest.json"


class CompressionManifest(Strict):
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

    @field_validator("checkpoint", "fp32_model", "int8_model", "calibration_cache")
    @classmethod
    def _in_folder(cls, v: str | None) -> str | None:
        return v if v is None else file_in_folder(v)

    @field_validator("files")
    @classmethod
    def _files_in_folder(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            file_in_folder(name)
        return v

    def checkpoint_path(self, folder: Path) -> Path:
        return folder / self.checkpoint if self.checkpoint else Path(self.source_checkpoint)


def file_in_folder(name: str) -> str:
    """A file the folder holds: a plain relative name, so `folder / name` stays in the folder."""
    p = PurePosixPath(name)
    if not name or p.is_absolute() or "\\" in name or any(part in ("", ".", "..") for part in name.split("/")):
        raise ValueError(f"{name!r} is not a file of this folder (a relative name, no '..'); the manifest was edited")
    return name


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
        m = CompressionManifest.model_validate(read_json(path, "compression manifest"))
    except ValidationError as e:
        raise EdgeError(f"{path}: {format_validation_error(e, CompressionManifest)}") from None
    for name, sha in m.files.items():
        p = folder / name
        if not p.is_file() or sha256_file(p) != sha:
            raise EdgeError(f"{folder / name}: {'missing' if not p.is_file() else 'changed since edge compress wrote it'}")
    if m.checkpoint is None:  # no pruning: the source checkpoint, outside the folder, as it was hashed then
        source = m.checkpoint_path(folder)
        if not source.is_file():
            raise EdgeError(f"{folder}: no pruned checkpoint, and its source checkpoint {source} is gone")
        if m.source_checkpoint_sha256 is not None and sha256_file(source) != m.source_checkpoint_sha256:
            raise EdgeError(f"{source}: changed since edge compress made {folder} from it; run edge compress again")
    return m

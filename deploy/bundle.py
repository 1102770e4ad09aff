"""The deployment bundle: a folder of model files and `manifest.json`, which says what the model
expects and produces and holds the sha256 of every file, so a device can prove it runs exactly
what was built. Written whole or not at all.

A bundle is copied between machines, so loading treats it as untrusted input: the manifest must
validate (numbers within sane bounds), every file it names must be a plain relative name inside
the folder (no `..`, no absolute path, no symlink out), every file must be listed and match its
sha256 and nothing else may be there, and the manifest's contract must agree with what the files
hold (the ONNX graph's inputs and outputs, the golden arrays' shapes, Q/DQ nodes for INT8) —
all before any file is run.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

import at2seld_edge
from at2seld_edge.config import format_validation_error
from at2seld_edge.errors import EdgeError, ErrorKind
from at2seld_edge.evaluation.agreement import tolerances as default_tolerances
from at2seld_edge.deploy.contract import check_contract, runtime_problem
from at2seld_edge.deploy.trt_check import TensorRTCheck
from at2seld_edge.io import BUNDLE_FORMAT_FAMILY, BUNDLE_MANIFEST, atomic_write_text, sha256_file
from at2seld_edge.options import Precision

FORMAT = f"{BUNDLE_FORMAT_FAMILY}2"
MANIFEST = BUNDLE_MANIFEST


MAX_MANIFEST_BYTES = 16 << 20
MAX_JSON_DEPTH = 32  # a manifest nests 5 deep; this bounds what a tampered one makes a reader walk
MAX_STATE_BYTES = 1 << 30  # a stream's state is ~100 kB; this bounds what a manifest makes a runtime allocate
MAX_DIM = 2**31 - 1  # a tensor axis (TensorRT 8's dimensions are int32)
MAX_WINDOW_SAMPLES = 1 << 27  # one inference's input: 93 min at 24 kHz, 2 GiB of 4-channel float32
MAX_LABEL_HOP_S = 60.0
INT64 = (-(2**63), 2**63 - 1)  # the integers a manifest may hold (what the C++ runtime reads)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


Dim = Annotated[int, Field(ge=1, le=MAX_DIM)]
Samples = Annotated[int, Field(gt=0, le=MAX_WINDOW_SAMPLES)]


def _plain_name(name: str) -> str:
    """A file name the manifest may give: relative, POSIX, inside the bundle."""
    parts = name.split("/")
    if (not name or name.startswith("/") or "\\" in name or ":" in parts[0]
            or any(p in ("", ".", "..") for p in parts)):
        raise ValueError(f"{name!r} is not a plain relative file name inside the bundle")
    return name


FILE_NAME_FORMAT = "bundle-file-name"  # how the JSON schema marks such a name (for the C++ loader)
FileName = Annotated[str, AfterValidator(_plain_name), Field(json_schema_extra={"format": FILE_NAME_FORMAT})]


class TensorSpec(_Strict):
    name: str
    shape: list[Dim | str]  # a string is a dynamic axis
    dtype: Literal["float32", "float16", "int64", "int32"]


class FileEntry(_Strict):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class Window(_Strict):
    """What one inference takes: a fixed `samples`, or any multiple of the label hop between
    `min_samples` and `max_samples` (TensorRT's optimization profile) when `dynamic_time`."""

    dynamic_time: bool
    samples: Samples  # the static length, or the profile's optimum
    min_samples: Samples
    max_samples: Samples

    @model_validator(mode="after")
    def _ordered(self) -> "Window":
        if not self.min_samples <= self.samples <= self.max_samples:
            raise ValueError(f"window: min_samples {self.min_samples} <= samples {self.samples} <= max_samples "
                             f"{self.max_samples} does not hold")
        if not self.dynamic_time and not self.min_samples == self.samples == self.max_samples:
            raise ValueError("window: a static window has min_samples = samples = max_samples")
        return self


class StreamStateSpec(_Strict):
    """One tensor of stream state: a causal layer's left context (`name`, its module path), fed to
    the stream graph as `input` and returned for the next hop as `output`, of a fixed shape."""

    name: str = Field(min_length=1)
    input: str = Field(min_length=1)
    output: str = Field(min_length=1)
    shape: list[Dim] = Field(min_length=1)
    dtype: Literal["float32"] = "float32"

    @property
    def bytes(self) -> int:
        return math.prod(self.shape) * 4


class Stream(_Strict):
    """The stream graph of a causal model: one hop of audio (`audio`, 1 x 4 x hop_samples) and
    every state in, the hop's frames (`sed_logits`, `doa`) and every next state out, all shapes
    fixed. A stream starts from zeros; each hop's outputs feed the next hop's inputs as `states`
    pair them. `lookahead_samples` is how long after its hop a frame comes out (0: at once);
    `context_samples` how far back the encoders reach (held in the state); the track transformer
    attends to the last `history_frames` frames. `engine`: the stream graph's engine, built with
    the bundle's engine (same builder, version and GPU)."""

    graph: FileName
    hop_samples: Samples
    lookahead_samples: int = Field(ge=0, le=MAX_WINDOW_SAMPLES)
    context_samples: int = Field(ge=0, le=MAX_WINDOW_SAMPLES)
    history_frames: int = Field(ge=1, le=MAX_WINDOW_SAMPLES)
    states: list[StreamStateSpec] = Field(min_length=1)
    engine: FileName | None = None

    @model_validator(mode="after")
    def _distinct(self) -> "Stream":
        names = [n for s in self.states for n in (s.input, s.output)] + ["audio", "sed_logits", "doa"]
        if len(set(names)) != len(names) or len({s.name for s in self.states}) != len(self.states):
            raise ValueError("stream: every state needs its own name, input and output, none named audio, "
                             "sed_logits or doa")
        if self.state_bytes > MAX_STATE_BYTES:
            raise ValueError(f"stream: the states hold more than {MAX_STATE_BYTES:,} bytes")
        return self

    @property
    def state_bytes(self) -> int:
        return sum(s.bytes for s in self.states)


class Tolerances(_Strict):
    """How closely a backend must reproduce the golden (PyTorch FP32) outputs. The bounds keep an
    edited manifest from waving any output through."""

    max_abs_logit: float | None = Field(None, gt=0, le=1.0)  # FP32: raw outputs
    max_abs_doa: float | None = Field(None, gt=0, le=1.0)
    min_decision_agreement: float | None = Field(None, ge=0.5, le=1.0)  # reduced precision: SED decisions...
    max_mean_doa_error_deg: float | None = Field(None, gt=0, le=30.0)  # ...and DOA angle on the golden-active tracks
    max_p95_doa_error_deg: float | None = Field(None, gt=0, le=60.0)


class Engine(_Strict):
    """A serialized TensorRT engine runs only on the TensorRT version and GPU it was built with;
    a TensorRT-RTX one on its version and any GPU of the compute capabilities it was built for."""

    file: FileName
    builder: Literal["tensorrt", "tensorrt-rtx"] = "tensorrt"
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    compute_capabilities: list[str] = []  # tensorrt-rtx: the ahead-of-time targets
    dla_core: int | None = None
    layer_info: FileName | None = None
    timing_cache: str | None = None  # beside the bundle (../NAME.timing.cache), not part of it


class BundleManifest(_Strict):
    format: Literal["at2seld-edge.bundle/2"] = FORMAT
    toolkit_version: str
    created_utc: str
    target: str
    target_tensorrt: str  # the TensorRT version the graph was linted for
    precision: Precision
    model: FileName  # the ONNX file the engine is built from
    inputs: list[TensorSpec] = Field(min_length=1)
    outputs: list[TensorSpec] = Field(min_length=2)
    sample_rate: int = Field(ge=8_000, le=192_000)
    channel_order: str
    label_hop_s: float = Field(gt=0, le=MAX_LABEL_HOP_S)
    label_hop_samples: Samples
    window: Window
    causal: bool
    stream: Stream | None = None
    class_names: list[str] = Field(min_length=1)
    thresholds: list[Annotated[float, Field(gt=0, lt=1)]]
    config_name: str
    config_fingerprint: str
    source_checkpoint: str
    source_checkpoint_sha256: str | None
    calibration_cache: FileName | None = None
    golden: FileName
    tolerances: Tolerances
    profile_report: FileName | None = None
    build_script: FileName
    engine: Engine | None = None
    fp16_model: FileName | None = None  # FP16-typed graph for strongly typed builders (TensorRT-RTX)
    tensorrt_check: TensorRTCheck | None = None  # every graph parsed and built where a builder imports
    steps: list[dict] = []
    files: dict[FileName, FileEntry] = {}  # filled by write_manifest

    @model_validator(mode="after")
    def _consistent(self) -> "BundleManifest":
        """The numbers must describe one model: a hop that divides every window length, one
        threshold per class, outputs as wide as the class list."""
        hop = self.label_hop_samples
        if hop != round(self.label_hop_s * self.sample_rate):
            raise ValueError(f"label_hop_samples {hop} is not label_hop_s {self.label_hop_s} x sample_rate "
                             f"{self.sample_rate}")
        w = self.window
        if any(n % hop for n in (w.samples, w.min_samples, w.max_samples)):
            raise ValueError(f"window lengths {w.min_samples}/{w.samples}/{w.max_samples} are not whole label hops "
                             f"of {hop} samples")
        if self.stream is not None and self.stream.hop_samples != hop:
            raise ValueError(f"stream.hop_samples {self.stream.hop_samples} is not the label hop ({hop} samples)")
        if len(self.thresholds) != len(self.class_names):
            raise ValueError(f"{len(self.thresholds)} thresholds for {len(self.class_names)} classes")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError("class_names repeats a name")
        for out in self.outputs[:2]:
            if len(out.shape) < 4 or out.shape[3] != len(self.class_names):
                raise ValueError(f"output {out.name} has shape {out.shape}; its class axis (4th) must be "
                                 f"{len(self.class_names)}, the number of class_names")
        missing = [k for k in default_tolerances(self.precision) if getattr(self.tolerances, k) is None]
        if missing:
            raise ValueError(f"tolerances: {', '.join(missing)} missing; the {self.precision} golden check judges "
                             "by them")
        return self

    def named_files(self) -> list[str]:
        """Every file the manifest points at, besides the hashed list itself."""
        names = [self.model, self.golden, self.build_script, self.calibration_cache, self.profile_report,
                 self.fp16_model]
        if self.stream is not None:
            names += [self.stream.graph, self.stream.engine]
        if self.engine is not None:
            names += [self.engine.file, self.engine.layer_info]
        return [n for n in names if n]


def bundle_files(root: Path) -> list[str]:
    """Every file under `root` but the manifest, by POSIX relative path; symlinks are listed as
    themselves (never followed), so a link out of the bundle cannot hide there."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        links = [d for d in dirnames if (here / d).is_symlink()]
        for name in sorted(filenames + links):
            rel = (here / name).relative_to(root).as_posix()
            if rel != MANIFEST:
                out.append(rel)
    return sorted(out)


def file_entries(root: Path) -> dict[str, FileEntry]:
    return {rel: FileEntry(sha256=sha256_file(root / rel), bytes=(root / rel).stat().st_size)
            for rel in bundle_files(root)}


def write_manifest(root: Path, manifest: BundleManifest | dict) -> BundleManifest:
    """Hash every file, validate, write manifest.json atomically."""
    if isinstance(manifest, BundleManifest):
        manifest = manifest.model_dump(mode="json")
    try:
        m = BundleManifest.model_validate({**manifest, "files": file_entries(root)})
    except ValidationError as e:
        raise EdgeError(f"{root / MANIFEST}: {format_validation_error(e, BundleManifest)}", ErrorKind.CHECK) from None
    atomic_write_text(root / MANIFEST, m.model_dump_json(indent=2) + "\n")
    return m


def publish(work: Path, out: Path) -> None:
    """Move a finished bundle from its work folder onto `out`: an older bundle there is replaced
    whole (never merged); anything else there is left alone and refused. The caller holds the
    output's lock (`io.output_lock`), so no other run publishes in between."""
    if out.exists():
        if not out.is_dir() or (not (out / MANIFEST).is_file() and any(out.iterdir())):
            raise EdgeError(f"{out}: exists, is not empty and is not a bundle; give another --out")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(work, out)
        shutil.rmtree(old)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(work, out)


class Bundle:
    """A bundle folder whose manifest validated, whose files all match their sha256 and whose
    contract matches its files."""

    def __init__(self, root: Path, manifest: BundleManifest):
        self.root, self.manifest = root, manifest

    def path(self, name: str) -> Path:
        return self.root / name

    @property
    def thresholds(self) -> np.ndarray:
        return np.asarray(self.manifest.thresholds, dtype=np.float32)


def load_bundle(root: str | Path) -> Bundle:
    """Validate everything a bundle claims before anything in it is run (see the module doc)."""
    root = Path(root)
    mpath = root / MANIFEST
    manifest = read_manifest(mpath)
    problems = _file_problems(root, manifest)
    if problems:
        raise EdgeError(f"{root}: bundle integrity check failed: " + "; ".join(problems), ErrorKind.CHECK)
    contract = check_contract(root, manifest)
    if contract:
        raise EdgeError(f"{root}: the manifest does not describe its files: " + "; ".join(contract), ErrorKind.CHECK)
    unsupported = runtime_problem(manifest)
    if unsupported:
        raise EdgeError(f"{mpath}: {unsupported}")
    return Bundle(root, manifest)


def read_manifest(mpath: Path) -> BundleManifest:
    if not mpath.is_file():
        raise EdgeError(f"{mpath.parent}: not a bundle (no {MANIFEST})")
    if mpath.stat().st_size > MAX_MANIFEST_BYTES:
        raise EdgeError(f"{mpath}: {mpath.stat().st_size:,} bytes; a manifest is a few kB (at most {MAX_MANIFEST_BYTES:,})")
    try:
        data = parse_json(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise EdgeError(f"{mpath}: not readable JSON ({e})") from None
    if not isinstance(data, dict):
        raise EdgeError(f"{mpath}: not a manifest (a JSON object is expected)")
    if data.get("format") != FORMAT:
        raise EdgeError(f"{mpath}: bundle format {data.get('format')!r}; this toolkit "
                        f"({at2seld_edge.__version__}) reads {FORMAT!r}")
    try:
        manifest = BundleManifest.model_validate(data, strict=True)  # JSON's types: "24000" is no integer
    except ValidationError as e:
        raise EdgeError(f"{mpath}: {format_validation_error(e, BundleManifest)}") from None
    if _major(manifest.toolkit_version) != _major(at2seld_edge.__version__):
        raise EdgeError(f"{mpath}: made by at2seld-edge {manifest.toolkit_version}; this is "
                        f"{at2seld_edge.__version__} (a different major version); rebuild the bundle")
    return manifest


def parse_json(text: str):
    """Strict JSON as the C++ runtime reads it: no NaN or Infinity, integers of 64 bits, finite
    floats, at most MAX_JSON_DEPTH nested containers, no key twice in one object (which a reader
    and a parser could each take differently); ValueError says which rule broke."""
    repeated = []  # the first repeated key, objects in the order they close

    def unique(pairs):
        seen = set()
        repeated.extend(k for k, _ in pairs if k in seen or seen.add(k))
        return dict(pairs)

    try:
        data = json.loads(text, parse_int=_int64, parse_float=_finite, parse_constant=_no_constant,
                          object_pairs_hook=unique)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
            stack += [(v, depth + 1) for v in (value.values() if isinstance(value, dict) else value)]
    if repeated:
        raise ValueError(f"key {repeated[0]!r} appears twice in one object")
    return data


def _shown(token: str) -> str:
    return token if len(token) <= 24 else f"{token[:20]}... ({len(token):,} characters)"


def _int64(token: str) -> int:
    if len(token) > 20 or not INT64[0] <= int(token) <= INT64[1]:  # never int() a 5,000-digit string
        raise ValueError(f"number {_shown(token)} is out of range")
    return int(token)


def _finite(token: str) -> float:
    x = float(token)
    if not math.isfinite(x):
        raise ValueError(f"number {_shown(token)} is out of range")
    return x


def _no_constant(token: str):
    raise ValueError(f"{token} is not a JSON number")


def _file_problems(root: Path, manifest: BundleManifest) -> list[str]:
    """Names that leave the bundle, files changed, missing, unlisted or named but not hashed."""
    problems = []
    inside = root.resolve()
    for name, entry in manifest.files.items():
        p = root / name
        if p.is_symlink() and not p.resolve().is_relative_to(inside):
            problems.append(f"{name}: a symlink out of the bundle (to {os.readlink(p)})")
        elif not p.is_file():
            problems.append(f"{name}: missing")
        elif p.stat().st_size != entry.bytes or sha256_file(p) != entry.sha256:
            problems.append(f"{name}: sha256 differs from the manifest (changed after the build)")
    problems += [f"{name}: present but not listed in the manifest" for name in bundle_files(root)
                 if name not in manifest.files]
    problems += [f"{name}: named by the manifest but not hashed in it" for name in manifest.named_files()
                 if name not in manifest.files]
    return problems


def _major(version: str) -> str:
    parts = version.split(".")
    return parts[0] if parts[0] != "0" else ".".join(parts[:2])  # 0.x: the minor is the major

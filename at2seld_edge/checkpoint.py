"""The project's checkpoint artifact: weights + the config that built them + class list +
calibrated thresholds + a manifest, readable with `torch.load(weights_only=True)`."""

from __future__ import annotations

import datetime as _dt
import math
import platform
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import at2seld_edge
from at2seld_edge.config import ModelConfig, config_from_dict
from at2seld_edge.errors import EdgeError
from at2seld_edge.io import atomic_path, load_error_reason, sha256_file
from at2seld_edge.model import AT2SELD, build_model
from at2seld_edge.model.dsp import ConvSTFT
from at2seld_edge.model.state import state_dict_problems

FORMAT = "at2seld-edge.checkpoint/1"


def provenance() -> dict[str, Any]:
    """Who made an artifact, recorded in every manifest."""
    return {
        "toolkit_version": at2seld_edge.__version__,
        "torch_version": str(torch.__version__),
        "python_version": platform.python_version(),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


@dataclass
class Checkpoint:
    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    classes: list[str]
    thresholds: list[float]
    manifest: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    training_state: dict[str, Any] | None = None

    def sha256(self) -> str | None:
        return sha256_file(self.path) if self.path else None


def save_checkpoint(path: str | Path, model: AT2SELD, classes: list[str] | None = None,
                    thresholds: list[float] | None = None, manifest: dict[str, Any] | None = None,
                    training_state: dict[str, Any] | None = None) -> None:
    """Atomic write. `training_state` (optimizer, scheduler, history) is what a resumed run needs."""
    cfg = model.config
    classes = list(classes) if classes is not None else [f"class_{i}" for i in range(cfg.num_classes)]
    thresholds = list(thresholds) if thresholds is not None else [0.5] * cfg.num_classes
    if len(classes) != cfg.num_classes or len(thresholds) != cfg.num_classes:
        raise EdgeError(f"{path}: {cfg.num_classes} classes in the config, {len(classes)} names and {len(thresholds)} thresholds given")
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    bad = [k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise EdgeError(f"{path}: not written: {len(bad)} weight tensor(s) hold NaN or Inf (first {bad[0]})")
    blob = {
        "format": FORMAT,
        "config": cfg.model_dump(mode="json"),
        "state_dict": weights,
        "classes": classes,
        "thresholds": [float(t) for t in thresholds],
        "manifest": {**provenance(), "config_name": cfg.name, "config_fingerprint": cfg.fingerprint(), **(manifest or {})},
    }
    if training_state is not None:
        blob["training_state"] = training_state
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        try:
            torch.save(blob, f)  # to a file object, so that a failed write is Python's OSError (a full disk) ...
        except RuntimeError as e:  # ... which torch's zip writer, closing, buries under "unexpected pos"
            if isinstance(e.__context__, OSError):
                raise e.__context__ from None
            raise


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise EdgeError(f"{path}: checkpoint file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol notes
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise EdgeError(f"{path}: not a readable checkpoint: {load_error_reason(e)}") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise EdgeError(
            f"{path}: not an at2seld-edge checkpoint (no format {FORMAT!r}); official PANNs/E-PANNs "
            "files go to --backbone-weights"
        )
    problem = _blob_problem(blob)
    if problem:
        raise EdgeError(f"{path}: damaged at2seld-edge checkpoint: {problem}")
    cfg = config_from_dict(blob["config"], f"{path} (embedded config)")
    classes, thresholds = list(blob["classes"]), [float(t) for t in blob["thresholds"]]
    if not (len(classes) == len(thresholds) == cfg.num_classes):
        raise EdgeError(f"{path}: {len(classes)} class names and {len(thresholds)} thresholds for a model of "
                        f"{cfg.num_classes} classes; they must be equal")
    bad = [t for t in thresholds if not (math.isfinite(t) and 0.0 < t < 1.0)]
    if bad:
        raise EdgeError(f"{path}: threshold {bad[0]!r} is not a probability in (0, 1)")
    return Checkpoint(cfg, blob["state_dict"], classes, thresholds,
                      dict(blob.get("manifest", {})), str(path), blob.get("training_state"))


def _blob_problem(blob: dict) -> str | None:
    """What is missing or of the wrong type in a loaded checkpoint dict, before anything uses it."""
    kinds = {"config": dict, "state_dict": dict, "classes": list, "thresholds": list}
    for key, kind in kinds.items():
        if not isinstance(blob.get(key), kind):
            return f"`{key}` is {type(blob.get(key)).__name__}, expected {kind.__name__}"
    if not all(isinstance(v, torch.Tensor) for v in blob["state_dict"].values()):
        return "`state_dict` holds values that are not tensors"
    if not all(isinstance(c, str) for c in blob["classes"]):
        return "`classes` holds values that are not names"
    if not all(isinstance(t, (int, float)) for t in blob["thresholds"]):
        return "`thresholds` holds values that are not numbers"
    return None


def model_from_checkpoint(ckpt: Checkpoint) -> AT2SELD:
    """Build the checkpoint's model and load its weights strictly."""
    model = build_model(ckpt.config)
    problems = state_dict_problems(model.state_dict(), ckpt.state_dict)
    if problems:
        raise EdgeError(f"{ckpt.path}: weights do not fit config {ckpt.config.name!r}: {' | '.join(problems)}")
    model.load_state_dict(ckpt.state_dict, strict=True)
    for m in model.modules():
        if isinstance(m, ConvSTFT):
            m.check_kernels()
    return model


def load_model(config: str | None, checkpoint: str | Path | None, backbone_weights: str | Path | None = None,
               say=lambda message: None) -> tuple[AT2SELD, dict[str, Any]]:
    """The model a command names: a checkpoint (whose own config it carries; a `config` given too
    must be the same), else a config or preset (untrained), with official backbone weights if
    given. Returns the model and what a manifest records about its source."""
    from at2seld_edge.config import DEFAULT_PRESET, load_config
    from at2seld_edge.model.backbones.official_weights import load_official_checkpoint

    manifest: dict[str, Any] = {}
    if checkpoint is not None:
        ckpt = load_checkpoint(checkpoint)
        if config is not None and load_config(config).fingerprint() != ckpt.config.fingerprint():
            raise EdgeError(f"{checkpoint}: made with config {ckpt.config.name!r}, which differs from --config "
                            f"{config}; leave out --config to use the checkpoint's own")
        model = model_from_checkpoint(ckpt)
        manifest.update(source_checkpoint=str(checkpoint), source_checkpoint_sha256=ckpt.sha256(),
                        classes=ckpt.classes, thresholds=ckpt.thresholds)
    else:
        model = build_model(load_config(config or DEFAULT_PRESET))
    if backbone_weights is not None:
        say(load_official_checkpoint(model.backbone, backbone_weights).summary())
        manifest["backbone_weights"] = str(backbone_weights)
    return model, manifest

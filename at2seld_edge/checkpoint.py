"""The project's checkpoint artifact: weights + the config that built them + class list +
calibrated thresholds + a manifest, readable with `torch.load(weights_only=True)`."""

from __future__ import annotations

import datetime as _dt
import platform
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
    blob = {
        "format": FORMAT,
        "config": cfg.model_dump(mode="json"),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "classes": classes,
        "thresholds": [float(t) for t in thresholds],
        "manifest": {**provenance(), "config_name": cfg.name, "config_fingerprint": cfg.fingerprint(), **(manifest or {})},
    }
    if training_state is not None:
        blob["training_state"] = training_state
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise EdgeError(f"{path}: checkpoint file not found")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise EdgeError(f"{path}: not a readable checkpoint (loaded with weights_only=True): {load_error_reason(e)}") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise EdgeError(
            f"{path}: not an at2seld-edge checkpoint (no format {FORMAT!r}); official PANNs/E-PANNs "
            "files go to --backbone-weights"
        )
    cfg = config_from_dict(blob["config"], f"{path} (embedded config)")
    return Checkpoint(cfg, blob["state_dict"], list(blob["classes"]), list(blob["thresholds"]),
                      dict(blob.get("manifest", {})), str(path), blob.get("training_state"))


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

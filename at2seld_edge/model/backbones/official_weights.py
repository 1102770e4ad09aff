"""Load the official PANNs / E-PANNs checkpoint files into a backbone.

PANNs releases (`Cnn14_mAP=0.431.pth`, ...) are a dict whose `model` entry is the state dict;
the E-PANNs release (`checkpoint_closeto_.44.pt`) is the bare state dict. Both are read with
`weights_only=True`. Keys must match exactly, except the AudioSet classifier (`fc1`,
`fc_audioset`), which the SELD model does not use: those are reported, never silently dropped.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from at2seld_edge.errors import EdgeError
from at2seld_edge.io import load_error_reason
from at2seld_edge.model.backbones.base import Backbone
from at2seld_edge.model.state import state_dict_problems

AUDIOSET_HEAD_PREFIXES = ("fc1.", "fc_audioset.")
# Front-end constants stored in the checkpoint; if they differ from ours, the mel settings differ.
FRONTEND_KEYS = ("spectrogram_extractor.stft.conv_real.weight", "spectrogram_extractor.stft.conv_imag.weight",
                 "logmel_extractor.melW")


@dataclass
class LoadReport:
    path: str
    loaded: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)  # in the file, not used by this model
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{self.path}: loaded {len(self.loaded)} tensors"]
        if self.unused:
            lines.append(f"  not used by the SELD model ({len(self.unused)}): {', '.join(self.unused)}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict inside an official checkpoint, read without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise EdgeError(f"{path}: checkpoint file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # Training checkpoints of the PANNs code also hold the sampler's numpy state; allow
        # exactly numpy's array reconstruction, nothing else.
        core = getattr(np, "_core", None) or np.core
        reconstruct = core.multiarray._reconstruct
        safe = [reconstruct, (reconstruct, "numpy.core.multiarray._reconstruct"), np.ndarray, np.dtype,
                type(np.dtype("float32")), type(np.dtype("int64")), type(np.dtype("float64"))]
        try:
            with torch.serialization.safe_globals(safe):
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise EdgeError(f"{path}: refused to load (weights_only=True): {load_error_reason(e)}") from None
    except Exception as e:
        raise EdgeError(f"{path}: not a readable PyTorch checkpoint: {load_error_reason(e)}") from None
    sd = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise EdgeError(f"{path}: expected a state dict (or a dict with a 'model' state dict) of tensors")
    return sd


def load_official_checkpoint(backbone: Backbone, path: str | Path) -> LoadReport:
    """Strictly load an official checkpoint into `backbone`; raise naming every wrong key."""
    sd = read_state_dict(path)
    own = backbone.state_dict()
    report = LoadReport(str(path))
    has_head = hasattr(backbone, "fc_audioset")
    report.unused = [k for k in sd if k not in own and not has_head and k.startswith(AUDIOSET_HEAD_PREFIXES)]
    problems = state_dict_problems(own, sd, ignore=frozenset(report.unused))
    if problems:
        raise EdgeError(f"{path}: does not fit backbone {type(backbone).__name__}: {' | '.join(problems)}")
    for k in FRONTEND_KEYS:
        if not torch.allclose(sd[k].float(), own[k].float(), atol=1e-4):
            report.notes.append(f"{k} differs from the configured mel settings; the checkpoint's values are used")
    backbone.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=True)
    backbone.spectrogram_extractor.stft.check_kernels()
    report.loaded = list(own)
    return report

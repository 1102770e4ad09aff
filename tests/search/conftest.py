"""Tiny data for the search tests (the training tests' fixtures) and a tiny search space."""

from __future__ import annotations

import yaml

from tests.conftest import preset_dict
from tests.training.conftest import one_torch_thread, tiny_data  # noqa: F401  (fixtures)

TINY_SPACE = {
    "stage1": {"frontend.descriptors": {"choices": ["logmel_iv", "spectral"]}},
    "stage2": {"track_transformer.layers": {"choices": [0, 1]}, "smoother.hidden": {"choices": [16, 32]}},
    "stage3": {"cross_stitch.position": {"choices": ["late", "off"]},
               "training.weight_decay": {"low": 1e-3, "high": 0.1, "log": True}},
}


def tiny_files(folder):
    """A tiny nano (small batches and segments) and the tiny space, as the YAML files a user passes."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = preset_dict()
    cfg["training"].update(batch_size=2, segment_seconds=1.0)
    (folder / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    (folder / "space.yaml").write_text(yaml.safe_dump(TINY_SPACE))
    return folder / "tiny.yaml", folder / "space.yaml"

"""Bundles built once per test session: the embedded default at FP32 and INT8, and a causal model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from at2seld_edge.checkpoint import save_checkpoint
from at2seld_edge.deploy.build import BuildOptions, build
from at2seld_edge.model import build_model
from tests.conftest import variant


def _build(root: Path, name: str, **kw) -> Path:
    out = root / name
    build(BuildOptions(out=out, **kw), say=lambda m: None)
    return out


@pytest.fixture(scope="session")
def bundles_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bundles")


@pytest.fixture(scope="session")
def fp32_bundle(bundles_root) -> Path:
    return _build(bundles_root, "fp32", target="jetson-orin", precision="fp32")


@pytest.fixture(scope="session")
def int8_bundle(bundles_root) -> Path:
    return _build(bundles_root, "int8", target="jetson-orin", precision="int8", calib_clips=4)


@pytest.fixture(scope="session")
def causal_bundle(bundles_root) -> Path:
    ckpt = bundles_root / "causal.pt"
    torch.manual_seed(0)  # the same weights in every session: an unseeded model put a DOA on a CSV rounding edge now and then
    save_checkpoint(ckpt, build_model(variant(smoother={"causal": True})))
    return _build(bundles_root, "causal", target="x86-cpu", precision="fp32", checkpoint=ckpt)

from __future__ import annotations

import copy

import pytest
import yaml
from importlib import resources

from at2seld_edge.config import ModelConfig, config_from_dict


def preset_dict(name: str = "at2seld-nano") -> dict:
    return yaml.safe_load((resources.files("at2seld_edge") / "presets" / f"{name}.yaml").read_text())


def variant(**overrides) -> ModelConfig:
    """The nano preset with nested overrides, e.g. variant(smoother={'causal': True})."""
    d = copy.deepcopy(preset_dict())
    for key, value in overrides.items():
        if isinstance(value, dict):
            d.setdefault(key, {}).update(value)
        else:
            d[key] = value
    return config_from_dict(d, "test variant")


@pytest.fixture
def write_yaml(tmp_path):
    def write(data: dict, name: str = "cfg.yaml"):
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data))
        return path

    return write


@pytest.fixture(autouse=True)
def _no_user_device_overrides(tmp_path_factory, monkeypatch):
    """Device files a developer calibrated on their own machine must not change test results."""
    monkeypatch.setenv("AT2SELD_EDGE_DEVICES", str(tmp_path_factory.getbasetemp() / "user-devices"))

from __future__ import annotations

import copy
import resource
import signal
from contextlib import contextmanager
from typing import Iterator

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


@contextmanager
def file_size_limit(max_bytes: int) -> Iterator[None]:
    """Writes past `max_bytes` in any one file fail, as they fail on a full disk: RLIMIT_FSIZE makes
    the kernel refuse the write (EFBIG where a full disk says ENOSPC) under libsndfile and torch as
    under Python, with no mount; SIGXFSZ is ignored so that the write returns the error instead of
    killing the process. Only the soft limit is lowered, and restored after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)

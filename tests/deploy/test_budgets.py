"""Budgets: shipped ones validate, modules inherit `default`, mistakes name the file and key."""

from __future__ import annotations

import pytest

from at2seld_edge.deploy.budgets import budget_names, load_budget
from at2seld_edge.errors import EdgeError
from at2seld_edge.model import MODULE_NAMES


@pytest.mark.parametrize("name", ["realtime-100ms", "orin-nano-15w"])
def test_shipped_budget_validates(name):
    assert name in budget_names()
    b = load_budget(name)
    assert b.total.latency_ms is not None
    for m in MODULE_NAMES:
        assert b.module_latency_limit_ms(m) is not None


def test_missing_modules_inherit_the_default(write_yaml):
    path = write_yaml({"name": "b", "description": "d", "total": {"latency_ms": 40},
                       "modules": {"default": {"latency_share": 0.25, "peak_memory_mb": 8},
                                   "backbone": {"latency_share": 0.5}}}, "b.yaml")
    b = load_budget(path)
    assert b.module_latency_limit_ms("backbone") == pytest.approx(20)
    assert b.module_latency_limit_ms("heads") == pytest.approx(10)
    assert b.module_limits("backbone").peak_memory_mb == 8  # not named by backbone: inherited


def test_absolute_and_share_limits_take_the_tighter(write_yaml):
    path = write_yaml({"name": "b", "description": "d", "total": {"latency_ms": 40},
                       "modules": {"frontend": {"latency_share": 0.5, "latency_ms": 5}}}, "b.yaml")
    assert load_budget(path).module_latency_limit_ms("frontend") == 5


@pytest.mark.parametrize("data, message", [
    ({"name": "b", "description": "d", "total": {"latency_msec": 4}}, r"key `total.latency_msec`: unknown key.*latency_ms"),
    ({"name": "b", "description": "d", "total": {"latency_ms": "soon"}}, r"key `total.latency_ms`: .*number"),
    ({"name": "b", "description": "d", "total": {}, "modules": {"backbon": {}}}, r"unknown module 'backbon'"),
    ({"name": "b", "description": "d", "total": {"latency_share": 0.5}}, r"latency_share is a module limit"),
    ({"name": "b", "description": "d", "total": {}, "modules": {"heads": {"latency_share": 2}}}, r"less than or equal to 1"),
    # a window is one inference's audio: 1e5 s would size the build's buffers at 2.4e9 samples
    ({"name": "b", "description": "d", "window_s": 1e5, "total": {}}, r"key `window_s`: .*less than or equal to 60"),
    ({"name": "b", "description": "d", "window_s": float("inf"), "total": {}}, r"\.inf is not a finite number"),
    ({"name": "b", "description": "d", "total": {"latency_ms": float("nan")}}, r"\.nan is not a finite number"),
])
def test_bad_budget_is_one_clear_error(write_yaml, data, message):
    path = write_yaml(data, "tight.yaml")
    with pytest.raises(EdgeError, match=r"tight.yaml(:\d+)?: .*" + message):
        load_budget(path)


def test_unknown_budget_lists_the_known_ones():
    with pytest.raises(EdgeError, match="unknown budget 'fast'.*orin-nano-15w.*realtime-100ms"):
        load_budget("fast")

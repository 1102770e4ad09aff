"""The real bindings of each release import here over stub libraries and report their exact
version; `trt.Logger` works and `trt.Builder(logger)` raises pybind11's clean TypeError; the
surface recorded in surfaces/ is the one the real module has; and the stand-in accepts and
refuses the same calls as the real module (probe_calls.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from tests.tensorrt_conformance import probe_calls
from tests.tensorrt_conformance.bindings import HERE, SURFACES, import_real, stub_source
from tests.tensorrt_conformance.standin import module_for

NULLPTR = "TypeError: pybind11::init(): factory function returned nullptr"


def test_real_bindings_import_over_stub_libraries(real, version, tmp_path):
    report = import_real(real, tmp_path / "surface.json")
    assert report["version"] == version
    assert report["file"].startswith(str(real.site))  # the release's own module, not another tensorrt
    assert (report["logger"], report["builder"]) == ("Logger", NULLPTR)
    major = version.split(".")[0]
    assert set(real.symbols) >= {f"libnvinfer.so.{major}", f"libnvonnxparser.so.{major}", f"libnvinfer_plugin.so.{major}"}
    assert "createInferBuilder_INTERNAL" in real.symbols[f"libnvinfer.so.{major}"]
    assert "createNvOnnxParser_INTERNAL" in real.symbols[f"libnvonnxparser.so.{major}"]
    assert not any(s.startswith(("Py", "_Py", "dl")) for syms in real.symbols.values() for s in syms)
    recorded = SURFACES / f"{version}.json"
    assert (tmp_path / "surface.json").read_text() == recorded.read_text(), (
        f"{recorded} differs from the real module's surface: python -m tests.tensorrt_conformance.bindings")


def test_tensorrt_8_6_stubs_carry_its_cpp_parser_factories(real, version):
    if version != "8.6.1":
        assert not any("parser" in s for s in real.symbols if s.startswith("libnvparsers"))
        return
    cpp = real.symbols["libnvparsers.so.8"]
    assert "_ZN11nvuffparser15createUffParserEv" in cpp and "_ZN14nvcaffeparser117createCaffeParserEv" in cpp
    assert "void *_ZN11nvuffparser15createUffParserEv(void) { return (void *)0; }" in stub_source("x", cpp)


def test_standin_accepts_and_refuses_what_the_real_module_does(real, version):
    r = subprocess.run([sys.executable, str(HERE / "probe_calls.py")], env=real.env(), capture_output=True, text=True,
                       timeout=120)
    line = next(x for x in r.stdout.splitlines() if x.startswith("OUTCOMES="))
    real_outcomes = json.loads(line.removeprefix("OUTCOMES="))
    standin_outcomes = probe_calls.outcomes(module_for(version), np)
    assert standin_outcomes == real_outcomes
    assert list(real_outcomes.values()).count("ok") >= 20 and "TypeError" in real_outcomes.values()

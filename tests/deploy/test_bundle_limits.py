"""The bundle's rules for the C++ loader come from the Python schema: the committed JSON is what the
generator writes now, and a rule the C++ reader does not implement is refused, not dropped."""

from __future__ import annotations

import json

import pytest

from at2seld_edge.deploy import bundle_limits
from at2seld_edge.deploy.bundle import MAX_STATE_BYTES, BundleManifest


def test_the_committed_limits_are_what_the_python_schema_gives_now():
    assert bundle_limits.DEFAULT_OUT.read_text() == bundle_limits.render(), (
        f"{bundle_limits.DEFAULT_OUT} is stale: run `python -m at2seld_edge.deploy.bundle_limits` (make cpp does)")


def test_the_schema_is_pydantics_with_every_file_name_marked():
    schema = bundle_limits.bundle_limits()["manifest_schema"]
    props, defs = schema["properties"], schema["$defs"]
    assert props["sample_rate"] == {"maximum": 192000, "minimum": 8000, "type": "integer"}
    assert list(props) == list(BundleManifest.model_fields)  # the order the messages list keys in
    marked = [k for k, v in props.items() if "bundle-file-name" in json.dumps(v)]
    assert marked == ["model", "calibration_cache", "golden", "profile_report", "build_script", "fp16_model", "files"]
    assert defs["Stream"]["properties"]["graph"]["format"] == "bundle-file-name"
    assert "description" not in json.dumps(schema) and "title" not in json.dumps(schema)


def test_a_keyword_the_cpp_loader_does_not_read_is_refused():
    with pytest.raises(ValueError, match="'maxLength' is not one the C\\+\\+ loader reads"):
        bundle_limits._rules({"properties": {"name": {"type": "string", "maxLength": 8}}}, "")


def test_check_and_write(tmp_path, capsys):
    out = tmp_path / "limits.json"
    assert bundle_limits.main(["--check", "--out", str(out)]) == 1
    assert "stale" in capsys.readouterr().err
    assert bundle_limits.main(["--out", str(out)]) == 0
    assert json.loads(out.read_text())["max_state_bytes"] == MAX_STATE_BYTES
    assert bundle_limits.main(["--check", "--out", str(out)]) == 0

"""Presets load; every config mistake is one clear line naming the file and key."""

from __future__ import annotations

import pytest

from at2seld_edge.config import load_config, preset_names
from at2seld_edge.errors import EdgeError
from tests.conftest import preset_dict, variant

PRESETS = ["at2seld-cnn10", "at2seld-cnn14", "at2seld-epanns", "at2seld-mobilenetv1", "at2seld-nano", "at2seld-nano-causal"]


def test_presets_are_shipped():
    assert preset_names() == PRESETS + ["dcase-baseline"]  # the other family: tests/model/test_baseline.py


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_loads_by_name_and_by_path(name, write_yaml):
    cfg = load_config(name)
    assert cfg.name == name and cfg.frontend_frames_per_label == 10 and cfg.backbone_frames_per_label == 10
    assert load_config(str(write_yaml(preset_dict(name)))) == cfg


def _error(data, write_yaml) -> str:
    path = write_yaml(data)
    with pytest.raises(EdgeError) as e:
        load_config(str(path))
    msg = str(e.value)
    assert msg.startswith(str(path)) and "\n" not in msg
    return msg


def test_typo_names_the_key_and_the_allowed_ones(write_yaml):
    d = preset_dict()
    d["smoother"]["hiden"] = 32
    msg = _error(d, write_yaml)
    assert "key `smoother.hiden`: unknown key (expected one of: hidden, layers, causal)" in msg


def test_wrong_type_names_the_key_and_what_was_expected(write_yaml):
    d = preset_dict()
    d["track_transformer"]["d_model"] = "wide"
    msg = _error(d, write_yaml)
    assert "key `track_transformer.d_model`" in msg and "valid integer" in msg and "'wide'" in msg


def test_unknown_backbone_lists_the_known(write_yaml):
    d = preset_dict()
    d["backbone"]["name"] = "cnn99"
    assert "unknown backbone 'cnn99' (known: cnn10, cnn14, epanns, mobilenetv1)" in _error(d, write_yaml)


def test_missing_required_key(write_yaml):
    d = preset_dict()
    del d["backbone"]
    assert "key `backbone`: required key is missing" in _error(d, write_yaml)


def test_misaligned_time_pooling_is_explained(write_yaml):
    d = preset_dict()
    d["spatial_encoder"]["time_pool"] = [2, 2, 1]
    assert "multiplies to 4, but a label frame holds 10 front-end STFT frames" in _error(d, write_yaml)


def test_bad_yaml_and_unknown_preset(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(EdgeError, match="not valid YAML"):
        load_config(str(bad))
    with pytest.raises(EdgeError, match=r"unknown preset 'at2seld-nanoo' .*presets: at2seld-cnn10"):
        load_config("at2seld-nanoo")
    with pytest.raises(EdgeError, match="config file not found"):
        load_config(str(tmp_path / "absent.yaml"))


@pytest.mark.parametrize("section, key, value, message", [
    # each built a model for minutes or asked torch/numpy for terabytes (or overflowed in a validator)
    ("track_transformer", "layers", 1_000_000, "less than or equal to 64"),
    ("spatial_encoder", "blocks_per_stage", 1_000_000, "less than or equal to 64"),
    ("track_transformer", "d_model", 1_000_000, "less than or equal to 8192"),
    ("smoother", "layers", 1_000_000, "less than or equal to 64"),
    ("smoother", "hidden", 10**9, "less than or equal to 8192"),
    ("heads", "n_tracks", 1_000_000, "less than or equal to 16"),
    ("frontend", "n_mels", 1_000_000, "less than or equal to 1024"),
    ("backbone", "n_fft", 1_000_000, "less than or equal to 16384"),
    ("backbone", "channels", [16, 16, 24, 24, 32, 32, 64, 10**6], "less than or equal to 8192"),
    ("audio", "label_hop_s", 1e308, "less than or equal to 1"),  # OverflowError in the alignment check
    ("training", "segment_seconds", 1e308, "less than or equal to 60"),
    ("training", "seed", -1, "greater than or equal to 0"),  # numpy refuses a negative seed mid-training
    (None, "num_classes", 10**8, "less than or equal to 1000"),
])
def test_absurd_sizes_are_refused_naming_the_key_and_the_bound(write_yaml, section, key, value, message):
    d = preset_dict()
    (d[section] if section else d)[key] = value
    msg = _error(d, write_yaml)
    assert f"key `{section + '.' if section else ''}{key}" in msg and message in msg


def test_early_cross_stitch_needs_matching_frame_rates():
    with pytest.raises(EdgeError, match="early cross-stitch needs both streams at one frame rate"):
        variant(cross_stitch={"position": "early", "early_backbone_stage": 1, "early_spatial_stage": 2})
    cfg = variant(cross_stitch={"position": "early", "early_backbone_stage": 2, "early_spatial_stage": 2})
    assert cfg.cross_stitch.position == "early"


def test_fingerprint_tracks_architecture():
    assert variant().fingerprint() == load_config("at2seld-nano").fingerprint()
    assert variant(smoother={"causal": True}).fingerprint() != variant().fingerprint()

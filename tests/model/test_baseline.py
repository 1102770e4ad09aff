"""`dcase-baseline`: the DCASE 2023 baseline in the toolkit's model contract."""

from __future__ import annotations

import copy

import pytest
import torch

from at2seld_edge.config import config_from_dict, load_config
from at2seld_edge.errors import EdgeError
from at2seld_edge.model import MODULE_NAMES, build_model
from at2seld_edge.model.baseline import ACTIVITY_SCALE, DcaseBaseline
from at2seld_edge.onnx_export import export_onnx
from at2seld_edge.summary import summarize
from tests.conftest import preset_dict
from tests.training.conftest import one_torch_thread, tiny_data  # noqa: F401  (fixtures)

CFG = load_config("dcase-baseline")


def test_contract_outputs_from_the_accdoa_vectors():
    model = build_model(CFG).eval()
    assert isinstance(model, DcaseBaseline) and [n for n, _ in model.named_children()] == list(MODULE_NAMES)
    audio = 0.1 * torch.randn(2, 4, 24000)
    with torch.no_grad():
        out = model(audio)
        v = model.heads.accdoa(model.track_transformer(model.smoother(model.spatial_encoder(model.frontend(audio)[0]))))
    assert out["sed_logits"].shape == (2, 10, 3, 13) and out["doa"].shape == (2, 10, 3, 13, 3)
    length = v.norm(dim=-1)
    assert torch.allclose(out["sed_logits"], ACTIVITY_SCALE * (length - 0.5), atol=1e-4)  # |v| > 0.5 <=> p > 0.5
    assert torch.allclose(out["doa"].norm(dim=-1), torch.ones_like(length), atol=1e-3)
    assert torch.allclose(out["doa"] * length.unsqueeze(-1), v, atol=1e-4)


def test_the_official_size_and_the_empty_modules():
    s = summarize(build_model(CFG))
    rows = {m.module: m for m in s.modules}
    assert rows["backbone"].params == rows["cross_stitch"].params == 0 and rows["backbone"].macs_per_second == 0
    trainable = sum(m.trainable_params for m in s.modules)
    assert 0.7e6 < trainable < 0.75e6  # 3 conv blocks, 2-layer biGRU 128, 2 x 8-head attention, 13 classes


@pytest.mark.parametrize("change, message", [
    ({"backbone": preset_dict()["backbone"]}, "dcase-baseline has no omni backbone"),
    ({"smoother": {"causal": True}}, "dcase-baseline is not causal"),
    ({"heads": {"semantic_presence": True}}, "no backbone stream for that head"),
    ({"track_transformer": {"d_model": 64, "heads": 8}}, "64 must equal smoother.hidden 128"),
    ({"architecture": "seldnet"}, "unknown architecture 'seldnet' (known: at2seld, dcase-baseline)"),
])
def test_config_mistakes_name_the_key(change, message):
    d = copy.deepcopy(preset_dict("dcase-baseline"))
    for k, v in change.items():
        d[k] = {**d.get(k, {}), **v} if isinstance(v, dict) else v
    with pytest.raises(EdgeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config_from_dict(d, "test")


def test_at2seld_still_needs_its_backbone():
    d = preset_dict()
    del d["backbone"]
    with pytest.raises(EdgeError, match="key `backbone`: required key is missing"):
        config_from_dict(d, "test")


def test_exports_with_a_dynamic_time_axis(tmp_path):
    torch.manual_seed(0)
    result = export_onnx(build_model(CFG), tmp_path / "baseline.onnx", seconds=1.0, dynamic_time=True)
    assert max(result.max_abs_diff.values()) < 1e-4 and len(result.checked_lengths) == 2


def test_trains_and_has_no_pruning_plan(tmp_path, tiny_data):
    from at2seld_edge.compress.prune import pruning_plan
    from at2seld_edge.training.trainer import train

    cfg = CFG.model_copy(update={"training": CFG.training.model_copy(update={"batch_size": 2, "segment_seconds": 1.0})})
    result = train(cfg, tiny_data, tmp_path / "run", epochs=1)
    assert result.best_epoch == 1 and 0 <= result.best_val["SELD"] <= 1
    with pytest.raises(EdgeError, match="no pruning plan for architecture 'dcase-baseline'"):
        pruning_plan(build_model(CFG))

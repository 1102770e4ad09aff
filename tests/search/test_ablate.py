"""`edge ablate`: the variants it trains, the paired deltas it reports, and a whole tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from at2seld_edge.search.ablate import BASE, FIXED_THRESHOLDS, AblateOptions, deltas, run_ablation, variants
from tests.conftest import variant
from tests.search.conftest import tiny_files


def opts(tmp_path: Path, **kw) -> AblateOptions:
    return AblateOptions(data=tmp_path / "d.yaml", out=tmp_path / "out", **kw)


def test_each_variant_flips_one_thing_of_the_base(tmp_path):
    base = variant(training={"loss": {"focal_gamma": 0.0, "doa_supervision": "active"}})
    v = variants(base, opts(tmp_path, subset=0.6))
    assert list(v) == [BASE, "class-sampler", "class-subset", "doa-supervision", "sed-loss"]  # no weights: no init row
    changed = {}
    for name, var in v.items():
        d = base.model_dump(mode="json")
        var.change(d, opts(tmp_path, subset=0.6))
        changed[name] = d["training"]
    assert changed["class-sampler"]["class_balance"]["sampler"] is True
    assert changed["class-subset"]["class_balance"]["subset"] == 0.6
    assert changed["sed-loss"]["loss"]["focal_gamma"] == 2.0 and changed["doa-supervision"]["loss"]["doa_supervision"] == "all"
    focal = variant(training={"loss": {"focal_gamma": 2.0, "doa_supervision": "all"}})
    flipped = variants(focal, opts(tmp_path, backbone_weights=tmp_path / "w.pth"))
    assert "BCE instead of focal" in flipped["sed-loss"].label and "active tracks only" in flipped["doa-supervision"].label
    assert not flipped["random-init"].pretrained


def test_deltas_are_paired_by_seed():
    m = lambda seld, f: {"ER": 0.5, "F": f, "LE": 20.0, "LR": 0.8, "SELD": seld}  # noqa: E731
    runs = {BASE: {0: m(0.30, 0.6), 1: m(0.40, 0.5), 2: m(0.35, 0.55)},
            "sed-loss": {0: m(0.28, 0.62), 1: m(0.36, 0.53)},  # seed 2 not run yet
            FIXED_THRESHOLDS: {0: m(0.33, 0.58), 1: m(0.45, 0.46), 2: m(0.38, 0.5)}}
    d = deltas(runs)
    mean, std, n = d["sed-loss"]["SELD"]
    assert n == 2 and mean == pytest.approx(-0.03) and std == pytest.approx(0.01414, abs=1e-4)
    assert d[FIXED_THRESHOLDS]["F"][0] == pytest.approx((-0.02 - 0.04 - 0.05) / 3)


@pytest.mark.slow
def test_a_tiny_ablation_writes_its_table_and_continues(tmp_path, tiny_data):
    cfg, _ = tiny_files(tmp_path / "in")
    o = AblateOptions(data=tiny_data.spec_path, out=tmp_path / "out", config=str(cfg), seeds=2, epochs=1, device="cpu")
    result = run_ablation(o)
    assert set(result["deltas"]) == {"class-sampler", "class-subset", "sed-loss", "doa-supervision", FIXED_THRESHOLDS}
    assert all(d["SELD"][2] == 2 for d in result["deltas"].values())
    assert {p.name for p in o.out.iterdir()} >= {"ablation.md", "ablation.png", "ablation.json", "ablate.db", "runs"}
    assert "+-" in (o.out / "ablation.md").read_text()
    again = run_ablation(o)  # a rerun trains nothing more: the study has every run
    assert json.dumps(again["runs"], sort_keys=True) == json.dumps(result["runs"], sort_keys=True)

"""`edge compress` end to end on a tiny dataset, and its bad-input errors."""

from __future__ import annotations

import json

import pytest
import torch

from at2seld_edge.checkpoint import save_checkpoint
from at2seld_edge.compress.quantize import read_tensorrt_cache
from at2seld_edge.config import config_from_dict
from at2seld_edge.errors import EdgeError
from at2seld_edge.model import build_model
from at2seld_edge.onnx_export import read_manifest
from tests.conftest import preset_dict
from tests.test_cli import assert_user_error, edge

CLASSES = ["tone", "clicks", "bell"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("compress")
    r = edge("data", "synth", "--out", str(root / "data"), "--clips", "6", "--seed", "3", "--seconds", "2",
             "--classes", ",".join(CLASSES))
    assert r.returncode == 0, r.stderr
    d = preset_dict()
    d["num_classes"] = 3
    d["training"] = {"epochs": 1, "batch_size": 2, "segment_seconds": 1.0}
    torch.manual_seed(0)
    model = build_model(config_from_dict(d))
    save_checkpoint(root / "model.pt", model, CLASSES, [0.5, 0.5, 0.5])
    return root


def test_compress_writes_every_artifact_and_the_report(setup, tmp_path):
    out = tmp_path / "out"
    r = edge("compress", "--checkpoint", str(setup / "model.pt"), "--data", str(setup / "data" / "dataset.yaml"),
             "--out", str(out), "--prune-ratio", "0.5", "--finetune-epochs", "1", "--int8", "--calib-clips", "4",
             "--calib-method", "minmax", "--tolerance", "1.0")
    assert r.returncode == 0, r.stderr
    names = {p.name for p in out.iterdir()}
    assert {"pruned.pt", "pruned_finetuned.pt", "model.fp32.onnx", "model.int8.onnx", "calibration.cache",
            "compression_report.md", "compression_report.json"} <= names
    assert not (tmp_path / "out.partial").exists()
    report = json.loads((out / "compression_report.json").read_text())
    variants = [v["name"] for v in report["variants"]]
    assert variants == ["original FP32", "pruned", "pruned + fine-tuned", "INT8 (all but the DSP)", "INT8 mixed precision"]
    original, pruned = report["variants"][0], report["variants"][1]
    assert pruned["backbone_macs_per_second"] <= 0.6 * original["backbone_macs_per_second"]
    assert all({"ER", "F", "LE", "LR", "SELD"} <= set(v["metrics"]) for v in report["variants"])
    assert all(v["latency"]["median_ms"] > 0 for v in report["variants"])
    assert read_manifest(out / "model.fp32.onnx")["batchnorm_folded"] > 0
    header, scales = read_tensorrt_cache(out / "calibration.cache")
    assert header.startswith("TRT-") and scales
    assert "INT8 sensitivity" in (out / "compression_report.md").read_text()


@pytest.mark.parametrize("args, code, fragment", [
    (["--prune-ratio", "1.5"], 2, "--prune-ratio 1.5: Input should be less than 1"),  # a flag's value: usage
    (["--prune-ratio", "0"], 2, "--prune-ratio 0.0: Input should be greater than 0"),
    (["--int8", "--calib-clips", "2"], 2, "--calib-clips 2: Input should be greater than or equal to 4"),
    (["--target-macs", "1M"], 1, "below what the model costs"),  # needs the model: an input problem
    (["--calib-method", "median", "--int8"], 2, "--calib-method 'median': expected 'minmax', 'entropy' or 'percentile'"),
    (["--int8", "--int8-min-agreement", "0.2"], 2, "--int8-min-agreement 0.2"),
])
def test_bad_options_are_refused_and_write_nothing(setup, tmp_path, args, code, fragment):
    out = tmp_path / "out"
    r = edge("compress", "--checkpoint", str(setup / "model.pt"), "--data", str(setup / "data" / "dataset.yaml"),
             "--out", str(out), *args)
    assert_user_error(r, code, fragment)
    assert not out.exists() and not (tmp_path / "out.partial").exists()


def test_checkpoint_of_an_unknown_preset_is_exit_1(setup, tmp_path):
    blob = torch.load(setup / "model.pt", weights_only=True)
    blob["config"]["backbone"]["name"] = "resnet38"
    blob["config"]["name"] = "at2seld-resnet38"
    torch.save(blob, tmp_path / "odd.pt")
    r = edge("compress", "--checkpoint", str(tmp_path / "odd.pt"), "--data", str(setup / "data" / "dataset.yaml"),
             "--out", str(tmp_path / "out"), "--prune-ratio", "0.5")
    assert_user_error(r, 1, "odd.pt", "unknown backbone 'resnet38'")
    assert not (tmp_path / "out").exists()


def test_unfinished_run_of_other_options_is_not_reused(setup, tmp_path):
    (tmp_path / "out.partial").mkdir()
    (tmp_path / "out.partial" / "options.json").write_text("{}")
    r = edge("compress", "--checkpoint", str(setup / "model.pt"), "--data", str(setup / "data" / "dataset.yaml"),
             "--out", str(tmp_path / "out"), "--prune-ratio", "0.5")
    assert_user_error(r, 1, "out.partial", "another checkpoint or other options")


def test_the_compression_manifest_is_what_build_reads(setup, tmp_path):
    from at2seld_edge.compress.artifact import read_compression_manifest
    from at2seld_edge.compress.pipeline import read_compressed

    out = tmp_path / "out"
    r = edge("compress", "--checkpoint", str(setup / "model.pt"), "--data", str(setup / "data" / "dataset.yaml"),
             "--out", str(out), "--prune-ratio", "0.5")
    assert r.returncode == 0, r.stderr
    m = read_compression_manifest(out)
    assert m.checkpoint == "pruned.pt" and m.int8_model is None and m.float_modules is None
    assert set(m.files) == {"pruned.pt", "model.fp32.onnx"}
    c = read_compressed(out)
    assert c.checkpoint == out / "pruned.pt" and c.data == (setup / "data" / "dataset.yaml").resolve()
    (out / "pruned.pt").write_bytes(b"changed")
    with pytest.raises(EdgeError, match="pruned.pt: changed since edge compress wrote it"):
        read_compressed(out)


def test_identical_graphs_are_timed_once_and_share_their_figures(tmp_path, monkeypatch):
    """Two byte-identical INT8 graphs once came out at 0.94x and 1.57x in one table."""
    from at2seld_edge.compress import pipeline
    from at2seld_edge.compress.pipeline import Variant, time_variants

    for name, data in (("a.onnx", b"graph a"), ("b.onnx", b"graph b"), ("c.onnx", b"graph b")):
        (tmp_path / name).write_bytes(data)
    runs: dict[str, int] = {}

    class Model:  # stands in for ONNX Runtime: counts the runs of each file
        def __init__(self, path, config):
            self.name = path.name

        def __call__(self, audio):
            runs[self.name] = runs.get(self.name, 0) + 1

    monkeypatch.setattr(pipeline, "OnnxRuntimeModel", Model)
    variants = [Variant(n, f, 1, 1.0, 1.0, 1, {}, same_graph_as=twin)
                for n, f, twin in (("original FP32", "a.onnx", None), ("INT8 (all but the DSP)", "b.onnx", None),
                                   ("INT8 mixed precision", "c.onnx", "INT8 (all but the DSP)"))]
    time_variants(variants, tmp_path, 2400, rounds=3, runs=4)
    assert runs == {"a.onnx": 3 + 12, "b.onnx": 3 + 12}  # warm-up + rounds x runs; c.onnx is b's graph
    base, all_int8, mixed = variants
    assert mixed.round_ms == all_int8.round_ms and mixed.speedup == all_int8.speedup  # the same figure
    assert base.speedup.median == base.speedup.low == base.speedup.high == 1.0 and base.speedup.rounds == 3
    assert all_int8.latency.runs == 12 and all_int8.timing_cells()[1].endswith(")")  # median (range) over rounds

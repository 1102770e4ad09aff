"""`edge data`, `edge train` and `edge evaluate` as a user runs them."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from tests.conftest import preset_dict
from tests.test_cli import assert_user_error, edge


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    r = edge("data", "synth", "--out", str(root), "--clips", "6", "--seed", "2", "--seconds", "2",
             "--classes", "tone,clicks,bell")
    assert r.returncode == 0, r.stderr
    return root


def test_synth_and_check(dataset):
    r = edge("data", "check", "--data", str(dataset / "dataset.yaml"))
    assert r.returncode == 0, r.stderr
    assert "train: 4 clips" in r.stdout and "test: 1 clips" in r.stdout


def test_reference_csvs_scored_against_themselves_are_perfect(dataset, tmp_path):
    ref = dataset / "metadata_dev"
    r = edge("evaluate", "--pred", str(ref), "--ref", str(ref), "--classes", "3", "--out", str(tmp_path / "self"), "--json")
    assert r.returncode == 0, r.stderr
    m = {k: v for k, v in json.loads(r.stdout).items() if k in ("ER", "F", "LE", "LR", "SELD")}
    assert m == pytest.approx({"ER": 0.0, "F": 1.0, "LE": 0.0, "LR": 1.0, "SELD": 0.0}, abs=1e-9)
    assert (tmp_path / "self" / "per_class.md").is_file()


def test_train_then_evaluate(dataset, tmp_path):
    run = tmp_path / "run"
    cfg = preset_dict()
    cfg["training"] = {"epochs": 1, "batch_size": 2, "segment_seconds": 1.0}
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    r = edge("train", "--config", str(cfg_path), "--data", str(dataset / "dataset.yaml"), "--out", str(run))
    assert r.returncode == 0, r.stderr
    assert "best epoch 1" in r.stdout and (run / "best.pt").is_file()
    r = edge("evaluate", "--checkpoint", str(run / "best.pt"), "--data", str(dataset / "dataset.yaml"),
             "--out", str(tmp_path / "eval"), "--oracle-activity")
    assert r.returncode == 0, r.stderr
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert {"ER", "F", "LE", "LR", "SELD", "oracle_activity_DOA_error", "thresholds", "classwise"} <= set(metrics)
    assert len(list((tmp_path / "eval" / "output").glob("*.csv"))) == 1


def test_bad_data_is_exit_1_and_skip_bad_lists(dataset, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    csv = sorted((broken / "metadata_dev").rglob("fold1_*.csv"))[0]
    csv.write_text(csv.read_text() + "12,7,0,10,0\n")  # class 7 of 3
    assert_user_error(edge("data", "check", "--data", str(broken / "dataset.yaml")), 1,
                      f"{csv.name}:", "class index 7 out of range")
    r = edge("data", "check", "--data", str(broken / "dataset.yaml"), "--skip-bad")
    assert r.returncode == 0 and "skipped:" in r.stdout and "train: 3 clips" in r.stdout


def test_wrong_sample_rate_spec_is_exit_1(dataset, tmp_path):
    spec = yaml.safe_load((dataset / "dataset.yaml").read_text())
    spec["sample_rate"] = 48000
    spec["root"] = str(dataset)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    assert_user_error(edge("train", "--data", str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "run")), 1,
                      "sample rate 24000 Hz, the dataset spec says 48000 Hz")


def test_evaluate_usage_errors(tmp_path):
    assert_user_error(edge("evaluate", "--pred", str(tmp_path)), 2, "both --pred and --ref")
    assert_user_error(edge("evaluate", "--checkpoint", str(tmp_path / "x.pt")), 2, "--checkpoint, --data and --out")


def test_evaluate_csvs_with_a_dataset_spec_and_a_split(dataset, tmp_path):
    spec = dataset / "dataset.yaml"
    ref = dataset / "metadata_dev"
    r = edge("evaluate", "--pred", str(ref), "--data", str(spec), "--split", "test", "--out", str(tmp_path / "e"))
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "dcase2023 metrics" in text and "SELD" in text and not r.stdout.lstrip().startswith("{")  # a table
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["clips"] == 1 and list(metrics["classwise"]) == ["tone", "clicks", "bell"]  # the spec's classes
    # the one test clip holds 2 of the 3 classes: the third counts as F 0 in the macro average, and is named
    assert metrics["F"] == pytest.approx(2 / 3) and metrics["notes"][0].startswith("class(es) never in the references: tone;")
    assert_user_error(edge("evaluate", "--pred", str(ref), "--ref", str(ref), "--classes", "0"), 2, "--classes 0")
    assert_user_error(edge("evaluate", "--pred", str(ref), "--ref", str(ref), "--split", "test"), 1,
                      "no split folder 'test' or test-*")  # --ref's subfolders are its splits


def test_evaluate_names_classes_missing_from_the_references(dataset, tmp_path):
    ref = dataset / "metadata_dev"
    r = edge("evaluate", "--pred", str(ref), "--ref", str(ref), "--classes", "5")  # 2 more than the data has
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "never in the references: class3, class4" in text  # not dcase2023's 13 names for 5 classes
    assert "the macro averages count them (F 0, LE 180, LR 0), as the official code does" in text

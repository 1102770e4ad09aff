"""Decoding, threshold calibration, oracle-activity DOA error and CSV-folder scoring."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from at2seld_edge.data.formats import STARSS23_CLASSES, TrackTargets
from at2seld_edge.data.spec import Clip
from at2seld_edge.errors import EdgeError
from at2seld_edge.evaluation.decode import decode, read_output_csv, write_output_csv
from at2seld_edge.evaluation.evaluate import (ClipOutput, CsvScoring, calibrate_thresholds, evaluate_csv_dirs,
                                             oracle_doa_error)
from at2seld_edge.evaluation.metrics import Detection


def unit(deg):
    return np.array([np.cos(np.radians(deg)), np.sin(np.radians(deg)), 0.0], np.float32)


def test_decode_thresholds_and_merges_duplicates():
    probs = np.zeros((2, 3, 2), np.float32)
    doa = np.zeros((2, 3, 2, 3), np.float32)
    probs[0, :, 0] = [0.9, 0.8, 0.2]  # two confident tracks of class 0 ...
    doa[0, 0, 0], doa[0, 1, 0] = unit(10), unit(20)  # ... 10 degrees apart: one source
    probs[1, 0, 1], doa[1, 0, 1] = 0.6, unit(90)
    probs[1, 2, 1], doa[1, 2, 1] = 0.7, unit(-90)  # two class-1 sources far apart
    frames = decode(probs, doa, np.array([0.5, 0.65]))
    assert len(frames[0]) == 1 and frames[0][0].cls == 0
    az = np.degrees(np.arctan2(frames[0][0].xyz[1], frames[0][0].xyz[0]))
    assert az == pytest.approx(15, abs=0.5)
    assert [d.track for d in frames[1]] == [2]  # 0.6 is below class 1's threshold 0.65


def outputs_with(prob_active: float, prob_silent: float, n_frames=20):
    t = TrackTargets(np.zeros((n_frames, 3, 2), np.float32), np.zeros((n_frames, 3, 2, 3), np.float32),
                     np.zeros((n_frames, 3, 2), np.float32))
    t.activity[:10, 0, 0] = 1
    t.doa[:10, 0, 0] = unit(30)
    probs = np.full((n_frames, 3, 2), prob_silent, np.float32)
    probs[:10, 0, 0] = prob_active
    doa = np.zeros((n_frames, 3, 2, 3), np.float32)
    doa[:, :, :] = unit(35)
    clip = Clip("c", None, None, 1, 1, n_frames * 2400)
    return [ClipOutput(clip, probs, doa, t)]


def test_calibration_finds_the_separating_threshold():
    # active frames score 0.42, silent ones 0.28: thresholds 0.3, 0.35 and 0.4 separate them
    # (F = 1 for class 0); of those tied values the one nearest 0.5 is kept
    thresholds, f = calibrate_thresholds(outputs_with(0.42, 0.28))
    assert thresholds[0] == pytest.approx(0.4) and f[0] == pytest.approx(1.0)
    thresholds, f = calibrate_thresholds(outputs_with(0.9, 0.58))
    assert thresholds[0] == pytest.approx(0.6) and f[0] == pytest.approx(1.0)


def test_oracle_activity_doa_error():
    assert oracle_doa_error(outputs_with(0.9, 0.1)) == pytest.approx(5.0, abs=1e-3)


def test_csv_round_trip(tmp_path):
    frames = {3: [Detection(1, 0, tuple(unit(45)))], 7: [Detection(0, 2, (0.0, 0.0, 1.0), 2.5)]}
    write_output_csv(tmp_path / "p.csv", frames, with_distance=True)
    back = read_output_csv(tmp_path / "p.csv", 2)
    assert back[3][0].cls == 1 and np.allclose(back[3][0].xyz, unit(45), atol=1e-3)
    assert back[7][0].distance == pytest.approx(2.5) and back[7][0].track == 2


def test_scoring_dcase2024_folders_adds_the_distance_metrics(tmp_path):
    (tmp_path / "ref").mkdir()
    (tmp_path / "pred").mkdir()
    (tmp_path / "ref" / "fold1_room1_mix001.csv").write_text("".join(f"{f},4,0,30,0,200\n" for f in range(10)))
    (tmp_path / "pred" / "fold1_room1_mix001.csv").write_text("".join(f"{f},4,0,30,0,2.5\n" for f in range(10)))
    r = evaluate_csv_dirs(CsvScoring(tmp_path / "pred", tmp_path / "ref", "dcase2024", list(STARSS23_CLASSES)),
                          tmp_path / "out").results
    assert r["dcase2023"]["F"] == pytest.approx(1 / 13)  # macro over the 13 STARSS classes, one perfect
    assert r["dcase2024"]["RDE"] == pytest.approx(0.25) and r["dcase2024"]["F"] == pytest.approx(1 / 13)
    assert (tmp_path / "out" / "metrics.json").is_file()


def _csv(path, classes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{f},{c},0,30,0\n" for f in range(12) for c in classes))


def _resolve(tmp_path, num_classes=None, split=None):
    return CsvScoring.resolve(tmp_path / "pred", tmp_path / "ref", None, split, None, num_classes)


def test_without_classes_the_count_comes_from_the_csvs_with_neutral_names(tmp_path):
    _csv(tmp_path / "ref" / "fold1_room1_mix001.csv", range(8))  # an 8-class set (edge data synth's default)
    _csv(tmp_path / "pred" / "fold1_room1_mix001.csv", range(8))
    s = evaluate_csv_dirs(_resolve(tmp_path))
    assert s.classes == [f"class{i}" for i in range(8)]  # not 13 STARSS23 classes, 5 of them F 0
    assert s.results["dcase2023"]["F"] == pytest.approx(1.0)
    assert any(n.startswith("8 classes, read from the CSVs (largest class index + 1), named class0..class7")
               for n in s.notes)
    _csv(tmp_path / "pred" / "fold1_room1_mix001.csv", [12])  # a prediction of class 12: 13 classes, the format's
    assert evaluate_csv_dirs(_resolve(tmp_path)).classes == list(STARSS23_CLASSES)


@pytest.mark.parametrize("n, expected", [(8, [f"class{i}" for i in range(8)]), (13, list(STARSS23_CLASSES))])
def test_classes_given_take_the_format_names_only_at_its_own_count(tmp_path, n, expected):
    _csv(tmp_path / "ref" / "fold1_room1_mix001.csv", [0])
    _csv(tmp_path / "pred" / "fold1_room1_mix001.csv", [0])
    assert _resolve(tmp_path, num_classes=n).classes == expected  # --classes 8 named them femaleSpeech...


def test_csvs_without_any_event_are_refused_without_classes(tmp_path):
    for side in ("ref", "pred"):
        (tmp_path / side).mkdir()
        (tmp_path / side / "fold1_room1_mix001.csv").write_text("")
    with pytest.raises(EdgeError, match="no event in any reference or prediction CSV.*--classes"):
        evaluate_csv_dirs(_resolve(tmp_path))


def test_a_ref_folder_of_every_split_scores_the_one_split_chosen(tmp_path):
    ref = tmp_path / "ref"
    _csv(ref / "dev-train-sony" / "fold3_room21_mix001.csv", [0])
    _csv(ref / "dev-test-sony" / "fold4_room23_mix001.csv", [1])
    _csv(ref / "dev-test-tau" / "fold4_room2_mix001.csv", [2])
    _csv(tmp_path / "pred" / "fold4_room23_mix001.csv", [1])
    _csv(tmp_path / "pred" / "fold4_room2_mix001.csv", [2])
    with pytest.raises(EdgeError, match="no prediction for 1 reference clip.*holds dev-test-sony, dev-test-tau, "
                                        "dev-train-sony: choose a split with --split"):
        evaluate_csv_dirs(_resolve(tmp_path, 3))
    s = evaluate_csv_dirs(_resolve(tmp_path, 3, split="dev-test"))  # dev-test-sony and dev-test-tau
    assert s.clips == 2 and s.results["dcase2023"]["ER"] == pytest.approx(0.0)
    assert evaluate_csv_dirs(_resolve(tmp_path, 3, split="dev-test-tau")).clips == 1
    with pytest.raises(EdgeError, match=r"no split folder 'eval' or eval-\* \(subfolders: dev-test-sony, dev-test-tau, "
                                        r"dev-train-sony\)"):
        _resolve(tmp_path, 3, split="eval")


@pytest.mark.parametrize("row, message", [
    # each was scored without a word: a distance below zero, an id from no clip, a direction of no angle
    ("3,1,0,30,0,-2.5", "distance -2.5 is not a finite number >= 0"),
    ("3,1,-1,30,0", "track -1 outside 0..65535"),
    ("3,1,99999999,30,0", "track 99999999 outside 0..65535"),
    ("3,1,0,1e308,0", "direction out of range: azimuth 1e+308"),
    ("3,1,0,30,-1e308", "direction out of range: azimuth 30.0, elevation -1e+308"),
])
def test_an_absurd_prediction_row_is_refused_naming_file_and_line(tmp_path, row, message):
    path = tmp_path / "p.csv"
    path.write_text(f"0,1,0,30,0\n{row}\n")
    with pytest.raises(EdgeError) as e:
        read_output_csv(path, 13)
    assert str(e.value).startswith(f"{path}:2: ") and message in str(e.value)


def test_a_fifo_as_a_prediction_csv_is_refused_not_waited_on(tmp_path):
    """A FIFO without a writer blocked `edge evaluate` forever (a subprocess, so a hang fails the test)."""
    for folder in ("ref", "pred"):
        (tmp_path / folder).mkdir()
    (tmp_path / "ref" / "fold1_room1_mix001.csv").write_text("0,1,0,30,0\n")
    os.mkfifo(tmp_path / "pred" / "fold1_room1_mix001.csv")
    r = subprocess.run([sys.executable, "-m", "at2seld_edge.cli", "evaluate", "--pred", str(tmp_path / "pred"),
                        "--ref", str(tmp_path / "ref")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "fold1_room1_mix001.csv: is a FIFO (named pipe), not a regular file" in " ".join(r.stderr.split())

"""The three conventions where the official DCASE scorers (2022-2024 baselines) differ from the
obvious reading of the definitions. Each expected value is derived here, step by step, from the
official code's counting rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from at2seld_edge.evaluation.evaluate import CsvScoring, evaluate_csv_dirs
from at2seld_edge.evaluation.metrics import Detection, SeldMetrics2024, official_frame_count

EPS = np.finfo(float).eps


def write(folder, rows: list[str], name: str = "fold1_room1_mix001.csv"):
    folder.mkdir(exist_ok=True)
    (folder / name).write_text("".join(r + "\n" for r in rows))


def score(tmp_path, ref_rows, pred_rows, fmt="dcase2023", classes=("a", "b")):
    write(tmp_path / "ref", ref_rows)
    write(tmp_path / "pred", pred_rows)
    return evaluate_csv_dirs(CsvScoring(tmp_path / "pred", tmp_path / "ref", fmt, list(classes)))


def test_frame_count_is_the_last_reference_frame_index():
    assert official_frame_count({0: [], 9: []}) == 9  # `max(gt_dict.keys())`
    assert official_frame_count({}) == 0


def test_predictions_past_the_last_reference_frame_are_not_scored(tmp_path):
    ref = [f"{f},0,0,30,0" for f in range(10)]
    false_alarm = [f"{f},1,0,-90,0" for f in range(25, 29)]  # class b, two segments after the references end
    s = score(tmp_path, ref, ref + false_alarm)
    # Official: nb_ref_frames = 9 -> ceil(9 / 10) = 1 segment (frames 0..9): class a perfect; class b
    # never appears in a scored segment, so it is neither a false positive nor a reference:
    # F_b = 0 / eps = 0, LE_b = 180, LR_b = 0; ER = 0 / N_ref = 0.
    f = (1 + 0) / 2
    le = (0 + 180) / 2
    lr = (1 + 0) / 2
    seld = np.mean([np.mean([0, 1 - 1, 0 / 180, 1 - 1]), np.mean([0, 1 - 0, 180 / 180, 1 - 0])])
    assert s.results["dcase2023"] == pytest.approx({"ER": 0.0, "F": f, "LE": le, "LR": lr, "SELD": seld}, abs=1e-6)
    assert any("4 predicted rows after a clip's last reference frame were not scored" in n for n in s.notes)
    # Counting the false alarms (the old reading) would have given class b FP = 2 segments.


def test_the_last_reference_frame_is_outside_when_it_opens_a_segment(tmp_path):
    ref = [f"{f},0,0,30,0" for f in range(11)]  # frames 0..10
    s = score(tmp_path, ref, [f"{f},0,0,30,0" for f in range(10)], classes=("a",))
    # nb_ref_frames = 10 -> ceil(10 / 10) = 1 segment: frame 10 is not scored, so all is perfect
    assert s.results["dcase2023"]["ER"] == pytest.approx(0.0) and s.results["dcase2023"]["F"] == pytest.approx(1.0)


def test_2024_references_in_cm_predictions_in_metres(tmp_path):
    ref = [f"{f},0,0,30,0,200" for f in range(12)]  # 2 m, in cm as STARSS23 writes them
    pred = [f"{f},0,0,30,0,2.5" for f in range(12)]  # metres, as the official output format has them
    s = score(tmp_path, ref, pred, fmt="dcase2024", classes=("a",))
    # frames 0..10 scored (nb_ref_frames = 11); each a match with |2.5 - 2| / 2 = 0.25 <= 1: a TP
    r = s.results["dcase2024"]
    assert r["RDE"] == pytest.approx(0.25) and r["DE"] == pytest.approx(0.5) and r["F"] == pytest.approx(1.0)
    assert r["SELD"] == pytest.approx(np.mean([1 - 1.0, 0.0 / 180, 0.25]), abs=1e-6)


def test_2024_averages_every_class_even_those_never_detected():
    # class 0: found every frame (DOA error 10 deg, distance exact); class 1: referenced, never predicted
    def xyz(deg):
        return (math.cos(math.radians(deg)), math.sin(math.radians(deg)), 0.0)

    ref = {f: [Detection(0, 0, xyz(0), 2.0), Detection(1, 0, xyz(90), 1.0)] for f in range(10)}
    pred = {f: [Detection(0, 0, xyz(10), 2.0)] for f in range(10)}
    m = SeldMetrics2024(2)
    m.update(pred, ref, 10)
    r = m.results()
    # per class (official `compute_seld_scores`, macro): F = TP / (TP + FP_sp + (FP + FN) / 2)
    f0, f1 = 10 / (EPS + 10), 0 / (EPS + 0 + 0.5 * 10)
    doae0 = 10.0  # class 1 has no matched pair: NaN, left out of the nanmean
    lr0, lr1 = 10 / (EPS + 10), 0.0
    seld0 = np.mean([1 - f0, doae0 / 180, 0.0])
    seld1 = 1 - f1  # nanmean([1 - F, NaN, NaN])
    assert r["F"] == pytest.approx((f0 + f1) / 2) and r["LR"] == pytest.approx((lr0 + lr1) / 2)
    assert r["DOAE"] == pytest.approx(doae0, abs=1e-4) and r["RDE"] == pytest.approx(0.0)
    assert r["SELD"] == pytest.approx((seld0 + seld1) / 2, abs=1e-6)  # not seld0 alone (classes with F 0 count)


def test_2024_without_predicted_distances_scores_direction_only(tmp_path):
    ref = [f"{f},0,0,30,0,200" for f in range(12)]
    s = score(tmp_path, ref, [f"{f},0,0,30,0" for f in range(12)], fmt="dcase2024", classes=("a",))
    r = s.results["dcase2024"]
    assert "RDE" not in r and r["F"] == pytest.approx(1.0) and r["SELD"] == pytest.approx(0.0, abs=1e-6)
    assert any("without distance" in n for n in s.notes)


def test_2024_without_predicted_distances_is_the_official_four_term_score():
    # class 0: found every frame at 10 deg; class 1: referenced every frame, never predicted. The
    # official `evaluate_distance=False` score is nanmean(ER, 1 - F, AE / 180, 1 - LR) per class.
    def xyz(deg):
        return (math.cos(math.radians(deg)), math.sin(math.radians(deg)), 0.0)

    ref = {f: [Detection(0, 0, xyz(0)), Detection(1, 0, xyz(90))] for f in range(10)}
    pred = {f: [Detection(0, 0, xyz(10))] for f in range(10)}
    m = SeldMetrics2024(2, eval_distance=False)
    m.update(pred, ref, 10)
    r = m.results()
    # per frame: class 1 a miss (loc_FN 1, loc_FP 0) -> D += 1; N_ref = 2 per frame -> ER = 10 / 20
    er = 10 / (20 + EPS)
    f0, f1 = 10 / (EPS + 10), 0.0
    lr0, lr1 = 10 / (EPS + 10), 0.0
    seld0 = np.mean([er, 1 - f0, 10.0 / 180, 1 - lr0])
    seld1 = np.mean([er, 1 - f1, 1 - lr1])  # AE NaN (no matched pair) drops out of the nanmean
    assert r["ER"] == pytest.approx(0.5) and set(r) == {"ER", "F", "DOAE", "LR", "SELD"}
    assert r["SELD"] == pytest.approx((seld0 + seld1) / 2, abs=1e-6)  # 0.4722; mean(1-F, AE/180) gave 0.5139


def test_a_class_never_in_the_references_is_named(tmp_path):
    s = score(tmp_path, ["0,0,0,30,0", "5,0,0,30,0"], ["0,0,0,30,0"])
    assert any("never in the references: b" in n and "F 0, LE 180" in n for n in s.notes)


def test_checkpoint_mode_on_a_2024_dataset_scores_the_2024_metrics_without_distance(tmp_path):
    from at2seld_edge.data.formats import TrackTargets
    from at2seld_edge.data.spec import Clip
    from at2seld_edge.evaluation.evaluate import ClipOutput, evaluate_outputs

    n = 20
    targets = TrackTargets(np.zeros((n, 3, 2), np.float32), np.zeros((n, 3, 2, 3), np.float32),
                           np.zeros((n, 3, 2), np.float32))
    targets.activity[:15, 0, 0] = 1
    targets.doa[:15, 0, 0] = (1.0, 0.0, 0.0)
    targets.distance[:15, 0, 0] = 2.0
    probs = np.zeros((n, 3, 2), np.float32)
    probs[:15, 0, 0] = 0.9
    doa = np.zeros((n, 3, 2, 3), np.float32)
    doa[..., 0] = 1.0
    out = ClipOutput(Clip("dev/fold1_room1_mix001", None, None, 1, 1, n * 2400), probs, doa, targets)
    s = evaluate_outputs([out], np.array([0.5, 0.5]), ["a", "b"], tmp_path, with_2024=True)
    r = s.results["dcase2024"]
    assert "RDE" not in r and r["DOAE"] == pytest.approx(0.0, abs=1e-4)
    assert r["F"] == pytest.approx(0.5)  # class a perfect over frames 0..13, class b never referenced
    # SELD per class nanmean(ER, 1 - F, DOAE / 180, 1 - LR): a (0, 0, 0, 0), b (0, 1, NaN, 1)
    assert r["SELD"] == pytest.approx(np.mean([0.0, 2 / 3]), abs=1e-6)
    assert any("without distance" in note for note in s.notes)
    assert (tmp_path / "metrics.json").is_file() and "dcase2024" in (tmp_path / "per_class.md").read_text()

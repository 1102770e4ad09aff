"""DCASE SELD metrics on hand-built cases, with the values the definitions give."""

from __future__ import annotations

import math

import pytest

from at2seld_edge.evaluation.metrics import Detection, SeldMetrics2023, SeldMetrics2024

FRONT = (1.0, 0.0, 0.0)
LEFT = (0.0, 1.0, 0.0)


def rotated(deg: float) -> tuple[float, float, float]:
    return (math.cos(math.radians(deg)), math.sin(math.radians(deg)), 0.0)


def frames(*tracks, n=10, distance=None):
    """tracks: (cls, track_id, xyz, frames) -> {frame: [Detection]}."""
    out: dict[int, list[Detection]] = {}
    for cls, tid, xyz, fr in tracks:
        for f in fr:
            out.setdefault(f, []).append(Detection(cls, tid, xyz, distance))
    return out


ALL = range(10)


def score(pred, ref, n_classes=1, n_frames=10):
    m = SeldMetrics2023(n_classes)
    m.update(pred, ref, n_frames)
    return m.results()


def test_reference_against_itself_is_perfect():
    ref = frames((0, 0, FRONT, ALL), (1, 0, LEFT, range(3, 8)), (1, 1, FRONT, range(5, 9)))
    r = score(ref, ref, n_classes=2)
    assert r == pytest.approx({"ER": 0.0, "F": 1.0, "LE": 0.0, "LR": 1.0, "SELD": 0.0}, abs=1e-6)


def test_a_miss():
    r = score({}, frames((0, 0, FRONT, ALL)))
    # one deletion over one reference track; no detection, no localization
    assert r == pytest.approx({"ER": 1.0, "F": 0.0, "LE": 180.0, "LR": 0.0, "SELD": 1.0})


def test_a_false_alarm():
    ref = frames((0, 0, FRONT, ALL))
    pred = frames((0, 0, FRONT, ALL), (1, 0, LEFT, range(2, 6)))
    r = score(pred, ref, n_classes=2)
    # class 0 perfect; class 1: FP = 1, no TP. One insertion over N_ref = 1 -> ER = 1.
    # F = mean(1, 0); LE = mean(0, 180); LR = mean(1, 0); SELD = mean((1+0+0+0)/4, (1+1+1+1)/4)
    assert r == pytest.approx({"ER": 1.0, "F": 0.5, "LE": 90.0, "LR": 0.5, "SELD": 0.625})


def test_a_30_degree_error():
    r = score(frames((0, 0, rotated(30), ALL)), frames((0, 0, FRONT, ALL)))
    # matched track with mean error 30 > 20: a spatial false positive (and an insertion);
    # localization still counts it: LE = 30, LR = 1
    assert r == pytest.approx({"ER": 1.0, "F": 0.0, "LE": 30.0, "LR": 1.0, "SELD": (1 + 1 + 30 / 180 + 0) / 4})


def test_a_15_degree_error_is_a_true_positive():
    r = score(frames((0, 0, rotated(15), ALL)), frames((0, 0, FRONT, ALL)))
    assert r == pytest.approx({"ER": 0.0, "F": 1.0, "LE": 15.0, "LR": 1.0, "SELD": 15 / 180 / 4})


def test_swapped_track_ids_do_not_matter():
    ref = frames((0, 0, FRONT, ALL), (0, 1, LEFT, ALL))
    pred = frames((0, 1, FRONT, ALL), (0, 0, LEFT, ALL))  # same sources, track numbers swapped
    assert score(pred, ref) == pytest.approx({"ER": 0.0, "F": 1.0, "LE": 0.0, "LR": 1.0, "SELD": 0.0}, abs=1e-6)


def test_one_of_two_same_class_sources_missed():
    ref = frames((0, 0, FRONT, ALL), (0, 1, LEFT, ALL))
    r = score(frames((0, 0, LEFT, ALL)), ref)
    # N_ref = 2; the prediction matches the LEFT source (TP); one reference track unmatched (FN)
    # F = 1 / (1 + 0 + 0.5 * 1) = 2/3; LR = 1/2; ER = 1 deletion / 2
    assert r == pytest.approx({"ER": 0.5, "F": 2 / 3, "LE": 0.0, "LR": 0.5, "SELD": (0.5 + 1 / 3 + 0 + 0.5) / 4})


def test_segments_are_scored_separately():
    # present in segment 0 only, predicted in segment 1 only: a miss and a false alarm
    r = score(frames((0, 0, FRONT, range(10, 20))), frames((0, 0, FRONT, range(10))), n_frames=20)
    # per segment: seg 0 D = 1, seg 1 I = 1 -> ER = 2 / 1
    assert r["ER"] == pytest.approx(2.0) and r["F"] == pytest.approx(0.0)


def test_2024_variant_with_distances():
    ref = frames((0, 0, FRONT, ALL), distance=2.0)
    m = SeldMetrics2024(1)
    m.update(frames((0, 0, rotated(10), ALL), distance=2.5), ref, 10)
    r = m.results()
    # every frame a TP: 10 deg <= 20 and relative distance error 0.25 <= 1
    assert r["F"] == pytest.approx(1.0) and r["DOAE"] == pytest.approx(10.0, abs=1e-4)
    assert r["RDE"] == pytest.approx(0.25) and r["DE"] == pytest.approx(0.5)
    assert r["SELD"] == pytest.approx((0 + 10 / 180 + 0.25) / 3, abs=1e-6)
    far = SeldMetrics2024(1)
    far.update(frames((0, 0, FRONT, ALL), distance=5.0), ref, 10)
    assert far.results()["F"] == pytest.approx(0.0)  # relative distance error 1.5 > 1: spatial FP


def test_2024_reference_against_itself():
    ref = frames((0, 0, FRONT, ALL), (1, 3, LEFT, range(4)), distance=1.5)
    m = SeldMetrics2024(2)
    m.update(ref, ref, 10)
    r = m.results()
    assert r["ER"] == pytest.approx(0) and r["F"] == pytest.approx(1) and r["DOAE"] == pytest.approx(0, abs=1e-4)
    assert r["RDE"] == pytest.approx(0) and r["LR"] == pytest.approx(1)

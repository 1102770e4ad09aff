"""Permutation-aware track losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from at2seld_edge.training.losses import candidate_maps, focal_bce_with_logits, seld_track_loss, semantic_presence_loss

X, Y, Z = torch.eye(3)


def case(kind="pit"):
    """One frame, one class, two events (X in target track 0, Y in track 1)."""
    act = torch.zeros(1, 1, 3, 1)
    act[0, 0, :2, 0] = 1
    tgt = torch.zeros(1, 1, 3, 1, 3)
    tgt[0, 0, 0, 0], tgt[0, 0, 1, 0] = X, Y
    return act, tgt


def prediction(assign: dict[int, torch.Tensor]):
    """Output tracks in `assign` active with the given vectors, the others silent."""
    logits = torch.full((1, 1, 3, 1), -12.0)
    doa = torch.zeros(1, 1, 3, 1, 3)
    for n, v in assign.items():
        logits[0, 0, n, 0] = 12.0
        doa[0, 0, n, 0] = v
    return logits, doa


def test_candidate_tables():
    pit, adpit = candidate_maps("pit", 3), candidate_maps("adpit", 3)
    assert pit.shape == adpit.shape == (4, 6, 3)
    assert {tuple(m) for m in adpit[2].tolist()} == {(0, 0, 1), (0, 1, 0), (1, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 0)}
    assert {tuple(m) for m in pit[1].tolist()} == {(0, -1, -1), (-1, 0, -1), (-1, -1, 0)}


def test_pit_chooses_the_right_permutation():
    act, tgt = case()
    # the events come out in tracks 2 and 0, swapped relative to the target order
    logits, doa = prediction({2: X, 0: Y})
    out = seld_track_loss(logits, doa, act, tgt, kind="pit")
    assert out["loss"] < 1e-4 and out["doa"] == 0
    # the same vectors in the same tracks, but the wrong pairing costs
    wrong = seld_track_loss(*prediction({2: Y, 0: Y}), act, tgt, kind="pit")
    assert wrong["doa"] > 0.3


def test_adpit_accepts_a_duplicated_event():
    act, tgt = case()
    logits, doa = prediction({0: X, 1: Y, 2: Y})  # all three tracks active, Y duplicated
    assert seld_track_loss(logits, doa, act, tgt, kind="adpit")["loss"] < 1e-4
    assert seld_track_loss(logits, doa, act, tgt, kind="pit")["loss"] > 1.0  # PIT wants track 2 silent


def test_doa_supervision_active_ignores_inactive_tracks():
    act, tgt = case()
    logits, doa = prediction({0: X, 1: Y})
    doa[0, 0, 2, 0] = Z  # an inactive track points anywhere
    assert seld_track_loss(logits, doa, act, tgt, doa_supervision="active")["doa"] == 0
    assert seld_track_loss(logits, doa, act, tgt, doa_supervision="all")["doa"] > 0


def test_focal_loss():
    logits, target = torch.tensor([3.0, -1.0, 0.2]), torch.tensor([1.0, 0.0, 1.0])
    torch.testing.assert_close(focal_bce_with_logits(logits, target, 0.0),
                               F.binary_cross_entropy_with_logits(logits, target, reduction="none"))
    focal = focal_bce_with_logits(logits, target, 2.0)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = torch.tensor([torch.sigmoid(torch.tensor(3.0)), 1 - torch.sigmoid(torch.tensor(-1.0)), torch.sigmoid(torch.tensor(0.2))])
    torch.testing.assert_close(focal, (1 - p_t) ** 2 * bce)


def test_semantic_presence_loss_targets_any_activity():
    act = torch.zeros(2, 4, 3, 2)
    act[0, 1, 2, 1] = 1
    logits = torch.tensor([[-20.0, 20.0], [-20.0, -20.0]])
    assert semantic_presence_loss(logits, act) < 1e-6


def test_gradients_flow_through_the_chosen_candidate():
    act, tgt = case()
    logits, doa = prediction({0: X})
    logits.requires_grad_(True)
    doa.requires_grad_(True)
    seld_track_loss(logits, doa, act, tgt)["loss"].backward()
    assert logits.grad.abs().sum() > 0 and doa.grad.abs().sum() > 0

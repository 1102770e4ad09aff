"""Tiny synthetic data and tiny configs shared by the training tests."""

from __future__ import annotations

import pytest
import torch

from at2seld_edge.data.spec import load_dataset
from at2seld_edge.data.synth import synthesize
from tests.conftest import variant

TINY_CLASSES = ["tone", "clicks", "sweep_up"]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from a second intra-op thread, and on a shared 2-core machine a
    second thread spinning at every op's barrier makes them several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    # 6 clips of 2 s: 4 train, 1 validation, 1 test
    return load_dataset(synthesize(root, 6, seed=3, seconds=2.0, classes=TINY_CLASSES))


def tiny_config(**training):
    return variant(training={"batch_size": 2, "segment_seconds": 1.0, "lr": 3e-3, "restart_epochs": 50, **training})


def plain_config(**training):
    """The tiny config without augmentation and dropout: on 4 steps an epoch their noise hides
    the loss going down; and without random masks a run is a function of the seed alone,
    whatever the process count (FOA rotations, seeded per segment, may be turned back on)."""
    return variant(training={"batch_size": 2, "segment_seconds": 1.0, "lr": 3e-3, "restart_epochs": 50,
                             "augment": {"spec_augment": False, "foa_rotations": False}, **training},
                   backbone={"dropout": 0.0}, spatial_encoder={"dropout": 0.0}, track_transformer={"dropout": 0.0})

"""The segment dataset: targets as the whole-clip targets give them, reads of one segment's
samples only, nothing that grows per loader worker, augmentation seeded per segment."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import soundfile as sf

from at2seld_edge.data import dataset as dataset_module
from at2seld_edge.data.dataset import EventStore, SegmentDataset, clip_targets, read_audio
from at2seld_edge.data.formats import FrameEvent
from at2seld_edge.data.spec import Clip, load_dataset
from at2seld_edge.data.synth import synthesize

HOP, TRACKS = 2400, 3


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("segments")
    data = load_dataset(synthesize(root, 3, seed=7, seconds=2.5, classes=["tone", "clicks", "sweep_up"]))
    return data.clips("train") + data.clips("val") + data.clips("test")


def crowded_clip() -> Clip:
    """Four same-class sources in one frame (one more than the tracks), sources out of order,
    an event past the audio's end, distances."""
    ev = [FrameEvent(3, 1, s, 10.0 * s, -5.0 * s, 1.5 + s) for s in (3, 0, 2, 1)]
    ev += [FrameEvent(3, 0, 0, 90.0, 0.0), FrameEvent(7, 2, 4, -120.0, 30.0, 2.0), FrameEvent(25, 2, 0, 0.0, 0.0)]
    return Clip("crowded", None, None, 1, 1, 20 * HOP + 100, ev)


@pytest.mark.parametrize("segment_frames", [4, 7, 10])
def test_segment_targets_are_the_clip_targets_cut_and_padded(clips, segment_frames):
    all_clips = clips + [crowded_clip()]
    ds = SegmentDataset(all_clips, HOP, 3, TRACKS, segment_frames)
    n = 0
    for ci, clip in enumerate(all_clips):
        whole = clip_targets(clip, HOP, 3, TRACKS)
        for start in range(0, len(whole.activity), segment_frames):
            act, doa, dist = ds.events.targets(ci, start, segment_frames, 3, TRACKS)
            stop = min(start + segment_frames, len(whole.activity))
            np.testing.assert_array_equal(act[: stop - start], whole.activity[start:stop])
            np.testing.assert_allclose(doa[: stop - start], whole.doa[start:stop], atol=1e-7)
            np.testing.assert_allclose(dist[: stop - start], whole.distance[start:stop], atol=1e-7)
            assert not act[stop - start:].any() and not doa[stop - start:].any()
            n += 1
    assert n == len(ds)


def test_items_read_only_their_segment(clips, monkeypatch):
    reads = []
    real = sf.read

    def spy(path, start=0, stop=None, **kw):
        reads.append((start, stop))
        return real(path, start=start, stop=stop, **kw)

    monkeypatch.setattr(dataset_module.sf, "read", spy)
    ds = SegmentDataset(clips, HOP, 3, TRACKS, 10)
    item = ds[1]  # the second second-long segment of the first clip
    assert reads == [(10 * HOP, 20 * HOP)]
    np.testing.assert_array_equal(item["audio"].numpy(), read_audio(clips[0], 10 * HOP, 20 * HOP))
    assert item["clip"] == f"{clips[0].name}@{10 * HOP}"
    tail = ds[2]  # 2.5 s clip: the last segment is half audio, half zeros
    assert reads[-1] == (20 * HOP, clips[0].samples) and tail["audio"].shape == (4, 10 * HOP)
    assert not tail["audio"][:, clips[0].samples - 20 * HOP:].any()


def test_holds_flat_arrays_not_per_event_objects(clips):
    """Forked loader workers share what the dataset holds until something touches a reference
    count: flat numpy arrays have one, a list of events or clips one per item."""
    ds = SegmentDataset(clips, HOP, 3, TRACKS, 10, foa_augment=True)
    held = {**vars(ds), **vars(ds.events)}
    for name, value in held.items():
        assert isinstance(value, (np.ndarray, int, bool, EventStore)), name
        if isinstance(value, np.ndarray):
            assert value.dtype != object, name
    events = sum(len(c.events) for c in clips)
    assert ds.events.frame.nbytes + ds.events.xyz.nbytes + ds.events.distance.nbytes < 24 * events
    assert len(pickle.dumps(ds)) < 30 * events + 4000  # what a spawned worker is sent


def test_augmentation_is_seeded_by_segment_and_epoch_not_by_call_order(clips):
    ds = SegmentDataset(clips, HOP, 3, TRACKS, 10, foa_augment=True, seed=4)
    forward = [ds[(i, 2)]["audio"].numpy() for i in range(len(ds))]
    backward = [ds[(i, 2)]["audio"].numpy() for i in reversed(range(len(ds)))][::-1]
    for a, b in zip(forward, backward):
        np.testing.assert_array_equal(a, b)
    by_epoch = {ds[(0, e)]["audio"].numpy().tobytes() for e in range(8)}
    assert len(by_epoch) > 1  # a segment is rotated differently from epoch to epoch

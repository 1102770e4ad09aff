"""Dataset readers on tiny files in every DCASE layout, and their errors."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import yaml

from at2seld_edge.data.formats import LABEL_FORMATS, TrackTargets
from at2seld_edge.data.spec import load_dataset
from at2seld_edge.errors import EdgeError

SR = 24000


def write_wav(path, seconds=1.0, channels=4, sr=SR):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.zeros((int(sr * seconds), channels), np.float32), sr, subtype="PCM_16")


def make_dataset(root, fmt, files: dict[str, str], splits=None, **spec_extra):
    """files: relative stem -> CSV text; a 1 s FOA wav is written for each."""
    for stem, text in files.items():
        (root / "metadata_dev" / f"{stem}.csv").parent.mkdir(parents=True, exist_ok=True)
        (root / "metadata_dev" / f"{stem}.csv").write_text(text)
        write_wav(root / "foa_dev" / f"{stem}.wav")
    spec = {"name": "tiny", "format": fmt, "sample_rate": SR, "splits": splits or {"train": {"folds": [1]}, "test": {"folds": [2]}},
            **spec_extra}
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    return load_dataset(root / "spec.yaml")


FRAME_CSV = "0,1,0,90,0\n1,1,0,90,0\n1,1,3,-90,10\n2,4,0,0,-20\n"


@pytest.mark.parametrize("fmt,n_classes", [("dcase2023", 13), ("tau-nigens-2021", 12), ("tau-nigens-2020", 14)])
def test_frame_formats(tmp_path, fmt, n_classes):
    ds = make_dataset(tmp_path, fmt, {"dev-train/fold1_room1_mix001": FRAME_CSV, "dev-test/fold2_room3_mix002": "0,0,0,0,0\n"})
    assert len(ds.classes) == n_classes
    (clip,) = ds.clips("train")
    assert (clip.fold, clip.room, clip.samples) == (1, 1, SR)
    t = TrackTargets.from_events(clip.events, 10, n_classes, 3)
    # frame 1 has two class-1 sources: they fill tracks 0 and 1, in source order
    assert t.activity[1, :, 1].tolist() == [1, 1, 0]
    np.testing.assert_allclose(t.doa[1, 0, 1], [0, 1, 0], atol=1e-6)  # azimuth 90 = +y (left)
    np.testing.assert_allclose(t.doa[1, 1, 1], [0, -np.cos(np.radians(10)), np.sin(np.radians(10))], atol=1e-6)
    assert t.activity.sum() == 4 and t.activity[0].sum() == 1


def test_dcase2024_distance_is_read_in_metres(tmp_path):
    ds = make_dataset(tmp_path, "dcase2024", {"fold1_room1_mix001": "3,2,0,30,0,250\n", "fold2_room1_mix002": "0,0,0,0,0,100\n"})
    (clip,) = ds.clips("train")
    assert clip.events[0].distance == pytest.approx(2.5)
    t = TrackTargets.from_events(clip.events, 10, 13, 3)
    assert t.distance[3, 0, 2] == pytest.approx(2.5)


def test_tau2019_onset_offset_rows(tmp_path):
    csv = "sound_event_recording,start_time,end_time,ele,azi,dist\nspeech12,0.25,0.61,10,-40,2\ncough3,0.0,0.1,0,0,1\n"
    ds = make_dataset(tmp_path, "tau2019", {"split1_ir0_ov1_1": csv, "split2_ir1_ov1_2": csv})
    (clip,) = ds.clips("train")
    speech = LABEL_FORMATS.get("tau2019").classes.index("speech")
    frames = sorted(e.frame for e in clip.events if e.cls == speech)
    assert frames == [2, 3, 4, 5, 6]  # [floor(0.25/0.1), ceil(0.61/0.1))
    assert {e.distance for e in clip.events} == {2.0, 1.0}


def test_split_by_room(tmp_path):
    ds = make_dataset(tmp_path, "dcase2023", {"fold1_room1_mix001": FRAME_CSV, "fold1_room2_mix002": FRAME_CSV},
                      splits={"a": {"rooms": [2]}, "b": {"folds": [1], "rooms": [1]}})
    assert [c.name for c in ds.clips("a")] == ["fold1_room2_mix002"]
    assert [c.name for c in ds.clips("b")] == ["fold1_room1_mix001"]


@pytest.mark.parametrize("csv,message", [
    ("0,1,0,90,0\n0,1,0,abc,0\n", ":2: not a number"),
    ("0,1,0,90\n", ":1: expected 5 columns"),
    ("0,13,0,90,0\n", ":1: class index 13 out of range (the dataset has 13 classes)"),
    ("0,1,0,500,0\n", ":1: direction out of range"),
])
def test_bad_rows_are_named_by_file_and_line(tmp_path, csv, message):
    ds = make_dataset(tmp_path, "dcase2023", {"fold1_room1_mix001": csv})
    with pytest.raises(EdgeError, match="fold1_room1_mix001.csv" + message.replace("(", r"\(").replace(")", r"\)")):
        ds.clips("train")


def test_bad_audio_and_skip_bad(tmp_path):
    ds = make_dataset(tmp_path, "dcase2023", {f"fold1_room1_mix00{i}": FRAME_CSV for i in range(1, 5)})
    write_wav(tmp_path / "foa_dev" / "fold1_room1_mix002.wav", channels=2)
    write_wav(tmp_path / "foa_dev" / "fold1_room1_mix003.wav", sr=48000)
    (tmp_path / "foa_dev" / "fold1_room1_mix004.wav").unlink()
    with pytest.raises(EdgeError, match=r"mix002.wav: 2 channels, expected 4"):
        ds.clips("train")
    skipped: list[str] = []
    clips = ds.clips("train", skip_bad=True, skipped=skipped)
    assert [c.name for c in clips] == ["fold1_room1_mix001"]
    assert len(skipped) == 3
    assert "sample rate 48000 Hz, the dataset spec says 24000 Hz" in skipped[1]
    assert "no audio file" in skipped[2]


def test_empty_split_and_unknown_split(tmp_path):
    ds = make_dataset(tmp_path, "dcase2023", {"fold1_room1_mix001": FRAME_CSV})
    with pytest.raises(EdgeError, match="split 'test' is empty"):
        ds.clips("test")
    with pytest.raises(EdgeError, match="no split 'val'"):
        ds.clips("val")


def test_spec_validation(tmp_path):
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({"name": "x", "format": "dcase2077", "splits": {}}))
    with pytest.raises(EdgeError, match=r"spec.yaml: key `format`: unknown label format 'dcase2077'"):
        load_dataset(tmp_path / "spec.yaml")
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({"name": "x", "format": "dcase2023", "splits": {}, "smaple_rate": 1}))
    with pytest.raises(EdgeError, match="key `smaple_rate`: unknown key"):
        load_dataset(tmp_path / "spec.yaml")


def test_too_many_same_class_sources_are_counted(tmp_path):
    csv = "".join(f"0,2,{s},{10 * s},0\n" for s in range(5))
    ds = make_dataset(tmp_path, "dcase2023", {"fold1_room1_mix001": csv})
    t = TrackTargets.from_events(ds.clips("train")[0].events, 10, 13, 3)
    assert t.activity[0, :, 2].tolist() == [1, 1, 1] and t.dropped == 2

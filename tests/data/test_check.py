"""`edge data check` and the dataset reader refuse silent bad input: non-finite or truncated
audio, labels past the audio, absurd frames, odd specs; and flag stray files and shared rooms."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import yaml

from at2seld_edge.data.spec import load_dataset
from at2seld_edge.errors import EdgeError
from tests.data.test_formats import SR, make_dataset, write_wav

CLIPS = {"dev/fold1_room1_mix001": "0,0,0,90,0\n", "dev/fold2_room2_mix002": "3,0,0,0,0\n"}


def test_a_clean_dataset_checks_with_counts(tmp_path):
    report = make_dataset(tmp_path, "dcase2023", CLIPS).check()
    assert report.splits["train"].clips == 1 and report.splits["test"].event_frames == 1
    assert report.warnings == [] and report.files_read == 2


def test_non_finite_samples_are_refused_naming_file_and_sample(tmp_path):
    ds = make_dataset(tmp_path, "dcase2023", CLIPS)
    wav = tmp_path / "foa_dev" / "dev" / "fold2_room2_mix002.wav"
    audio = np.zeros((SR, 4), np.float32)
    audio[777, 3] = np.inf
    sf.write(str(wav), audio, SR, subtype="FLOAT")
    with pytest.raises(EdgeError, match=r"fold2_room2_mix002.wav: non-finite sample \(NaN or Inf\) at sample 777, channel 3"):
        ds.check()
    report = ds.check(skip_bad=True)
    assert report.splits["test"].clips == 0 and "sample 777" in report.skipped[0]
    silent = np.zeros((SR, 4), np.float32)  # all-silent audio is fine
    sf.write(str(wav), silent, SR, subtype="FLOAT")
    assert ds.check().splits["test"].clips == 1


def test_a_truncated_wav_is_refused(tmp_path):
    ds = make_dataset(tmp_path, "dcase2023", CLIPS)
    wav = tmp_path / "foa_dev" / "dev" / "fold1_room1_mix001.wav"
    wav.write_bytes(wav.read_bytes()[: 44 + 4 * 2 * 1000])  # header says 1 s, 1000 frames remain
    with pytest.raises(EdgeError, match="fold1_room1_mix001.wav: truncated: its header declares 24000 frames, the file holds 1000"):
        ds.clips("train")


def test_label_frames_past_the_audio_are_refused(tmp_path):
    ds = make_dataset(tmp_path, "dcase2023", {**CLIPS, "dev/fold1_room1_mix001": "0,0,0,90,0\n12,0,0,90,0\n"})
    with pytest.raises(EdgeError, match=r"fold1_room1_mix001.csv: label frame 12 starts after the audio ends"):
        ds.clips("train")


@pytest.mark.parametrize("row, message", [
    ("0,0,-1,0,0", "source id -1 outside 0..65535"),
    ("0,0,5000000,0,0", "source id 5000000 outside 0..65535"),  # a column mix-up, not a clip's events
    ("900000,0,0,0,0", "frame 900000 outside 0..864000"),
])
def test_absurd_label_rows(tmp_path, row, message):
    ds = make_dataset(tmp_path, "dcase2023", {**CLIPS, "dev/fold1_room1_mix001": row + "\n"})
    with pytest.raises(EdgeError, match=message):
        ds.clips("train")


def test_stray_files_and_shared_rooms_are_flagged(tmp_path):
    ds = make_dataset(tmp_path, "dcase2023", {"dev/fold1_room1_mix001": "0,0,0,0,0\n",
                                              "dev/fold2_room1_mix002": "0,0,0,0,0\n"})
    write_wav(tmp_path / "foa_dev" / "dev" / "fold1_room1_mix009.wav")
    report = ds.check()
    assert any("fold1_room1_mix009.wav: no label CSV" in w for w in report.warnings)
    assert any("splits test and train share room(s) 1" in w for w in report.warnings)


@pytest.mark.parametrize("spec_extra, message", [
    ({"sample_rate": 4000}, "sample_rate"),
    ({"sample_rate": 400000}, "sample_rate"),
    ({"classes": ["a", "b", "a"]}, "class name(s) given twice: a"),
])
def test_spec_bounds(tmp_path, spec_extra, message):
    with pytest.raises(EdgeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_dataset(tmp_path, "dcase2023", CLIPS, **spec_extra)


def test_yaml_duplicate_keys_and_non_utf8_are_refused_with_the_line(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: a\nformat: dcase2023\nname: b\nsplits: {}\n")
    with pytest.raises(EdgeError, match=r"spec.yaml:3: not valid YAML: key 'name' appears twice \(lines 1 and 3\)"):
        load_dataset(spec)
    spec.write_bytes("name: caf\u00e9\nformat: dcase2023\n".encode("latin-1"))
    with pytest.raises(EdgeError, match=r"spec.yaml:1: not UTF-8 text \(byte 9: 0xe9\)"):
        load_dataset(spec)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({"name": "x"}) + "name: y\n")
    from at2seld_edge.config import load_config

    with pytest.raises(EdgeError, match="cfg.yaml:2: not valid YAML: key 'name' appears twice"):
        load_config(tmp_path / "cfg.yaml")


def test_samples_of_absurd_magnitude_are_refused_like_non_finite_ones(tmp_path):
    ds = make_dataset(tmp_path, "dcase2023", CLIPS)
    wav = tmp_path / "foa_dev" / "dev" / "fold2_room2_mix002.wav"
    audio = np.zeros((SR, 4), np.float32)
    audio[5, 1] = 1e30  # finite, so it passed, and overflowed the features to Inf in training
    sf.write(str(wav), audio, SR, subtype="FLOAT")
    with pytest.raises(EdgeError, match=r"fold2_room2_mix002.wav: sample 1e\+30 at sample 5, channel 1: float audio "
                                        r"lies in \[-1, 1\]"):
        ds.check()
    assert "sample 5" in ds.check(skip_bad=True).skipped[0]
    audio[5, 1] = 1.5  # a little over full scale is audio
    sf.write(str(wav), audio, SR, subtype="FLOAT")
    assert ds.check().splits["test"].clips == 1


def test_an_empty_label_file_is_a_warning_naming_it(tmp_path):
    report = make_dataset(tmp_path, "dcase2023", {**CLIPS, "dev/fold1_room1_mix001": ""}).check()
    assert report.splits["train"].clips == 1  # a silent clip is data, so it is kept ...
    assert [w for w in report.warnings if "no events" in w] == [  # ... and named
        f"{tmp_path / 'metadata_dev' / 'dev' / 'fold1_room1_mix001.csv'}: no events (an empty label file): the clip "
        "trains and scores as silence; check it was not cut short"]


def test_a_fifo_as_a_label_csv_is_refused_not_waited_on(tmp_path):
    """A FIFO without a writer blocked `edge data check` forever (a subprocess, so a hang fails the test)."""
    make_dataset(tmp_path, "dcase2023", CLIPS)
    csv = tmp_path / "metadata_dev" / "dev" / "fold1_room1_mix001.csv"
    csv.unlink()
    os.mkfifo(csv)
    r = subprocess.run([sys.executable, "-m", "at2seld_edge.cli", "data", "check", "--data", str(tmp_path / "spec.yaml")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"{csv}: is a FIFO (named pipe), not a regular file; give the label file itself" in " ".join(r.stderr.split())
    csv.unlink()
    csv.write_text("0,0,0,90,0\n")
    wav = tmp_path / "foa_dev" / "dev" / "fold1_room1_mix001.wav"
    wav.unlink()
    os.mkfifo(wav)  # the audio too: refused before libsndfile opens it
    with pytest.raises(EdgeError, match=f"{wav}: not a regular file"):
        load_dataset(tmp_path / "spec.yaml").check()

"""The synthetic FOA scene generator: determinism, layout, labels that match the audio."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch

from at2seld_edge.config import load_config
from at2seld_edge.data.dataset import clip_targets, read_audio
from at2seld_edge.data.spec import load_dataset
from at2seld_edge.data.synth import DEFAULT_CLASSES, SOUND_CLASSES, Room, SceneEvent, _render_event, synthesize
from at2seld_edge.errors import EdgeError
from at2seld_edge.model.frontend import Frontend
from tests.conftest import file_size_limit


def digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix in (".wav", ".csv"):
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_deterministic_for_a_seed_and_resumable(tmp_path):
    a = synthesize(tmp_path / "a", 4, seed=5, seconds=2.0)
    b = synthesize(tmp_path / "b", 4, seed=5, seconds=2.0)
    c = synthesize(tmp_path / "c", 4, seed=6, seconds=2.0)
    assert digest(a.parent) == digest(b.parent) != digest(c.parent)
    victim = sorted((tmp_path / "a" / "foa_dev").rglob("*.wav"))[1]
    victim.unlink()  # as if killed before this clip was written
    synthesize(tmp_path / "a", 4, seed=5, seconds=2.0)
    assert digest(a.parent) == digest(b.parent)


def test_layout_spec_and_splits(tmp_path):
    spec = synthesize(tmp_path, 20, seed=1, seconds=2.0, classes=["tone", "clicks", "bell"], max_polyphony=2)
    ds = load_dataset(spec)
    assert ds.classes == ["tone", "clicks", "bell"]
    sizes = {s: len(ds.clips(s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 14, "val": 3, "test": 3}
    rooms = {s: {c.room for c in ds.clips(s)} for s in sizes}
    assert not rooms["test"] & (rooms["train"] | rooms["val"])  # test rooms are unseen
    for clip in ds.clips("train"):
        t = clip_targets(clip, 2400, 3, 3)
        assert t.activity.sum(axis=(1, 2)).max() <= 2  # polyphony cap
        assert read_audio(clip).shape == (4, 48000)


def test_bad_arguments(tmp_path):
    with pytest.raises(EdgeError, match="unknown synthetic class"):
        synthesize(tmp_path, 5, classes=["tone", "theremin"])
    with pytest.raises(EdgeError, match="at least 3"):
        synthesize(tmp_path, 2)
    synthesize(tmp_path / "x", 3, seed=0, seconds=1.0)
    with pytest.raises(EdgeError, match="made with other settings"):
        synthesize(tmp_path / "x", 3, seed=1, seconds=1.0)


def test_classes_are_distinct_sounds():
    """Every class has its own spectrum: the log-spectra of any two classes differ clearly."""
    rng = np.random.default_rng(0)
    spectra = {}
    for name in DEFAULT_CLASSES:
        x = SOUND_CLASSES[name](rng, 24000)
        p = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
        bands = np.array([b.sum() for b in np.array_split(p, 48)])
        spectra[name] = np.log10(bands / bands.sum() + 1e-9)
    names = list(spectra)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(spectra[a] - spectra[b]).mean() > 0.3, (a, b)


@pytest.mark.parametrize("az,el", [(0, 0), (90, 20), (-135, -30)])
def test_rendered_direction_matches_the_label(az, el):
    """A single static source in an anechoic room (beta 0, no tail reaching far): the intensity
    vector of the rendered FOA points at the labelled direction."""
    room = Room(np.array([30.0, 30.0, 30.0]), np.array([15.0, 15.0, 15.0]), beta=0.0)
    ev = SceneEvent(0, 0, 24000, az, el, 2.0, 0.0, 0.0)
    rng = np.random.default_rng(0)
    out = np.zeros((4, 24000))
    _render_event(ev, SOUND_CLASSES["noise_band"](rng, 24000), room, rng, out)
    fe = Frontend(load_config("at2seld-nano")).eval()
    desc, _ = fe(torch.from_numpy(out.astype(np.float32))[None])
    names = fe.descriptor_set.names
    iv = desc[0, [names.index(n) for n in ("iv_x", "iv_y", "iv_z")]].mean(dim=(1, 2)).numpy()
    az_r, el_r = math.radians(az), math.radians(el)
    truth = np.array([math.cos(el_r) * math.cos(az_r), math.cos(el_r) * math.sin(az_r), math.sin(el_r)])
    assert math.degrees(math.acos(iv @ truth / np.linalg.norm(iv))) < 5


def test_a_full_disk_is_one_line_naming_the_file_and_nothing_is_half_written(tmp_path):
    """libsndfile reported the full disk as LibsndfileError('System error.'), a traceback."""
    with file_size_limit(100_000), pytest.raises(EdgeError) as e:  # a 2 s clip's wav is 384 kB
        synthesize(tmp_path / "ds", 3, seconds=2.0)
    assert "foa_dev/dev-synth/fold" in str(e.value) and ".wav: not written: file too large" in str(e.value)
    written = [p.name for p in (tmp_path / "ds").rglob("*") if p.is_file()]
    assert written == [".dataset.yaml.partial"]  # its settings, to resume by; no partial wav, no temporary file
    assert synthesize(tmp_path / "ds", 3, seconds=2.0).is_file()  # with space again, the same command completes
    assert not (tmp_path / "ds" / ".dataset.yaml.partial").exists()

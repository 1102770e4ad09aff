"""The Python runtime: whole clips in the bundle's windows, streaming, and input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from at2seld_edge.checkpoint import load_checkpoint, model_from_checkpoint
from at2seld_edge.data.synth import synthetic_scenes
from at2seld_edge.deploy.runtime import RUNTIMES, SeldRuntime, choose_backend
from at2seld_edge.deploy.bundle import load_bundle
from at2seld_edge.errors import EdgeError


@pytest.fixture(scope="module")
def scene():
    return synthetic_scenes(1, 5.0, 11)[0]


class Recording:
    """A graph session that keeps what the stream graph returned (the raw logits)."""

    def __init__(self, session):
        self.session, self.logits = session, []

    def run(self, feeds):
        out = self.session.run(feeds)
        self.logits.append(out["sed_logits"][0, 0])
        return out


@pytest.mark.parametrize("seed", [0, 1])
def test_streaming_equals_whole_clip_for_a_causal_model(causal_bundle, scene, seed):
    """Random piece sizes, past the attention window: the logits (against PyTorch on the whole
    clip) and the DOA (against the bundle's whole-clip inference) within 1e-4."""
    rt = SeldRuntime(causal_bundle, "onnxruntime")
    audio = scene[:, : 4 * 24000 + 777]  # a ragged tail: its part-frame is dropped by both paths
    probs, doa = rt.predict(audio)
    stream = rt.stream()
    stream.session = recording = Recording(stream.session)
    rng = np.random.default_rng(seed)
    got_p, got_d, i, emitted = [], [], 0, 0
    while i < audio.shape[1]:
        n = int(rng.integers(300, 7000))
        p, d = stream.push(audio[:, i: i + n], final=i + n >= audio.shape[1])
        i += n
        emitted += len(p) > 0
        got_p.append(p)
        got_d.append(d)
    got_p, got_d = np.concatenate(got_p), np.concatenate(got_d)
    assert emitted >= 3  # frames came out along the way, not only at the end
    assert got_p.shape == probs.shape == (40, 3, 13) and rt.manifest.stream.history_frames < 40
    np.testing.assert_allclose(got_p, probs, atol=1e-5)
    np.testing.assert_allclose(got_d, doa, atol=1e-4)
    ckpt = load_checkpoint(causal_bundle.parent / "causal.pt")
    with torch.no_grad():
        whole = model_from_checkpoint(ckpt).eval()(torch.from_numpy(audio[None, :, : 40 * 2400]))
    np.testing.assert_allclose(np.stack(recording.logits), whole["sed_logits"][0].numpy(), atol=1e-4)
    np.testing.assert_allclose(got_d, whole["doa"][0].numpy(), atol=1e-4)


def test_streaming_emits_each_frame_as_its_hop_completes(causal_bundle, scene):
    rt = SeldRuntime(causal_bundle, "onnxruntime")
    assert rt.manifest.stream.lookahead_samples == 0
    stream = rt.stream()
    assert len(stream.push(scene[:, :2399])[0]) == 0
    assert len(stream.push(scene[:, 2399:2400])[0]) == 1  # the hop is complete: its frame is out
    assert len(stream.push(scene[:, 2400: 2400 * 3 + 5])[0]) == 2
    p, _ = stream.push(scene[:, 2400 * 3 + 5: 2400 * 4], final=True)
    assert len(p) == 1 and stream.filled == 0  # final: the stream is over, a new one starts from zeros
    again, _ = stream.push(scene[:, :2400])
    first, _ = rt.stream().push(scene[:, :2400])
    np.testing.assert_array_equal(again, first)


def test_non_causal_bundles_do_not_stream(fp32_bundle):
    with pytest.raises(EdgeError, match="not causal"):
        SeldRuntime(fp32_bundle, "onnxruntime").stream()


def test_input_checks(fp32_bundle):
    rt = SeldRuntime(fp32_bundle, "onnxruntime")
    with pytest.raises(EdgeError, match="2 channels, the bundle expects 4"):
        rt.predict(np.zeros((2, 24000), np.float32))
    with pytest.raises(EdgeError, match="a multiple of 2400"):
        rt.infer(np.zeros((1, 4, 2500), np.float32))
    probs, doa = rt.predict(np.zeros((4, 2400 * 3 + 5), np.float32))
    assert probs.shape == (3, 3, 8) and doa.shape == (3, 3, 8, 3)


def test_backends_are_registered_and_auto_picks_onnxruntime_without_an_engine(fp32_bundle):
    assert {"onnxruntime", "tensorrt"} <= set(RUNTIMES.names())
    assert choose_backend(load_bundle(fp32_bundle), "auto") == "onnxruntime"
    with pytest.raises(EdgeError, match="no TensorRT engine"):
        SeldRuntime(fp32_bundle, "tensorrt")
    with pytest.raises(EdgeError, match="unknown runtime backend 'tflite'"):
        SeldRuntime(fp32_bundle, "tflite")


def test_static_bundle_runs_clips_in_windows(tmp_path, scene):
    from at2seld_edge.deploy.build import BuildOptions, build

    out = tmp_path / "static"
    build(BuildOptions(target="x86-cpu", precision="fp32", seconds=2.0, out=out), say=lambda m: None)
    rt = SeldRuntime(out, "onnxruntime")
    assert not rt.manifest.window.dynamic_time and rt.manifest.window.samples == 48000
    with pytest.raises(EdgeError, match="takes 48000"):
        rt.infer(np.zeros((1, 4, 24000), np.float32))
    probs, _ = rt.predict(scene)
    assert probs.shape == (50, 3, 8)
    whole, _ = SeldRuntime(out, "onnxruntime").predict(scene[:, :48000])
    np.testing.assert_allclose(probs[:20], whole, atol=1e-6)


def test_run_file_streamed_equals_whole_file(causal_bundle, scene, tmp_path):
    import soundfile as sf

    from at2seld_edge.deploy.run import RunOptions, run_file

    wav = tmp_path / "scene.wav"
    sf.write(str(wav), scene.T, 24000, subtype="FLOAT")
    rt = SeldRuntime(causal_bundle, "onnxruntime")
    whole = run_file(rt, wav, RunOptions(tmp_path / "whole.csv", png=False))
    streamed = run_file(rt, wav, RunOptions(tmp_path / "streamed.csv", png=False, stream=True))
    assert whole.n_frames == streamed.n_frames == 50
    assert (tmp_path / "whole.csv").read_text() == (tmp_path / "streamed.csv").read_text()


def test_non_finite_audio_is_refused_or_repaired_and_silence_is_fine(fp32_bundle, scene, tmp_path):
    import soundfile as sf

    from at2seld_edge.deploy.run import RunOptions, run_file

    rt = SeldRuntime(fp32_bundle, "onnxruntime")
    probs, _ = rt.predict(np.zeros((4, 24000), np.float32))  # all silent: runs, finite
    assert np.isfinite(probs).all()
    bad = scene[:, :24000].copy()
    bad[2, 123] = np.nan
    bad[0, 500] = np.inf
    with pytest.raises(EdgeError, match="2 non-finite sample.*sample 123 of channel 2.*--repair"):
        rt.predict(bad)
    wav = tmp_path / "bad.wav"
    sf.write(str(wav), bad.T, 24000, subtype="FLOAT")
    with pytest.raises(EdgeError, match=f"{wav.name}: 2 non-finite"):
        run_file(rt, wav, RunOptions(tmp_path / "bad.csv", png=False))
    warnings = []
    result = run_file(rt, wav, RunOptions(tmp_path / "bad.csv", png=False, repair=True), warn=warnings.append)
    assert result.n_frames == 10 and "2 non-finite sample(s)" in warnings[0] and "set to 0 (--repair)" in warnings[0]


def test_absurd_sample_rates_are_refused_before_reading(fp32_bundle, tmp_path):
    import soundfile as sf

    from at2seld_edge.deploy.run import read_foa

    for rate, message in ((4000, "outside 8000-192000 Hz"), (44101, "convert the file to a common rate first")):
        wav = tmp_path / f"r{rate}.wav"
        sf.write(str(wav), np.zeros((rate // 10, 4), np.float32), rate)
        with pytest.raises(EdgeError, match=message):
            read_foa(wav, 24000, resample=True)
    wav = tmp_path / "r44100.wav"
    sf.write(str(wav), np.zeros((4410, 4), np.float32), 44100)
    assert read_foa(wav, 24000, resample=True).shape == (4, 2400)


def declare_tracks(b, tracks: int) -> None:
    """Every graph of bundle `b` (and its manifest and golden file) declares `tracks` tracks for
    sed_logits and doa, whatever the graphs compute: a lie the loader cannot see."""
    import json

    import onnx

    from tests.deploy.test_bundle_trust import rewrite

    m = json.loads((b / "manifest.json").read_text())
    graphs = [m["model"], m.get("fp16_model"), (m.get("stream") or {}).get("graph")]
    for name in filter(None, graphs):
        model = onnx.load(str(b / name))
        for out in model.graph.output:
            if out.name in ("sed_logits", "doa"):
                out.type.tensor_type.shape.dim[2].dim_value = tracks
        onnx.save(model, str(b / name))
    outputs = m["outputs"]
    outputs[0]["shape"][2] = outputs[1]["shape"][2] = tracks
    with np.load(b / "golden.npz") as z:
        golden = {k: z[k] for k in z.files}
    n, t, _, c = golden["sed_logits"].shape
    np.savez(b / "golden.npz", audio=golden["audio"], sed_logits=np.zeros((n, t, tracks, c), np.float32),
             doa=np.zeros((n, t, tracks, c, 3), np.float32))
    rewrite(b, outputs=outputs)


def test_outputs_declared_with_more_tracks_than_computed_are_refused_not_read(fp32_bundle, tmp_path):
    """Issue 21's `tracks_both`: graph and manifest both say 4 tracks, the graph computes 3."""
    import shutil

    from at2seld_edge.deploy.verify import verify

    b = tmp_path / "b"
    shutil.copytree(fp32_bundle, b)
    declare_tracks(b, 4)
    rt = SeldRuntime(b, "onnxruntime")  # graph and manifest agree: the lie shows only when it runs
    want = f"{b / 'model.fp32.onnx'}: output sed_logits came back with shape (1, 2, 3, 8); the manifest says (1, 2, 4, 8)"
    for call in (lambda: rt.predict(np.zeros((4, 4800), np.float32)), lambda: rt.infer(np.zeros((1, 4, 4800), np.float32))):
        with pytest.raises(EdgeError) as e:
            call()
        assert str(e.value) == want
    with pytest.raises(EdgeError, match=r"came back with shape \(1, 10, 3, 8\)"):
        verify(rt)


def test_a_stream_graph_declaring_more_tracks_is_refused_at_its_first_hop(causal_bundle, tmp_path):
    import shutil

    b = tmp_path / "b"
    shutil.copytree(causal_bundle, b)
    declare_tracks(b, 4)
    stream = SeldRuntime(b, "onnxruntime").stream()
    with pytest.raises(EdgeError) as e:
        stream.push(np.zeros((4, 2400), np.float32))
    assert str(e.value) == (f"{b / 'stream.onnx'}: output sed_logits came back with shape (1, 1, 3, 13); the manifest "
                            "says (1, 1, 4, 13)")


@pytest.mark.parametrize("samples, cut, expected", [
    (1000, 0, ["1000 samples, shorter than one 100 ms hop: no frames"]),
    (0, 0, ["0 samples, shorter than one 100 ms hop: no frames"]),
    (7700, 0, ["its last 500 samples (20.8 ms) are less than one 100 ms hop: dropped"]),
    (4800, 1001, ["truncated: its header promises 4,800 samples, the file holds 4,674",
                  "its last 2274 samples (94.8 ms) are less than one 100 ms hop: dropped"]),
    (4800, 0, []),
])
@pytest.mark.parametrize("stream", [False, True])
def test_audio_the_label_grid_does_not_cover_whole_is_a_warning(causal_bundle, tmp_path, samples, cut, expected, stream):
    """Short, ragged or truncated recordings run (whole hops only) and say what they lose, in the
    words at2seld-run uses; a stream of no samples is no frames, not a traceback."""
    import soundfile as sf

    from at2seld_edge.deploy.run import RunOptions, run_file

    wav = tmp_path / "clip.wav"
    sf.write(str(wav), np.full((samples, 4), 0.01, np.float32), 24000, subtype="PCM_16")
    if cut:
        wav.write_bytes(wav.read_bytes()[:-cut])
    warnings = []
    result = run_file(SeldRuntime(causal_bundle, "onnxruntime"), wav, RunOptions(tmp_path / "x.csv", png=False,
                                                                                stream=stream), warn=warnings.append)
    assert warnings == [f"warning: {wav}: {w}" for w in expected]
    assert result.n_frames == (samples - (cut + 7) // 8 if cut else samples) // 2400

"""Every command that writes refuses an output it cannot use with one line, exit 1, and loses
nothing: an existing file where a folder goes, a folder where a file goes, a read-only folder.
Run in-process (`cli.main`), so the whole matrix stays quick."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import soundfile as sf

from at2seld_edge import cli
from at2seld_edge.checkpoint import save_checkpoint
from at2seld_edge.model import build_model
from tests.conftest import variant


def run(capsys, *args: str) -> tuple[int, str]:
    old = sys.argv
    sys.argv = ["edge", *args]
    try:
        cli.main()
        code = 0
    except SystemExit as e:
        code = e.code or 0
    finally:
        sys.argv = old
    captured = capsys.readouterr()
    return code, " ".join((captured.err + captured.out).split())


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, fp32_bundle):
    root = tmp_path_factory.mktemp("inputs")
    from at2seld_edge.data.synth import synthesize

    spec = synthesize(root / "data", 3, seed=1, seconds=1.0, classes=["tone", "clicks"])
    ckpt = root / "model.pt"
    save_checkpoint(ckpt, build_model(variant(num_classes=2)), ["tone", "clicks"], [0.5, 0.5])
    wav = root / "clip.wav"
    sf.write(str(wav), np.zeros((24000, 4), np.float32), 24000)
    return {"spec": str(spec), "ckpt": str(ckpt), "wav": str(wav), "bundle": str(fp32_bundle)}


def commands(i: dict, out: str) -> dict[str, list[str]]:
    return {
        "build": ["build", "--target", "x86-cpu", "--precision", "fp32", "--out", out],
        "run": ["run", i["wav"], "--bundle", i["bundle"], "--out", out],
        "bench": ["bench", "--bundle", i["bundle"], "--iterations", "2", "--warmup", "0", "--out", out],
        "export": ["export", "--config", "at2seld-nano", "--out", out],
        "train": ["train", "--data", i["spec"], "--config", "at2seld-nano", "--epochs", "1", "--out", out],
        "evaluate": ["evaluate", "--checkpoint", i["ckpt"], "--data", i["spec"], "--out", out],
        "compress": ["compress", "--checkpoint", i["ckpt"], "--data", i["spec"], "--prune-ratio", "0.5", "--out", out],
        "profile": ["profile", "--config", "at2seld-nano", "--target", "x86-cpu", "--budget", "realtime-100ms",
                    "--iterations", "2", "--warmup", "0", "--out", out],
        "data synth": ["data", "synth", "--clips", "3", "--seconds", "1", "--out", out],
    }


FILE_OUTPUTS = {"run", "export"}


@pytest.mark.parametrize("command", list(commands({"spec": "", "ckpt": "", "wav": "", "bundle": ""}, "")))
def test_an_occupied_output_is_one_line_and_nothing_is_lost(command, inputs, tmp_path, capsys):
    if command in FILE_OUTPUTS:  # a folder where the file goes
        target = tmp_path / "taken"
        target.mkdir()
        (target / "keep.txt").write_text("mine")
        expected = "is a folder"
    else:  # a file where the folder goes
        target = tmp_path / "taken"
        target.write_text("mine")
        expected = "exists and is not a folder"
    code, text = run(capsys, *commands(inputs, str(target))[command])
    assert code == 1 and "Traceback" not in text and expected in text and str(target) in text, text
    kept = target / "keep.txt" if target.is_dir() else target
    assert kept.read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; run as a user to check this")
@pytest.mark.parametrize("command", ["build", "export", "train", "profile", "data synth"])
def test_a_read_only_folder_is_one_line(command, inputs, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, text = run(capsys, *commands(inputs, str(ro / "out"))[command])
    finally:
        ro.chmod(0o755)
    assert code == 1 and "Traceback" not in text and "permission denied" in text.lower(), text


def test_an_os_error_mid_run_is_one_line(tmp_path, capsys, monkeypatch):
    """The net under every command: the file system refusing a write is one line, exit 1."""
    from at2seld_edge import onnx_export

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device", str(tmp_path / "model.onnx"))

    monkeypatch.setattr(onnx_export, "export_onnx", full_disk)
    code, text = run(capsys, "export", "--config", "at2seld-nano", "--out", str(tmp_path / "model.onnx"))
    assert code == 1 and text.endswith(f"{tmp_path / 'model.onnx'}: No space left on device"), text


def test_version(capsys):
    import at2seld_edge

    code, text = run(capsys, "--version")
    assert code == 0 and text == f"at2seld-edge {at2seld_edge.__version__}"


@pytest.mark.parametrize("command", list(commands({"spec": "", "ckpt": "", "wav": "", "bundle": ""}, "")))
def test_an_output_inside_a_bundle_is_refused_and_the_bundle_stays_whole(command, inputs, tmp_path, capsys):
    """Issue 21: `edge bench --out` inside the bundle wrote there, and the bundle no longer
    verified. Every command that writes refuses an output in a bundle: one line, exit 2."""
    import shutil

    from at2seld_edge.deploy.bundle import load_bundle

    bundle = tmp_path / "bundle"
    shutil.copytree(inputs["bundle"], bundle)
    before = sorted(p.relative_to(bundle) for p in bundle.rglob("*"))
    target = bundle / "profile" / ("x.csv" if command in FILE_OUTPUTS else "out")
    code, text = run(capsys, *commands(inputs, str(target))[command])
    assert code == 2 and "Traceback" not in text, text
    assert text.endswith(f"error: {target}: inside the bundle {bundle.resolve()}; a bundle holds only what its manifest "
                         "lists: write outputs outside it"), text
    assert sorted(p.relative_to(bundle) for p in bundle.rglob("*")) == before
    load_bundle(bundle)  # still whole


def test_edge_build_may_replace_a_bundle_but_not_write_inside_one(inputs, tmp_path, capsys):
    from at2seld_edge.io import check_output_dir

    check_output_dir(inputs["bundle"], is_ours=lambda p: True, what="bundle", may_be_bundle=True)  # replaced whole
    with pytest.raises(Exception, match="inside the bundle"):
        check_output_dir(inputs["bundle"], is_ours=lambda p: True, what="bench report folder")

"""A short training on tiny clips: it runs, its loss goes down, and it resumes after a kill."""

from __future__ import annotations

import csv

import pytest
import torch

from at2seld_edge.checkpoint import load_checkpoint
from at2seld_edge.data.spec import load_dataset
from at2seld_edge.errors import EdgeError
from at2seld_edge.training.trainer import Reporter, train
from tests.conftest import file_size_limit, variant
from tests.training.conftest import plain_config, tiny_config


def test_runs_and_loss_goes_down(tmp_path, tiny_data):
    result = train(plain_config(), tiny_data, tmp_path / "run", epochs=4)
    losses = [h["train_loss"] for h in result.history]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert {p.name for p in (tmp_path / "run").iterdir()} == {"best.pt", "last.pt", "metrics.csv", "curves.png"}
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best.classes == ["tone", "clicks", "sweep_up"] and len(best.thresholds) == 3
    assert best.config.num_classes == 3
    assert (tmp_path / "run" / "curves.png").read_bytes()[:4] == b"\x89PNG"


class Killed(Exception):
    pass


@pytest.mark.parametrize("amp", ["off", "bf16"])  # bf16: CPU autocast
def test_resumes_after_a_kill_as_if_never_stopped(tmp_path, tiny_data, amp):
    whole = train(tiny_config(), tiny_data, tmp_path / "whole", epochs=2, amp=amp)

    epoch_now = {"n": 0}

    def start(epoch, total):
        epoch_now["n"] = epoch

    def die_in_epoch_two(loss):
        if epoch_now["n"] == 2:
            raise Killed

    with pytest.raises(Killed):
        train(tiny_config(), tiny_data, tmp_path / "run", epochs=2, amp=amp,
              reporter=Reporter(start_batches=start, batch_done=die_in_epoch_two))
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last.training_state["epoch"] == 1 and last.manifest["trained_on"]["amp"] == amp
    resumed = train(tiny_config(), tiny_data, tmp_path / "run", epochs=2, amp=amp)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    for a, b in zip(whole.history, resumed.history):
        for k in ("train_loss", "val_SELD", "val_F"):
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-7), k
    w = load_checkpoint(tmp_path / "whole" / "last.pt").state_dict
    r = load_checkpoint(tmp_path / "run" / "last.pt").state_dict
    for k in w:
        torch.testing.assert_close(w[k], r[k], rtol=1e-4, atol=1e-6)


def test_a_finished_run_is_not_trained_again_but_can_be_extended(tmp_path, tiny_data):
    first = train(tiny_config(), tiny_data, tmp_path / "run", epochs=1)
    again = train(tiny_config(), tiny_data, tmp_path / "run", epochs=1)
    assert len(again.history) == len(first.history) == 1
    more = train(tiny_config(), tiny_data, tmp_path / "run", epochs=2)
    assert len(more.history) == 2


def test_a_run_folder_of_another_config_is_refused(tmp_path, tiny_data):
    train(tiny_config(), tiny_data, tmp_path / "run", epochs=1)
    with pytest.raises(EdgeError, match="another config"):
        train(variant(smoother={"causal": True}, training={"batch_size": 2, "segment_seconds": 1.0}), tiny_data,
              tmp_path / "run", epochs=1)


def test_backbone_weights_and_freezing(tmp_path, tiny_data):
    """Start from an official-layout backbone file; while frozen, nothing in the backbone moves
    (weights nor BatchNorm statistics) and the rest trains; unfrozen, it trains too."""
    from at2seld_edge.model import build_model

    source = build_model(tiny_config().model_copy(update={"num_classes": 3})).backbone.state_dict()
    weights = tmp_path / "panns.pth"
    torch.save({"model": source}, weights)
    train(tiny_config(freeze_backbone_epochs=1), tiny_data, tmp_path / "run", epochs=1, backbone_weights=weights)
    after1 = load_checkpoint(tmp_path / "run" / "last.pt").state_dict
    for k, v in source.items():
        torch.testing.assert_close(after1[f"backbone.{k}"], v)
    first_spatial = after1["spatial_encoder.stages.0.blocks.0.conv1.weight"]
    train(tiny_config(freeze_backbone_epochs=1), tiny_data, tmp_path / "run", epochs=2)
    after2 = load_checkpoint(tmp_path / "run" / "last.pt").state_dict
    assert not torch.equal(after2["backbone.conv_block1.conv1.weight"], source["conv_block1.conv1.weight"])
    assert not torch.equal(after2["spatial_encoder.stages.0.blocks.0.conv1.weight"], first_spatial)


def test_non_finite_audio_stops_training_naming_the_clips_and_keeps_good_weights(tmp_path, tiny_data):
    import shutil

    import soundfile as sf

    root = tmp_path / "data"
    shutil.copytree(tiny_data.root, root)
    wav = sorted((root / tiny_data.spec.audio_dir).rglob("fold1_*.wav"))[0]
    audio, sr = sf.read(str(wav), dtype="float32")
    audio[100, 0] = float("nan")
    sf.write(str(wav), audio, sr, subtype="FLOAT")
    data = load_dataset(root / tiny_data.spec_path.name)
    with pytest.raises(EdgeError, match=rf"non-finite training loss.*{wav.stem}@"):
        train(tiny_config(), data, tmp_path / "run", epochs=1)
    assert not (tmp_path / "run" / "best.pt").exists() and not (tmp_path / "run" / "last.pt").exists()


def test_non_finite_weights_are_never_written(tmp_path):
    from at2seld_edge.checkpoint import save_checkpoint
    from at2seld_edge.model import build_model

    model = build_model(tiny_config())
    with torch.no_grad():
        next(model.parameters())[0].fill_(float("inf"))
    with pytest.raises(EdgeError, match="NaN or Inf"):
        save_checkpoint(tmp_path / "best.pt", model)
    assert not (tmp_path / "best.pt").exists()


def test_a_run_stopped_by_its_time_limit_resumes_when_rerun(tmp_path, tiny_data):
    from at2seld_edge.checkpoint import save_checkpoint
    from at2seld_edge.model import build_model

    train(tiny_config(), tiny_data, tmp_path / "run", epochs=1)
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    model = build_model(last.config)
    model.load_state_dict(last.state_dict)
    save_checkpoint(tmp_path / "run" / "last.pt", model, last.classes,
                    training_state={**last.training_state, "stopped": "time"})  # as --max-minutes leaves it
    assert len(train(tiny_config(), tiny_data, tmp_path / "run", epochs=2).history) == 2


def _history(epochs: int) -> list[dict]:
    return [{"epoch": e, "train_loss": 1 / e, "train_sed": 0.6 / e, "train_doa": 0.4 / e, "val_SELD": 0.8 - 0.01 * e,
             "val_F": 0.05 * e, "val_ER": 1 - 0.02 * e, "val_LE": 120 - e, "val_LR": 0.03 * e}
            for e in range(1, epochs + 1)]


@pytest.mark.parametrize("epochs", [1, 12])
def test_curves_show_every_epoch_as_a_marker_and_keep_the_legend_off_the_lines(epochs):
    from at2seld_edge.plots import pyplot
    from at2seld_edge.training.trainer import curves_figure
    from tests.plot_checks import legend_outside

    fig = curves_figure(_history(epochs))
    for ax in fig.axes:
        lines = ax.get_lines()
        assert len(lines) >= 3 and all(line.get_marker() == "o" for line in lines)  # one epoch: points, not blank
        assert legend_outside(fig, ax)  # the legend covered the lines
        if epochs == 1:
            assert list(ax.get_xticks()) == [1]
    pyplot().close(fig)


def test_a_full_disk_stops_training_in_one_line_naming_the_checkpoint(tmp_path, tiny_data):
    """torch.save to a path reported a full disk as RuntimeError('unexpected pos ...'), a traceback."""
    run = tmp_path / "run"
    with file_size_limit(100_000), pytest.raises(EdgeError) as e:  # the tiny model's checkpoint is ~1 MB
        train(tiny_config(), tiny_data, run, epochs=1)
    assert str(e.value).startswith(f"{run / 'best.pt'}: not written: file too large")
    assert list(run.iterdir()) == []  # no partial checkpoint, no temporary file

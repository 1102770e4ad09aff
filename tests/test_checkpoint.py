"""The project checkpoint: round trip, strict loading, refusal of foreign or damaged files."""

from __future__ import annotations

import pytest
import torch

from at2seld_edge.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from at2seld_edge.errors import EdgeError
from at2seld_edge.model import build_model
from tests.conftest import variant


def test_round_trip(tmp_path):
    model = build_model(variant()).eval()
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, model, classes=[f"c{i}" for i in range(13)], thresholds=[0.4] * 13)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temp file left behind
    ckpt = load_checkpoint(path)
    assert ckpt.config == model.config and ckpt.classes[3] == "c3" and ckpt.thresholds == [0.4] * 13
    assert ckpt.manifest["config_fingerprint"] == model.config.fingerprint()
    restored = model_from_checkpoint(ckpt).eval()
    audio = torch.randn(1, 4, 2400)
    with torch.no_grad():
        torch.testing.assert_close(restored(audio)["doa"], model(audio)["doa"])


def test_wrong_keys_are_named(tmp_path):
    model = build_model(variant())
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, model)
    blob = torch.load(path, weights_only=True)
    blob["state_dict"]["heads.sed.weightt"] = blob["state_dict"].pop("heads.sed.weight")
    blob["state_dict"]["smoother.gru.weight_hh_l0"] = torch.zeros(3, 3)
    torch.save(blob, path)
    with pytest.raises(EdgeError) as e:
        model_from_checkpoint(load_checkpoint(path))
    msg = str(e.value)
    assert "missing keys: heads.sed.weight" in msg and "unexpected keys: heads.sed.weightt" in msg
    assert "smoother.gru.weight_hh_l0 (3, 3) vs model" in msg


def test_foreign_files_are_refused(tmp_path):
    official = tmp_path / "Cnn14.pth"
    torch.save({"model": {"bn0.weight": torch.ones(64)}}, official)
    with pytest.raises(EdgeError, match="not an at2seld-edge checkpoint.*--backbone-weights"):
        load_checkpoint(official)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(EdgeError, match="not a readable checkpoint"):
        load_checkpoint(garbage)


def test_embedded_config_is_validated(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, build_model(variant()))
    blob = torch.load(path, weights_only=True)
    blob["config"]["smoother"]["hiden"] = 1
    torch.save(blob, path)
    with pytest.raises(EdgeError, match=r"embedded config.*smoother\.hiden"):
        load_checkpoint(path)


def test_thresholds_must_be_one_per_class_at_load(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, build_model(variant()))
    blob = torch.load(path, weights_only=True)
    blob["thresholds"] = blob["thresholds"][:3]
    torch.save(blob, path)
    with pytest.raises(EdgeError, match=r"ckpt.pt: \d+ class names and 3 thresholds for a model of \d+ classes"):
        load_checkpoint(path)
    blob["thresholds"] = [float("nan")] * len(blob["classes"])
    torch.save(blob, path)
    with pytest.raises(EdgeError, match="threshold nan is not a probability"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"hello, not a checkpoint", bytes(range(256)) * 4])
def test_a_file_that_is_not_a_checkpoint_says_so_without_torch_advice(tmp_path, content):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(EdgeError) as e:
        load_checkpoint(path)
    assert str(e.value).startswith(f"{path}: not a readable checkpoint")
    assert "weights_only=False" not in str(e.value) and "`weights_only` set to `False`" not in str(e.value)


def test_a_pickled_object_is_named_and_never_run(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "at2seld-edge.checkpoint/1", "x": Evil()}, path, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(EdgeError, match=r"refused without running it") as e:
        load_checkpoint(path)
    assert "weights_only=False" not in str(e.value)

"""Where training runs: device flags, mixed precision, loader workers, and the CUDA paths (which
skip here without a GPU; the meta device stands in for one to catch tensors made on the CPU)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from at2seld_edge.checkpoint import load_checkpoint
from at2seld_edge.data.augment import SpecAugment
from at2seld_edge.devices_torch import DeviceModel, resolve_device
from at2seld_edge.errors import EdgeError, ErrorKind
from at2seld_edge.evaluation.evaluate import predict_clips
from at2seld_edge.model import build_model
from at2seld_edge.training.trainer import Reporter, Trainer, TrainOptions, loss_terms, train
from tests.training.conftest import tiny_config

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason=f"no CUDA device (torch {torch.__version__}, "
                                                 f"CUDA build: {torch.version.cuda or 'none'})")


def test_device_flags():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == (torch.device("cuda", 0) if CUDA else torch.device("cpu"))
    for bad in ("gpu", "cuda:x", "CUDA"):
        with pytest.raises(EdgeError, match="expected auto, cpu, cuda or cuda:N") as e:
            TrainOptions.from_flags(device=bad)
        assert e.value.kind is ErrorKind.USAGE and "--device" in str(e.value)
        with pytest.raises(EdgeError) as e:
            resolve_device(bad)
        assert e.value.kind is ErrorKind.USAGE
    with pytest.raises(EdgeError, match="--amp"):
        TrainOptions.from_flags(amp="fp8")


@pytest.mark.skipif(CUDA, reason="this machine has a CUDA device")
def test_cuda_where_there_is_none_is_one_clear_error(tmp_path, tiny_data):
    with pytest.raises(EdgeError, match="no CUDA device here") as e:
        resolve_device("cuda:1")
    assert e.value.kind is ErrorKind.USAGE
    r = subprocess.run([sys.executable, "-m", "at2seld_edge.cli", "train", "--data", str(tiny_data.spec_path),
                        "--out", str(tmp_path / "run"), "--device", "cuda"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--device cuda: no CUDA device here" in " ".join(r.stderr.split())
    assert not (tmp_path / "run").exists()


def test_fp16_needs_cuda(tmp_path, tiny_data):
    with pytest.raises(EdgeError, match="--amp fp16: needs a CUDA device") as e:
        train(tiny_config(), tiny_data, tmp_path / "run", epochs=1, device="cpu", amp="fp16")
    assert e.value.kind is ErrorKind.USAGE and not (tmp_path / "run").exists()


def epoch_batches(tiny_data, tmp_path, workers: int) -> list[list[dict]]:
    trainer = Trainer(tiny_config(), tiny_data, tmp_path / f"w{workers}", TrainOptions(workers=workers, device="cpu"),
                      Reporter())
    out = []
    for epoch in (0, 1):  # persistent workers carry over to the second epoch
        trainer.sampler.set_epoch(epoch)
        out.append(list(trainer.loader))
    return out


def test_loader_workers_give_the_same_batches(tmp_path, tiny_data):
    """FOA rotations on: each segment's is seeded from (seed, epoch, segment), not from a worker's RNG."""
    alone, two = epoch_batches(tiny_data, tmp_path, 0), epoch_batches(tiny_data, tmp_path, 2)
    assert [len(e) for e in alone] == [len(e) for e in two] == [4, 4]
    for a_epoch, b_epoch in zip(alone, two):
        for a, b in zip(a_epoch, b_epoch):
            assert a["clip"] == b["clip"]
            for k in ("audio", "activity", "doa", "distance"):
                assert torch.equal(a[k], b[k]), k
    assert [b["clip"] for b in alone[0]] != [b["clip"] for b in alone[1]]  # reshuffled each epoch


def test_training_step_keeps_every_tensor_on_the_model_device(tiny_data):
    """On the meta device (no data, shapes only) any tensor made on the CPU inside the forward
    pass, the augmentation or the loss fails as it would on a GPU."""
    model = build_model(tiny_config().model_copy(update={"num_classes": 3}))
    model.set_feature_augment(SpecAugment())
    model.to("meta").train()
    out = model(torch.zeros(2, 4, 24000, device="meta"))
    batch = {"activity": torch.zeros(2, 10, 3, 3, device="meta"), "doa": torch.zeros(2, 10, 3, 3, 3, device="meta")}
    terms = loss_terms(out, batch, model)
    loss = sum(s / n for s, n in terms.values())
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert loss.device.type == "meta" and all(g is not None and g.device.type == "meta" for g in grads)


@needs_cuda
@pytest.mark.parametrize("amp", ["off", "bf16", "fp16"])
def test_cuda_trains_and_a_cpu_resumes(tmp_path, tiny_data, amp):
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    train(tiny_config(), tiny_data, tmp_path / "run", epochs=1, device="cuda", amp=amp, workers=2)
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last.manifest["trained_on"]["device"] == "cuda"
    states = last.training_state["optimizer"]["state"].values()
    assert all(t.device.type == "cpu" for s in states for t in s.values() if isinstance(t, torch.Tensor))
    assert bool(last.training_state["grad_scaler"]) == (amp == "fp16")
    resumed = train(tiny_config(), tiny_data, tmp_path / "run", epochs=2, device="cpu")
    assert [h["epoch"] for h in resumed.history] == [1, 2]


@needs_cuda
def test_cuda_predictions_match_the_cpu(tiny_data):
    model = build_model(tiny_config().model_copy(update={"num_classes": 3})).eval()
    clips = tiny_data.clips("val")
    cpu = predict_clips(model, clips)
    gpu = predict_clips(DeviceModel(model, "cuda"), clips)
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(torch.from_numpy(b.probs), torch.from_numpy(a.probs), rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_compiled_training_runs(tmp_path, tiny_data):
    result = train(tiny_config(), tiny_data, tmp_path / "run", epochs=1, device="cpu", compile=True)
    assert len(result.history) == 1

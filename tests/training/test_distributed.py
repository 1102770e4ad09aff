"""Training in several processes (DDP over gloo on this CPU) is the single-process run with the
same global batch: same batches, same BatchNorm statistics, same loss normalization, validation
gathered on rank 0. Random masks are off in these runs (see `plain_config`); FOA rotations stay.

Tolerance, as measured: DDP sums gradients and BatchNorm statistics in another order than one
process does, so the runs differ by float rounding, which Adam's normalized steps carry on
(weights within a few percent after tens of steps, mostly BatchNorm running variances). Over
two epochs the validation metrics agree within 1e-3 (ER, F, LR, SELD) and 0.05 degrees (LE),
the training loss within 1e-4 relative.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

from at2seld_edge.checkpoint import load_checkpoint
from at2seld_edge.data.spec import load_dataset
from at2seld_edge.training.distributed import GlobalBatchSampler, GlooSyncBatchNorm
from at2seld_edge.training.trainer import train
from tests.training.conftest import plain_config

METRICS_TOL = {"val_ER": 1e-3, "val_F": 1e-3, "val_LR": 1e-3, "val_SELD": 1e-3, "val_LE": 0.05}


def ddp_config():
    return plain_config(lr=1e-2, augment={"spec_augment": False, "foa_rotations": True})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_same_run(a: list[dict], b: list[dict]) -> None:
    assert [h["epoch"] for h in a] == [h["epoch"] for h in b]
    for ha, hb in zip(a, b):
        assert ha["train_loss"] == pytest.approx(hb["train_loss"], rel=1e-4)
        for k, tol in METRICS_TOL.items():
            assert ha[k] == pytest.approx(hb[k], abs=tol), (ha["epoch"], k)


def assert_close_weights(a: dict, b: dict, rel: float = 0.05) -> None:
    for k, v in a.items():
        if v.is_floating_point():
            assert (v - b[k]).norm() <= rel * v.norm() + 1e-6, k


@pytest.mark.parametrize("segments,batch,world", [(10, 4, 1), (10, 4, 2), (10, 4, 3), (9, 4, 2), (13, 4, 4)])
def test_processes_share_the_single_process_batches(segments, batch, world):
    one = GlobalBatchSampler(segments, batch, seed=5)
    shares = [GlobalBatchSampler(segments, batch, seed=5, rank=r, world=world) for r in range(world)]
    for s in [one, *shares]:
        s.set_epoch(3)
    single = list(one)
    per_rank = [list(s) for s in shares]
    assert all(len(p) == len(s) for p, s in zip(per_rank, shares))
    joined = [sum(parts, []) for parts in zip(*per_rank)]
    kept = single[: len(joined)]
    assert joined == kept  # the same global batches, each split in rank order
    assert all(len(p) > 0 for parts in zip(*per_rank) for p in parts)
    left = segments - sum(len(b) for b in joined)
    assert left == shares[0].left_out < world and (world > 1 or left == 0)
    assert {e for b in joined for _, e in b} == {3}


def _sync_bn_check(rank: int, world: int, out_dir: str) -> None:
    """Sync BatchNorm on this rank's quarter of a fixed batch (outputs, input gradients,
    parameter gradients, running statistics written for the parent to compare)."""
    torch.manual_seed(0)
    x = torch.randn(8, 3, 5, 6) * 3 + 1
    g = torch.randn(8, 3, 5, 6)
    bn = GlooSyncBatchNorm.convert(torch.nn.BatchNorm2d(3), None)
    share = slice(rank * 8 // world, (rank + 1) * 8 // world)
    xr = x[share].clone().requires_grad_(True)
    y = bn(xr)
    (y * g[share]).sum().backward()
    torch.save({"y": y.detach(), "dx": xr.grad, "dw": bn.weight.grad, "db": bn.bias.grad,
                "mean": bn.running_mean, "var": bn.running_var}, f"{out_dir}/bn{rank}.pt")


def _ddp_worker(rank: int, world: int, port: int, spec: str, run_dir: str, bn_dir: str | None, flags: dict) -> None:
    """One process of a torchrun-like launch: the environment torchrun sets, then `train`."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo")  # train() takes a group it finds as it is
    try:
        if bn_dir is not None:
            _sync_bn_check(rank, world, bn_dir)
        train(ddp_config(), load_dataset(spec), run_dir, device="cpu", **flags)
    finally:
        dist.destroy_process_group()


def spawn_training(tiny_data, run_dir, bn_dir=None, **flags) -> None:
    mp.spawn(_ddp_worker, args=(2, free_port(), str(tiny_data.spec_path), str(run_dir), bn_dir, flags), nprocs=2)


def test_two_gloo_processes_train_as_one(tmp_path, tiny_data):
    """The quick check: BatchNorm over processes equals BatchNorm over the whole batch, and one
    epoch in two processes equals it in one (validation gathered and calibrated on rank 0)."""
    spawn_training(tiny_data, tmp_path / "ddp", str(tmp_path), epochs=1)
    torch.manual_seed(0)
    x = (torch.randn(8, 3, 5, 6) * 3 + 1).requires_grad_(True)
    g = torch.randn(8, 3, 5, 6)
    bn = torch.nn.BatchNorm2d(3)
    y = bn(x)
    (y * g).sum().backward()
    parts = [torch.load(tmp_path / f"bn{r}.pt") for r in range(2)]
    torch.testing.assert_close(torch.cat([p["y"] for p in parts]), y.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat([p["dx"] for p in parts]), x.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(parts[0]["dw"] + parts[1]["dw"], bn.weight.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(parts[0]["db"] + parts[1]["db"], bn.bias.grad, rtol=1e-4, atol=1e-5)
    for p in parts:
        torch.testing.assert_close(p["mean"], bn.running_mean)
        torch.testing.assert_close(p["var"], bn.running_var)

    single = train(ddp_config(), tiny_data, tmp_path / "single", epochs=1, device="cpu")
    ddp = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert {p.name for p in (tmp_path / "ddp").iterdir()} == {"best.pt", "last.pt", "metrics.csv", "curves.png"}
    assert ddp.manifest["trained_on"] == {"device": "cpu", "amp": "off", "processes": 2}
    assert_same_run(single.history, ddp.training_state["history"])
    assert load_checkpoint(tmp_path / "ddp" / "best.pt").thresholds == single.thresholds
    assert_close_weights(load_checkpoint(tmp_path / "single" / "last.pt").state_dict, ddp.state_dict)


@pytest.mark.slow
def test_a_frozen_backbone_epoch_under_ddp(tmp_path, tiny_data):
    """Frozen parameters get no gradient: DDP must be told some parameters go unused."""
    spawn_training(tiny_data, tmp_path / "ddp", epochs=2, freeze_backbone_epochs=1, workers=1)
    single = train(ddp_config(), tiny_data, tmp_path / "single", epochs=2, device="cpu", freeze_backbone_epochs=1)
    ddp = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert_same_run(single.history, ddp.training_state["history"])
    assert_close_weights(load_checkpoint(tmp_path / "single" / "last.pt").state_dict, ddp.state_dict)


# ----------------------------------------------------------------------------- torchrun, as users run it

KILLER = """
import os, signal, sys
from at2seld_edge.config import load_config
from at2seld_edge.data.spec import load_dataset
from at2seld_edge.training.trainer import Reporter, train

epoch = {"n": 0}

def start(e, total):
    epoch["n"] = e

def batch_done(loss):
    if epoch["n"] == 2:  # rank 0 dies in the middle of epoch 2; torchrun takes the others down
        os.kill(os.getpid(), signal.SIGKILL)

train(load_config(sys.argv[1]), load_dataset(sys.argv[2]), sys.argv[3], epochs=2, device="cpu",
      reporter=Reporter(start_batches=start, batch_done=batch_done))
"""


def torchrun(*args: str, cwd=None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=cwd)


@pytest.mark.slow
def test_torchrun_cli_matches_one_process_and_resumes_after_a_kill(tmp_path, tiny_data):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(ddp_config().model_dump(mode="json")))
    edge_train = ["-m", "at2seld_edge.cli", "train", "--config", str(cfg), "--data", str(tiny_data.spec_path),
                  "--epochs", "2", "--device", "cpu"]
    r = torchrun(*edge_train, "--out", str(tmp_path / "whole"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("best epoch") == 1  # rank 0 alone reports
    whole = load_checkpoint(tmp_path / "whole" / "last.pt")
    single = train(ddp_config(), tiny_data, tmp_path / "single", epochs=2, device="cpu")
    assert_same_run(single.history, whole.training_state["history"])
    assert_close_weights(load_checkpoint(tmp_path / "single" / "last.pt").state_dict, whole.state_dict)

    killer = tmp_path / "killer.py"
    killer.write_text(KILLER)
    r = torchrun(str(killer), str(cfg), str(tiny_data.spec_path), str(tmp_path / "run"))
    assert r.returncode != 0
    assert load_checkpoint(tmp_path / "run" / "last.pt").training_state["epoch"] == 1
    r = torchrun(*edge_train, "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr[-3000:]
    resumed = load_checkpoint(tmp_path / "run" / "last.pt")
    assert_same_run(whole.training_state["history"], resumed.training_state["history"])
    assert_close_weights(whole.state_dict, resumed.state_dict, rel=1e-4)


@pytest.mark.slow
def test_a_killed_ddp_run_resumes_in_one_process(tmp_path, tiny_data):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(ddp_config().model_dump(mode="json")))
    killer = tmp_path / "killer.py"
    killer.write_text(KILLER)
    assert torchrun(str(killer), str(cfg), str(tiny_data.spec_path), str(tmp_path / "run")).returncode != 0
    single = train(ddp_config(), tiny_data, tmp_path / "single", epochs=2, device="cpu")
    resumed = train(ddp_config(), tiny_data, tmp_path / "run", epochs=2, device="cpu")
    assert_same_run(single.history, resumed.history)

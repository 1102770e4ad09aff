"""`edge train`: AdamW with cosine warm restarts, early stopping on the validation SELD score,
resumable after a kill.

After every epoch the per-class SED thresholds are calibrated on the validation split and the
validation SELD score is computed with them. RUN_DIR holds `last.pt` (model + optimizer +
scheduler + history, rewritten atomically each epoch), `best.pt` (the best validation SELD score
so far, with its calibrated thresholds), `metrics.csv` and `curves.png`. Each epoch's
randomness is seeded from (seed, epoch), so a resumed run continues as the uninterrupted one would.
"""

from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from at2seld_edge.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from at2seld_edge.config import ModelConfig
from at2seld_edge.data.augment import SpecAugment
from at2seld_edge.data.dataset import SegmentDataset
from at2seld_edge.data.spec import Dataset
from at2seld_edge.errors import EdgeError
from at2seld_edge.evaluation.evaluate import calibrate_thresholds, predict_clips, score_outputs
from at2seld_edge.io import atomic_path, atomic_write_text, check_output_dir, output_lock
from at2seld_edge.model import AT2SELD, build_model
from at2seld_edge.training.losses import seld_track_loss, semantic_presence_loss

HISTORY_FIELDS = ("epoch", "lr", "train_loss", "train_sed", "train_doa", "val_ER", "val_F", "val_LE", "val_LR",
                  "val_SELD", "seconds")


@dataclass
class Reporter:
    """How training talks to the user (the CLI passes rich progress; tests pass nothing)."""

    start_batches: Callable[[int, int], None] = lambda epoch, total: None
    batch_done: Callable[[float], None] = lambda loss: None
    epoch_done: Callable[[dict[str, float], bool], None] = lambda row, best: None
    message: Callable[[str], None] = lambda text: None


@dataclass
class TrainResult:
    run_dir: Path
    best_epoch: int
    best_val: dict[str, float]
    thresholds: list[float]
    history: list[dict[str, float]] = field(default_factory=list)
    stopped: str = ""


def _seed_everything(seed: int, epoch: int) -> torch.Generator:
    torch.manual_seed(seed * 100_003 + epoch)
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def loss_for_batch(model: AT2SELD, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    lc = model.config.training.loss
    out = model(batch["audio"])
    parts = seld_track_loss(out["sed_logits"], out["doa"], batch["activity"], batch["doa"], kind=lc.permutation,
                            sed_weight=lc.sed_weight, doa_weight=lc.doa_weight, focal_gamma=lc.focal_gamma,
                            doa_supervision=lc.doa_supervision)
    if "clip_logits" in out:
        parts["loss"] = parts["loss"] + lc.semantic_weight * semantic_presence_loss(out["clip_logits"], batch["activity"])
    return parts


def _check_finite(value: torch.Tensor, what: str, batch: dict, epoch: int, run_dir: Path) -> None:
    """Stop before a NaN reaches the weights: the last saved epoch stays the last good one."""
    if not torch.isfinite(value).all():
        clips = ", ".join(batch.get("clip", ["?"]))
        raise EdgeError(f"{run_dir}: non-finite training {what} ({value.item():g}) in epoch {epoch + 1}, batch of "
                        f"clips (name@first sample): {clips}; nothing of this epoch was saved; `edge data check` "
                        "reads every sample of the dataset")


def write_history(run_dir: Path, history: list[dict[str, float]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS)
    w.writeheader()
    for row in history:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(run_dir / "metrics.csv", buf.getvalue())
    plot_curves(run_dir / "curves.png", history)


def plot_curves(path: Path, history: list[dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(ep, [h["train_loss"] for h in history], label="train loss")
    a.plot(ep, [h["train_sed"] for h in history], label="SED part", alpha=0.7)
    a.plot(ep, [h["train_doa"] for h in history], label="DOA part", alpha=0.7)
    a.set_xlabel("epoch"), a.set_title("training loss"), a.legend(fontsize=8), a.grid(alpha=0.3)
    b.plot(ep, [h["val_SELD"] for h in history], label="SELD score (lower is better)", lw=2)
    b.plot(ep, [h["val_F"] for h in history], label="F (20 deg)")
    b.plot(ep, [h["val_ER"] for h in history], label="ER")
    b.plot(ep, [h["val_LE"] / 180 for h in history], label="LE / 180")
    b.plot(ep, [h["val_LR"] for h in history], label="LR")
    b.set_xlabel("epoch"), b.set_title("validation (per-class thresholds calibrated each epoch)"), b.grid(alpha=0.3)
    b.legend(fontsize=8, loc="upper right", framealpha=0.6)
    b.set_ylim(0, min(2.5, max([1.05] + [h["val_ER"] * 1.05 for h in history])))  # ER can exceed 1
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def _set_backbone_frozen(model: AT2SELD, frozen: bool) -> None:
    for name, p in model.backbone.named_parameters():
        if not name.startswith(("spectrogram_extractor.", "logmel_extractor.")):  # DFT and mel stay frozen
            p.requires_grad_(not frozen)


def train(cfg: ModelConfig, data: Dataset, run_dir: str | Path, *, epochs: int | None = None,
          backbone_weights: str | Path | None = None, freeze_backbone_epochs: int | None = None,
          max_minutes: float | None = None, skip_bad: bool = False, reporter: Reporter | None = None,
          initial_model: AT2SELD | None = None) -> TrainResult:
    """`initial_model` starts a new run from given weights (a pruned model being fine-tuned); its
    config must be `cfg`. A run folder with last.pt resumes regardless."""
    rep = reporter or Reporter()
    run_dir = Path(run_dir)
    check_output_dir(run_dir, is_ours=lambda p: any((p / f).exists() for f in ("last.pt", "best.pt", "metrics.csv")),
                     what="training run")
    with output_lock(run_dir, "edge train"):
        return _train(cfg, data, run_dir, epochs, backbone_weights, freeze_backbone_epochs, max_minutes, skip_bad, rep,
                      initial_model)


def _train(cfg, data, run_dir, epochs, backbone_weights, freeze_backbone_epochs, max_minutes, skip_bad, rep,
           initial_model) -> TrainResult:
    classes = data.classes
    tc = cfg.training.model_copy(update={k: v for k, v in {"epochs": epochs, "freeze_backbone_epochs": freeze_backbone_epochs}.items()
                                         if v is not None})
    cfg = cfg.model_copy(update={"num_classes": len(classes), "training": tc})
    skipped: list[str] = []
    train_clips = data.clips("train", skip_bad, skipped)
    val_clips = data.clips("val", skip_bad, skipped)
    for s in skipped:
        rep.message(f"skipped: {s}")

    last = run_dir / "last.pt"
    state: dict[str, Any] = {"epoch": 0, "history": [], "best_seld": math.inf, "best_epoch": 0, "bad_epochs": 0,
                             "train_seconds": 0.0, "stopped": ""}
    if last.exists():
        ckpt = load_checkpoint(last)
        if ckpt.config.fingerprint() != cfg.fingerprint() or ckpt.classes != classes:
            raise EdgeError(f"{run_dir}: holds a run of another config or class list; use another --out")
        model = model_from_checkpoint(ckpt)
        state.update(ckpt.training_state or {})
        if state["stopped"] == "epochs" and state["epoch"] < tc.epochs:
            state["stopped"] = ""  # more epochs asked for: go on
        rep.message(f"resuming {run_dir} after epoch {state['epoch']}")
    else:
        torch.manual_seed(tc.seed)  # the same seed gives the same initial weights
        if initial_model is not None:
            if initial_model.config.fingerprint() != cfg.fingerprint():
                raise EdgeError("the initial model was built from another config than the one trained")
            model = initial_model
        else:
            model = build_model(cfg)
        if backbone_weights is not None:
            from at2seld_edge.model.backbones.official_weights import load_official_checkpoint

            rep.message(load_official_checkpoint(model.backbone, backbone_weights).summary())
    aug = tc.augment
    if aug.spec_augment:
        model.set_feature_augment(SpecAugment(aug.time_masks, aug.time_width, aug.freq_masks, aug.freq_width))

    hop = cfg.audio.label_hop_samples
    seg_frames = round(tc.segment_seconds / cfg.audio.label_hop_s)
    train_set = SegmentDataset(train_clips, hop, len(classes), cfg.heads.n_tracks, seg_frames, aug.foa_rotations)
    steps_per_epoch = math.ceil(len(train_set) / tc.batch_size)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=tc.lr, weight_decay=tc.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=tc.restart_epochs * steps_per_epoch, T_mult=tc.restart_mult, eta_min=tc.min_lr)
    if last.exists() and "optimizer" in state:
        optimizer.load_state_dict(state.pop("optimizer"))
        scheduler.load_state_dict(state.pop("scheduler"))

    def training_state() -> dict[str, Any]:
        return {**state, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}

    started = time.monotonic() - state["train_seconds"]
    while not state["stopped"]:
        epoch = state["epoch"]
        if epoch >= tc.epochs:
            state["stopped"] = "epochs"
            break
        if max_minutes is not None and (time.monotonic() - started) / 60 >= max_minutes:
            state["stopped"] = "time"
            break
        t0 = time.monotonic()
        gen = _seed_everything(tc.seed, epoch)
        train_set.rng = np.random.default_rng([tc.seed, epoch])
        frozen = epoch < tc.freeze_backbone_epochs
        _set_backbone_frozen(model, frozen)
        loader = DataLoader(train_set, batch_size=tc.batch_size, shuffle=True, generator=gen, drop_last=False)
        model.train()
        model.backbone.train(not frozen)  # a frozen backbone also keeps its BatchNorm statistics
        sums = {"loss": 0.0, "sed": 0.0, "doa": 0.0}
        rep.start_batches(epoch + 1, len(loader))
        for batch in loader:
            parts = loss_for_batch(model, batch)
            optimizer.zero_grad(set_to_none=True)
            _check_finite(parts["loss"], "loss", batch, epoch, run_dir)
            parts["loss"].backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            _check_finite(norm, "gradient", batch, epoch, run_dir)
            optimizer.step()
            scheduler.step()
            for k in sums:
                sums[k] += parts[k].item()
            rep.batch_done(parts["loss"].item())
        # early stopping and model selection use the score with thresholds calibrated on this
        # epoch's validation outputs, the way the model will be used
        outputs = predict_clips(model, val_clips)
        thresholds, _ = calibrate_thresholds(outputs)
        val = score_outputs(outputs, thresholds).results()
        row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
               **{f"train_{k}": v / len(loader) for k, v in sums.items()},
               **{f"val_{k}": v for k, v in val.items()}, "seconds": time.monotonic() - t0}
        state["history"].append(row)
        state["epoch"] = epoch + 1
        state["train_seconds"] = time.monotonic() - started
        improved = val["SELD"] < state["best_seld"]
        if improved:
            state.update(best_seld=val["SELD"], best_epoch=epoch + 1, bad_epochs=0)
            save_checkpoint(run_dir / "best.pt", model, classes, [float(t) for t in thresholds],
                            manifest={"epoch": epoch + 1, "val_calibrated": val})
        else:
            state["bad_epochs"] += 1
            if state["bad_epochs"] >= tc.patience:
                state["stopped"] = "early stopping"
        save_checkpoint(last, model, classes, manifest={"epoch": epoch + 1}, training_state=training_state())
        write_history(run_dir, state["history"])
        rep.epoch_done(row, improved)

    if not (run_dir / "best.pt").exists():
        raise EdgeError(f"{run_dir}: no epoch finished (stopped by {state['stopped']})")
    best = load_checkpoint(run_dir / "best.pt")
    return TrainResult(run_dir, state["best_epoch"], best.manifest.get("val_calibrated", {}), best.thresholds,
                       state["history"], state["stopped"])


"""`edge train`: AdamW with cosine warm restarts, early stopping on the validation SELD score,
resumable after a kill.

After every epoch the per-class SED thresholds are calibrated on the validation split and the
validation SELD score is computed with them. RUN_DIR holds `last.pt` (model + optimizer +
scheduler + history, rewritten atomically each epoch), `best.pt` (the best validation SELD score
so far, with its calibrated thresholds), `metrics.csv` and `curves.png`. Each epoch's
randomness is seeded from (seed, epoch), so a resumed run continues as the uninterrupted one would.

It runs where users train: `--device` (CUDA where there is one), `--amp` mixed precision,
`--workers` loader processes, `--compile`, and under torchrun in several processes that together
are the single-process run with the same global batch (`training/distributed.py`).
"""

from __future__ import annotations

import csv
import io
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from pydantic import Field
from torch.utils.data import DataLoader

from at2seld_edge.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from at2seld_edge.config import ModelConfig
from at2seld_edge.data.augment import SpecAugment
from at2seld_edge.data.dataset import SegmentDataset, read_audio
from at2seld_edge.data.spec import Dataset
from at2seld_edge.devices_torch import DeviceModel, TorchDevice
from at2seld_edge.errors import EdgeError
from at2seld_edge.evaluation.decode import predict_clip
from at2seld_edge.evaluation.evaluate import ClipOutput, calibrate_thresholds, clip_output, predict_clips, score_outputs
from at2seld_edge.io import atomic_write_text, check_output_dir, output_lock
from at2seld_edge.model import AT2SELD, build_model
from at2seld_edge.options import StageOptions
from at2seld_edge.plots import pyplot, save_figure
from at2seld_edge.training.balance import balanced_sampler, balanced_subset
from at2seld_edge.training.distributed import Dist, GlobalBatchSampler, distributed, epoch_seed, sync_batchnorm
from at2seld_edge.training.losses import Term, seld_track_terms, semantic_presence_term, weighted_total
from at2seld_edge.training.precision import AmpMode, Precision, check_amp

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


def _seed_everything(seed: int, epoch: int, rank: int = 0) -> None:
    """Dropout and SpecAugment masks: seeded per epoch, and per process under torchrun."""
    torch.manual_seed(epoch_seed(seed, epoch) + 1_000_003 * rank)


def loss_terms(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], model: AT2SELD) -> dict[str, Term]:
    """The loss terms of a batch as (sum, count), in FP32 whatever the autocast dtype."""
    lc = model.config.training.loss
    terms = seld_track_terms(out["sed_logits"].float(), out["doa"].float(), batch["activity"], batch["doa"],
                             kind=lc.permutation, sed_weight=lc.sed_weight, doa_weight=lc.doa_weight,
                             focal_gamma=lc.focal_gamma, doa_supervision=lc.doa_supervision)
    if "clip_logits" in out:
        terms["semantic"] = semantic_presence_term(out["clip_logits"].float(), batch["activity"])
    return terms


def _non_finite(what: str, value: float, clips: list[str], epoch: int, run_dir: Path) -> EdgeError:
    """Stop before a NaN reaches the weights: the last saved epoch stays the last good one."""
    return EdgeError(f"{run_dir}: non-finite training {what} ({value:g}) in epoch {epoch + 1}, batch of clips "
                     f"(name@first sample): {', '.join(clips)}; nothing of this epoch was saved; `edge data check` "
                     "reads every sample of the dataset")


def _to_cpu(obj: Any) -> Any:
    """Optimizer state with its tensors on the CPU: a checkpoint loads on any machine."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def write_history(run_dir: Path, history: list[dict[str, float]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS)
    w.writeheader()
    for row in history:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(run_dir / "metrics.csv", buf.getvalue())
    plot_curves(run_dir / "curves.png", history)


def plot_curves(path: Path, history: list[dict[str, float]]) -> None:
    save_figure(curves_figure(history), path, dpi=110)


def curves_figure(history: list[dict[str, float]]):
    """Training loss and validation metrics per epoch: every epoch a marker (one epoch is a
    point, not an empty plot), the legends beside the axes, never over the lines."""
    plt = pyplot()

    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4))
    line = {"marker": "o", "markersize": 4}
    a.plot(ep, [h["train_loss"] for h in history], label="train loss", **line)
    a.plot(ep, [h["train_sed"] for h in history], label="SED part", alpha=0.7, **line)
    a.plot(ep, [h["train_doa"] for h in history], label="DOA part", alpha=0.7, **line)
    a.set_xlabel("epoch"), a.set_title("training loss"), a.grid(alpha=0.3)
    b.plot(ep, [h["val_SELD"] for h in history], label="SELD score\n(lower is better)", lw=2, **line)
    b.plot(ep, [h["val_F"] for h in history], label="F (20 deg)", **line)
    b.plot(ep, [h["val_ER"] for h in history], label="ER", **line)
    b.plot(ep, [h["val_LE"] / 180 for h in history], label="LE / 180", **line)
    b.plot(ep, [h["val_LR"] for h in history], label="LR", **line)
    b.set_xlabel("epoch"), b.set_title("validation (per-class thresholds calibrated each epoch)"), b.grid(alpha=0.3)
    b.set_ylim(0, min(2.5, max([1.05] + [h["val_ER"] * 1.05 for h in history])))  # ER can exceed 1
    for ax in (a, b):
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
        if len(ep) == 1:
            ax.set_xticks(ep)  # one epoch: one tick, not a fractional scale
        else:
            ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return fig


def _set_backbone_frozen(model: AT2SELD, frozen: bool) -> None:
    for name, p in model.backbone.named_parameters():
        if not name.startswith(("spectrogram_extractor.", "logmel_extractor.")):  # DFT and mel stay frozen
            p.requires_grad_(not frozen)


class TrainOptions(StageOptions):
    """What `edge train` takes beyond the config and the data (flags of the same names)."""

    epochs: int | None = Field(None, ge=1)  # overrides training.epochs
    backbone_weights: Path | None = None  # official PANNs / E-PANNs weights to start the backbone from
    freeze_backbone_epochs: int | None = Field(None, ge=0)
    max_minutes: float | None = Field(None, gt=0)  # stop after the epoch that passes this wall time
    skip_bad: bool = False  # leave out bad clips (reported) instead of stopping
    device: TorchDevice = "auto"  # auto: CUDA where torch sees a GPU (under torchrun: the local rank's)
    amp: AmpMode = "off"  # autocast dtype (fp16 with a gradient scaler, CUDA only)
    workers: int = Field(0, ge=0, le=256)  # DataLoader processes (0: read in the training process)
    compile: bool = False  # torch.compile the training model
    sync_bn: bool = True  # under torchrun: BatchNorm statistics of the global batch, as one process has


@dataclass
class TrainState:
    """What `last.pt` carries for a resumed run to continue as the uninterrupted one would
    (plain values, so it loads with weights_only=True)."""

    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_seld: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    train_seconds: float = 0.0
    stopped: str = ""  # "", "epochs", "time", "early stopping"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainState":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def train(cfg: ModelConfig, data: Dataset, run_dir: str | Path, opts: TrainOptions | None = None, *,
          reporter: Reporter | None = None, initial_model: AT2SELD | None = None, **flags: Any) -> TrainResult:
    """Train `cfg` on `data` into `run_dir`; a run folder with last.pt resumes. `initial_model`
    starts a new run from given weights (a pruned model being fine-tuned; its config must be
    `cfg`). `flags` are TrainOptions fields, for callers that set one or two. Under torchrun
    every process calls this; rank 0 alone checks, locks and writes the run folder and reports."""
    opts = opts or TrainOptions.from_flags(**flags)
    run_dir = Path(run_dir)
    with distributed(opts.device) as ctx:
        check_amp(opts.amp, ctx.device)
        if ctx.is_main:
            check_output_dir(run_dir, what="training run",
                             is_ours=lambda p: any((p / f).exists() for f in ("last.pt", "best.pt", "metrics.csv")))
        with output_lock(run_dir, "edge train") if ctx.is_main else nullcontext():
            rep = (reporter or Reporter()) if ctx.is_main else Reporter()
            return Trainer(cfg, data, run_dir, opts, rep, initial_model, ctx).run()


class Trainer:
    """One run in steps: init or resume, then per epoch train and validate-and-save."""

    def __init__(self, cfg: ModelConfig, data: Dataset, run_dir: Path, opts: TrainOptions, rep: Reporter,
                 initial_model: AT2SELD | None = None, ctx: Dist | None = None):
        self.classes, self.run_dir, self.opts, self.rep = data.classes, run_dir, opts, rep
        self.ctx = ctx or Dist()
        self.tc = cfg.training.model_copy(update={k: v for k, v in {
            "epochs": opts.epochs, "freeze_backbone_epochs": opts.freeze_backbone_epochs}.items() if v is not None})
        self.cfg = cfg.model_copy(update={"num_classes": len(self.classes), "training": self.tc})
        skipped: list[str] = []
        self.train_clips = data.clips("train", opts.skip_bad, skipped)
        self.val_clips = data.clips("val", opts.skip_bad, skipped)
        for s in skipped:
            rep.message(f"skipped: {s}")
        self.train_clips = balanced_subset(self.train_clips, len(self.classes), self.tc.class_balance, rep.message)
        self.model, self.state, resume = self.init_or_resume(initial_model)
        self.precision = Precision(opts.amp, self.ctx.device)
        self.loader = self._make_loader()
        self._place_model()
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=self.tc.lr, weight_decay=self.tc.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            self.optimizer, T_0=self.tc.restart_epochs * len(self.loader), T_mult=self.tc.restart_mult,
            eta_min=self.tc.min_lr)
        if resume and "optimizer" in resume:
            self.optimizer.load_state_dict(resume["optimizer"])
            self.scheduler.load_state_dict(resume["scheduler"])
            self.precision.load_state_dict(resume.get("grad_scaler"))
        self.net = self._training_net()

    def init_or_resume(self, initial_model: AT2SELD | None) -> tuple[AT2SELD, TrainState, dict | None]:
        """Rank 0 reads last.pt and hands it to the other processes (a run folder need not be on
        storage every node shares)."""
        ckpt = self.ctx.broadcast(self._last_checkpoint() if self.ctx.is_main else None)
        if ckpt is not None:
            saved = ckpt.training_state or {}
            state = TrainState.from_dict(saved)
            if state.stopped in ("epochs", "time"):
                state.stopped = ""  # more epochs or minutes may be asked for now: run() stops again if not
            self.rep.message(f"resuming {self.run_dir} after epoch {state.epoch}")
            return model_from_checkpoint(ckpt), state, saved
        torch.manual_seed(self.tc.seed)  # the same seed gives the same initial weights
        if initial_model is not None and initial_model.config.fingerprint() != self.cfg.fingerprint():
            raise EdgeError("the initial model was built from another config than the one trained")
        model = initial_model if initial_model is not None else build_model(self.cfg)
        if self.opts.backbone_weights is not None and self.ctx.is_main:  # DDP hands rank 0's weights on
            from at2seld_edge.model.backbones.official_weights import load_official_checkpoint

            self.rep.message(load_official_checkpoint(model.backbone, self.opts.backbone_weights).summary())
        return model, TrainState(), None

    def _last_checkpoint(self):
        last = self.run_dir / "last.pt"
        if not last.exists():
            return None
        ckpt = load_checkpoint(last)
        if ckpt.config.fingerprint() != self.cfg.fingerprint() or ckpt.classes != self.classes:
            raise EdgeError(f"{self.run_dir}: holds a run of another config or class list; use another --out")
        return ckpt

    def _make_loader(self) -> DataLoader:
        """Every process reads its share of each global batch; workers read ahead in order."""
        tc, ctx, aug = self.tc, self.ctx, self.tc.augment
        seg_frames = round(tc.segment_seconds / self.cfg.audio.label_hop_s)
        self.train_set = SegmentDataset(self.train_clips, self.cfg.audio.label_hop_samples, len(self.classes),
                                        self.cfg.heads.n_tracks, seg_frames, aug.foa_rotations, tc.seed)
        batches = GlobalBatchSampler(len(self.train_set), tc.batch_size, tc.seed, ctx.rank, ctx.world)
        self.sampler = balanced_sampler(batches, self.train_set, tc.class_balance, self.rep.message)
        if self.sampler.left_out:
            self.rep.message(f"{self.sampler.left_out} segment(s) of each epoch left out: the last global batch "
                             f"has fewer segments than the {ctx.world} processes")
        workers = self.opts.workers
        return DataLoader(self.train_set, batch_sampler=self.sampler, num_workers=workers,
                          pin_memory=ctx.device.type == "cuda", persistent_workers=workers > 0,
                          generator=torch.Generator())  # leaves the global RNG (dropout) alone

    def _place_model(self) -> None:
        aug, ctx = self.tc.augment, self.ctx
        if aug.spec_augment:
            self.model.set_feature_augment(SpecAugment(aug.time_masks, aug.time_width, aug.freq_masks, aug.freq_width))
        self.model.to(ctx.device)
        if ctx.active and self.opts.sync_bn:
            self.model = sync_batchnorm(self.model, ctx)
        self.precision.prepare(self.model)
        if ctx.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # training segments all have one shape

    def _training_net(self) -> torch.nn.Module:
        """The model as the training step calls it: under DDP (gradients averaged over
        processes) and/or compiled. Validation and checkpoints use `self.model` itself."""
        net: torch.nn.Module = self.model
        if self.ctx.active:
            from torch.nn.parallel import DistributedDataParallel

            _set_backbone_frozen(self.model, False)  # DDP syncs what requires grad when wrapped
            dev = self.ctx.device
            net = DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None,
                                          find_unused_parameters=self.state.epoch < self.tc.freeze_backbone_epochs)
        return torch.compile(net) if self.opts.compile else net

    def run(self) -> TrainResult:
        started = time.monotonic() - self.state.train_seconds
        while not self.state.stopped:
            self.state.stopped = self.ctx.broadcast(self._stop_reason(started))  # rank 0's clock decides
            if not self.state.stopped:
                t0 = time.monotonic()
                sums, batches = self.train_epoch(self.state.epoch)
                self.validate_and_save(self.state.epoch, sums, batches, t0, started)
        result = None
        if self.ctx.is_main:
            best_path = self.run_dir / "best.pt"
            if not best_path.exists():
                raise EdgeError(f"{self.run_dir}: no epoch finished (stopped by {self.state.stopped})")
            best = load_checkpoint(best_path)
            result = TrainResult(self.run_dir, self.state.best_epoch, best.manifest.get("val_calibrated", {}),
                                 best.thresholds, self.state.history, self.state.stopped)
        return self.ctx.broadcast(result)

    def _stop_reason(self, started: float) -> str:
        if self.state.epoch >= self.tc.epochs:
            return "epochs"
        if self.opts.max_minutes is not None and (time.monotonic() - started) / 60 >= self.opts.max_minutes:
            return "time"
        return ""

    def train_epoch(self, epoch: int) -> tuple[dict[str, float], int]:
        """One pass over the training segments; randomness seeded from (seed, epoch)."""
        model = self.model
        _seed_everything(self.tc.seed, epoch, self.ctx.rank)
        self.sampler.set_epoch(epoch)
        frozen = epoch < self.tc.freeze_backbone_epochs
        _set_backbone_frozen(model, frozen)
        model.train()
        model.backbone.train(not frozen)  # a frozen backbone also keeps its BatchNorm statistics
        sums = {"loss": 0.0, "sed": 0.0, "doa": 0.0}
        self.rep.start_batches(epoch + 1, len(self.loader))
        for batch in self.loader:
            values = self.train_step(batch, epoch)
            for k in sums:
                sums[k] += values[k]
            self.rep.batch_done(values["loss"])
        return sums, len(self.loader)

    def train_step(self, batch: dict[str, Any], epoch: int) -> dict[str, float]:
        """One optimizer step on this process's share of a global batch; returns the global
        batch's loss parts (one device sync a step)."""
        dev, ctx = self.ctx.device, self.ctx
        on_dev = {k: batch[k].to(dev, non_blocking=True) for k in ("audio", "activity", "doa")}
        with self.precision.autocast():
            out = self.net(on_dev["audio"])
        loss_value, shown = self._global_means(loss_terms(out, on_dev, self.model))
        self.optimizer.zero_grad(set_to_none=True)
        self.precision.backward(loss_value)
        self.precision.unscale(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tc.grad_clip)
        loss, sed, doa, norm_value = torch.cat([shown, norm.detach().reshape(1).to(shown)]).tolist()
        if not math.isfinite(loss):
            raise _non_finite("loss", loss, sum(ctx.all_gather(list(batch["clip"])), []), epoch, self.run_dir)
        if not math.isfinite(norm_value) and not self.precision.skips_non_finite_steps:
            raise _non_finite("gradient", norm_value, sum(ctx.all_gather(list(batch["clip"])), []), epoch,
                              self.run_dir)
        self.precision.step(self.optimizer)
        self.scheduler.step()
        return {"loss": loss, "sed": sed, "doa": doa}

    def _global_means(self, terms: dict[str, Term]) -> tuple[torch.Tensor, torch.Tensor]:
        """One all-reduce of the terms' (detached) sums and counts. Returns the loss to backpropagate,
        each local sum over the global count times the process count (DDP's gradient average is
        then the gradient of the global batch's loss), and the global batch's (loss, sed, doa) to
        show: global sums over global counts, combined with the same weights."""
        lc, ctx = self.model.config.training.loss, self.ctx
        weights = (lc.sed_weight, lc.doa_weight, lc.semantic_weight)
        k = len(terms)
        total = ctx.sum(torch.stack([s.detach() for s, _ in terms.values()] + [n for _, n in terms.values()]))
        sums, counts = total[:k], total[k:].clamp(min=1.0)
        means = {name: s * ctx.world / n for (name, (s, _)), n in zip(terms.items(), counts)}
        shown = {name: s / n for name, s, n in zip(terms, sums, counts)}
        return (weighted_total(means, *weights),
                torch.stack([weighted_total(shown, *weights), shown["sed"], shown["doa"]]))

    def validation_outputs(self) -> list[ClipOutput] | None:
        """Every validation clip's predictions, in clip order, on rank 0 (None elsewhere): each
        process predicts a share, with rank 0's weights and BatchNorm statistics."""
        ctx, clips = self.ctx, self.val_clips
        ctx.broadcast_buffers(self.model)
        model = DeviceModel(self.model, ctx.device, self.precision.dtype)
        if not ctx.active:
            return predict_clips(model, clips)
        hop = self.model.config.audio.label_hop_samples  # the share's targets are built on rank 0 alone
        shares = ctx.gather([predict_clip(model, read_audio(clip), hop) for clip in clips[ctx.rank::ctx.world]])
        if shares is None:
            return None
        by_clip = {r + j * ctx.world: p for r, share in enumerate(shares) for j, p in enumerate(share)}
        return [clip_output(self.model.config, clip, *by_clip[i]) for i, clip in enumerate(clips)]

    def validate_and_save(self, epoch: int, sums: dict[str, float], batches: int, t0: float, started: float) -> None:
        """Model selection and early stopping use the score with thresholds calibrated on this
        epoch's validation outputs, the way the model will be used. Rank 0 decides and writes;
        the other processes take its state."""
        outputs = self.validation_outputs()
        if self.ctx.is_main:
            thresholds, _ = calibrate_thresholds(outputs)
            val = score_outputs(outputs, thresholds).results()
            row = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"],
                   **{f"train_{k}": v / batches for k, v in sums.items()},
                   **{f"val_{k}": v for k, v in val.items()}, "seconds": time.monotonic() - t0}
            improved = self._record(epoch, row, val, started)
            if improved:
                self._save("best.pt", epoch, thresholds=[float(t) for t in thresholds], val_calibrated=val)
            self._save("last.pt", epoch, training_state={
                **self.state.to_dict(), "optimizer": _to_cpu(self.optimizer.state_dict()),
                "scheduler": self.scheduler.state_dict(), "grad_scaler": self.precision.state_dict()})
            write_history(self.run_dir, self.state.history)
            self.rep.epoch_done(row, improved)
        self.state = self.ctx.broadcast(self.state)

    def _record(self, epoch: int, row: dict[str, float], val: dict[str, float], started: float) -> bool:
        state = self.state
        state.history.append(row)
        state.epoch = epoch + 1
        state.train_seconds = time.monotonic() - started
        if val["SELD"] < state.best_seld:
            state.best_seld, state.best_epoch, state.bad_epochs = val["SELD"], epoch + 1, 0
            return True
        state.bad_epochs += 1
        if state.bad_epochs >= self.tc.patience:
            state.stopped = "early stopping"
        return False

    def _save(self, name: str, epoch: int, thresholds: list[float] | None = None, training_state: dict | None = None,
              **manifest: Any) -> None:
        trained_on = {"device": self.ctx.device.type, "amp": self.opts.amp, "processes": self.ctx.world}
        save_checkpoint(self.run_dir / name, self.model, self.classes, thresholds,
                        manifest={"epoch": epoch + 1, "trained_on": trained_on, **manifest},
                        training_state=training_state)

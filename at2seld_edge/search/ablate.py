"""`edge ablate`: the method's stage-4 diagnostics, each a change to the base config trained over
several seeds, reported as the change in ER, F, LE, LR and SELD on a split (mean +- std over seeds
of the per-seed difference to the base run of the same seed).

The runs are the trials of one Optuna study (a grid over variant x seed) in the same storage as
`edge search`, so a killed command continues where it stopped (the killed run is retried, its
training resumes) and several workers can share the grid. The thresholds row needs no training:
the base runs are scored once with their calibrated thresholds and once with 0.5 for every class.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import optuna
from optuna.trial import TrialState
from pydantic import Field

from at2seld_edge.config import DEFAULT_PRESET, ModelConfig, config_from_dict, load_config
from at2seld_edge.data.spec import Dataset, load_dataset
from at2seld_edge.devices_torch import TorchDevice
from at2seld_edge.io import atomic_write_text, check_output_dir, markdown_table
from at2seld_edge.options import StageOptions
from at2seld_edge.plots import pyplot, save_figure
from at2seld_edge.registry import Registry
from at2seld_edge.search.study import WorkerLoop, claim_params, open_storage, record_setup
from at2seld_edge.training.trainer import TrainOptions, train

METRICS = ("ER", "F", "LE", "LR", "SELD")
BASE = "base"
FIXED_THRESHOLDS = "thresholds"


class AblateOptions(StageOptions):
    """`edge ablate`'s options (flags of the same names)."""

    data: Path
    out: Path
    config: str = DEFAULT_PRESET
    seeds: int = Field(3, ge=1, le=100)
    epochs: int | None = Field(None, ge=1)  # per run; default the config's training.epochs
    split: str = "test"
    subset: float = Field(0.7, gt=0, lt=1)  # the balanced-subset variant's fraction of the training clips
    backbone_weights: Path | None = None  # adds the pretrained-vs-random row
    storage: str | None = None  # default sqlite:///OUT/ablate.db
    study: str = Field("edge-ablate", min_length=1)
    heartbeat: int = Field(30, ge=1, le=3600)
    device: TorchDevice = "auto"
    workers: int = Field(0, ge=0, le=256)

    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.out / 'ablate.db').resolve()}"


@dataclass(frozen=True)
class Variant:
    label: str  # the row of the table: what differs from the base
    change: Callable[[dict, AblateOptions], None]  # edits the config dict
    pretrained: bool = True  # starts from --backbone-weights where given; the random-init row needs them


VARIANTS: Registry[Callable[[ModelConfig, AblateOptions], Variant]] = Registry("ablation")


def _training(d: dict) -> dict:
    return d.setdefault("training", {})


def _balance(d: dict) -> dict:
    return _training(d).setdefault("class_balance", {})


VARIANTS.register("class-sampler")(lambda cfg, o: Variant(
    "class balance: segments drawn by inverse class frequency", lambda d, o: _balance(d).update(sampler=True)))
VARIANTS.register("class-subset")(lambda cfg, o: Variant(
    f"class balance: greedily balanced subset ({o.subset:.0%} of the clips)",
    lambda d, o: _balance(d).update(subset=o.subset)))


@VARIANTS.register("sed-loss")
def _sed_loss(cfg: ModelConfig, o: AblateOptions) -> Variant:
    focal = cfg.training.loss.focal_gamma > 0
    gamma = 0.0 if focal else 2.0
    return Variant("SED loss: BCE instead of focal" if focal else "SED loss: focal (gamma 2) instead of BCE",
                   lambda d, o: _training(d).setdefault("loss", {}).update(focal_gamma=gamma))


@VARIANTS.register("doa-supervision")
def _doa(cfg: ModelConfig, o: AblateOptions) -> Variant:
    other = "all" if cfg.training.loss.doa_supervision == "active" else "active"
    label = {"all": "DOA supervision: every track (full) instead of active only",
             "active": "DOA supervision: active tracks only instead of every track"}[other]
    return Variant(label, lambda d, o: _training(d).setdefault("loss", {}).update(doa_supervision=other))


VARIANTS.register("random-init")(lambda cfg, o: Variant(
    "backbone: random initialisation instead of pretrained", lambda d, o: None, pretrained=False))


def variants(cfg: ModelConfig, opts: AblateOptions) -> dict[str, Variant]:
    """The trained variants (base first); the pretrained row only with --backbone-weights."""
    out = {BASE: Variant("base", lambda d, o: None)}
    for name in VARIANTS.names():
        v = VARIANTS.get(name)(cfg, opts)
        if opts.backbone_weights is not None or v.pretrained:
            out[name] = v
    return out


@dataclass
class Ablation:
    opts: AblateOptions
    base: ModelConfig
    data: Dataset
    variants: dict[str, Variant]
    say: Callable[[str], None]

    def config(self, name: str, seed: int) -> ModelConfig:
        d = self.base.model_dump(mode="json")
        self.variants[name].change(d, self.opts)
        _training(d)["seed"] = seed
        return config_from_dict(d, f"ablation {name}, seed {seed}")


def run_ablation(opts: AblateOptions, say: Callable[[str], None] = lambda m: None) -> dict:
    check_output_dir(opts.out, is_ours=lambda p: (p / "ablate.db").exists() or (p / "ablation.md").exists(),
                     what="ablation output folder")
    opts.out.mkdir(parents=True, exist_ok=True)
    base = load_config(opts.config)
    ab = Ablation(opts, base, load_dataset(opts.data), variants(base, opts), say)
    grid = {"variant": list(ab.variants), "seed": list(range(opts.seeds))}
    storage = open_storage(opts.storage_url(), opts.heartbeat)
    study = optuna.create_study(study_name=opts.study, storage=storage, direction="minimize",
                                sampler=optuna.samplers.GridSampler(grid, seed=0), load_if_exists=True)
    record_setup(study, {"config": base.model_dump(mode="json"), "grid": grid,
                         "data": {"name": ab.data.spec.name, "classes": ab.data.classes},
                         "epochs": opts.epochs, "split": opts.split, "subset": opts.subset,
                         "backbone_weights": str(opts.backbone_weights) if opts.backbone_weights else None})
    say(f"{len(grid['variant'])} variants x {opts.seeds} seeds, study {opts.study} in {opts.storage_url()}")
    WorkerLoop(study, len(grid["variant"]) * opts.seeds).run(lambda t: ablation_trial(ab, t), say)
    return write_ablation(ab, study)


def ablation_trial(ab: Ablation, trial: optuna.Trial) -> float:
    name = trial.suggest_categorical("variant", list(ab.variants))
    seed = trial.suggest_categorical("seed", list(range(ab.opts.seeds)))
    claim_params(trial, {"variant": name, "seed": seed})
    variant, cfg = ab.variants[name], ab.config(name, seed)
    run_dir = ab.opts.out / "runs" / f"{name}-seed{seed}"
    weights = ab.opts.backbone_weights if variant.pretrained else None
    train(cfg, ab.data, run_dir, TrainOptions(epochs=ab.opts.epochs, backbone_weights=weights, device=ab.opts.device,
                                              workers=ab.opts.workers))
    scores = score_run(ab, run_dir, fixed=name == BASE)
    trial.set_user_attr("metrics", scores["calibrated"])
    if name == BASE:
        trial.set_user_attr("metrics_fixed", scores["fixed"])
    ab.say(f"{name}, seed {seed}: " + "  ".join(f"{m} {scores['calibrated'][m]:.3f}" for m in METRICS))
    return scores["calibrated"]["SELD"]


def score_run(ab: Ablation, run_dir: Path, fixed: bool) -> dict[str, dict[str, float]]:
    """DCASE 2023 metrics on the split with the run's calibrated thresholds (and with 0.5)."""
    from at2seld_edge.checkpoint import load_checkpoint, model_from_checkpoint
    from at2seld_edge.devices_torch import DeviceModel, resolve_device
    from at2seld_edge.evaluation.evaluate import evaluate_outputs, predict_clips

    ckpt = load_checkpoint(run_dir / "best.pt")
    model = DeviceModel(model_from_checkpoint(ckpt), resolve_device(ab.opts.device))
    outputs = predict_clips(model, ab.data.clips(ab.opts.split))
    out = {}
    for kind, thresholds in (("calibrated", np.array(ckpt.thresholds)), ("fixed", np.full(len(ckpt.thresholds), 0.5))):
        if kind == "fixed" and not fixed:
            continue
        scores = evaluate_outputs(outputs, thresholds, ab.data.classes, run_dir / f"eval-{ab.opts.split}-{kind}")
        out[kind] = {m: float(scores.results["dcase2023"][m]) for m in METRICS}
    return out


# ----------------------------------------------------------------------------- the table


def collect(ab: Ablation, study: optuna.Study) -> dict[str, dict[int, dict[str, float]]]:
    """variant -> seed -> metrics, from the complete trials (the thresholds row from the base's)."""
    runs: dict[str, dict[int, dict[str, float]]] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        runs.setdefault(t.params["variant"], {})[t.params["seed"]] = t.user_attrs["metrics"]
        if "metrics_fixed" in t.user_attrs:
            runs.setdefault(FIXED_THRESHOLDS, {})[t.params["seed"]] = t.user_attrs["metrics_fixed"]
    return runs


def deltas(runs: dict[str, dict[int, dict[str, float]]]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """variant -> metric -> (mean, std, seeds) of variant - base over the seeds both have."""
    base = runs.get(BASE, {})
    out = {}
    for name, by_seed in runs.items():
        if name == BASE:
            continue
        seeds = sorted(set(by_seed) & set(base))
        if seeds:
            diff = {m: np.array([by_seed[s][m] - base[s][m] for s in seeds]) for m in METRICS}
            out[name] = {m: (float(d.mean()), float(d.std(ddof=1)) if len(d) > 1 else 0.0, len(d))
                         for m, d in diff.items()}
    return out


def write_ablation(ab: Ablation, study: optuna.Study) -> dict:
    runs = collect(ab, study)
    table = deltas(runs)
    labels = {**{n: v.label for n, v in ab.variants.items()},
              FIXED_THRESHOLDS: "thresholds: fixed 0.5 instead of calibrated on validation"}
    base = runs.get(BASE, {})
    base_stats = {m: (float(np.mean([r[m] for r in base.values()])), float(np.std([r[m] for r in base.values()],
                                                                                   ddof=1)) if len(base) > 1 else 0.0)
                  for m in METRICS} if base else {}
    rows = [["base (absolute)", str(len(base)), *(f"{base_stats[m][0]:.3f} +- {base_stats[m][1]:.3f}"
                                                   for m in METRICS)]] if base else []
    rows += [[labels[n], str(d["SELD"][2]), *(f"{d[m][0]:+.3f} +- {d[m][1]:.3f}" for m in METRICS)]
             for n, d in table.items()]
    o = ab.opts
    text = (f"# edge ablate: {ab.base.name}\n\nData {o.data}, split `{o.split}` (DCASE 2023 metrics, official frame "
            f"range); {o.epochs or ab.base.training.epochs} training epochs per run; seeds 0..{o.seeds - 1}; study "
            f"`{o.study}` in `{o.storage_url()}`.\nEach row: mean +- std over seeds of (variant - base) for the same "
            "seed; SELD, ER and LE lower is better, F and LR higher is better.\n\n"
            + markdown_table(["change", "seeds", *METRICS], rows) + "\n")
    atomic_write_text(o.out / "ablation.md", text)
    result = {"base": base_stats, "deltas": table, "labels": labels, "runs": runs}
    atomic_write_text(o.out / "ablation.json", json.dumps(result, indent=2))
    plot_ablation(table, labels, o.out / "ablation.png", ab.base.name)
    return {"text": text, "rows": rows, **result}


def plot_ablation(table: dict, labels: dict[str, str], path: Path, name: str) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 0.6 * max(3, len(table)) + 1.5), sharey=True)
    names = list(table)
    y = np.arange(len(names))
    for ax, metric in zip(axes, ("SELD", "F", "LE")):
        mean = [table[n][metric][0] for n in names]
        std = [table[n][metric][1] for n in names]
        better = [(m < 0) == (metric != "F") for m in mean]
        ax.barh(y, mean, xerr=std, color=["tab:green" if b else "tab:red" for b in better], alpha=0.8, capsize=3)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_title(f"change in {metric}" + (" (deg)" if metric == "LE" else ""))
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_yticks(y, [labels[n] for n in names], fontsize=8)
    fig.suptitle(f"edge ablate {name}: variant - base, mean +- std over seeds (green: better)")
    fig.tight_layout()
    return save_figure(fig, path)

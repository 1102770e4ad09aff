"""`edge search`: the method's staged architecture search against a device budget.

Stages (one Optuna study each, `STUDY:stage1..3`, in one storage): 1. front-end descriptors x
early spatial encoder type, a grid; 2. depth allocation (encoder blocks and width, transformer
layers, width and heads, GRU width and layers); 3. regularization and the semantic-spatial
interaction (cross-stitch late / early / off, dropouts, weight decay, SpecAugment strength). Each
stage starts from the previous stage's choice, stored in that stage's study. Two objectives, both
minimized: the validation SELD score after `--epochs` epochs (thresholds calibrated, as training
selects models) and the device latency estimate; the budget's latency, peak memory and parameter
limits are Optuna constraints (value - limit <= 0). Infeasible trials are kept and shown, never
chosen: a stage chooses its feasible trial with the lowest SELD score (ties: lower latency).
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal

import optuna
from optuna.trial import FrozenTrial, TrialState
from pydantic import Field

from at2seld_edge.config import DEFAULT_PRESET, ModelConfig, config_from_dict, load_config
from at2seld_edge.data.spec import Dataset, load_dataset
from at2seld_edge.devices_torch import TorchDevice
from at2seld_edge.errors import EdgeError
from at2seld_edge.io import check_output_dir
from at2seld_edge.options import ProfilePrecision, StageOptions
from at2seld_edge.search.space import Param, SearchSpace, Value, apply_params, load_space
from at2seld_edge.search.study import (KEY_ATTR, LIVE, PRUNERS, SKIPPED_ATTR, DuplicateParams, EpochPruner, WorkerLoop,
                                       claim_params, existing_study, open_storage, params_key, record_setup)
from at2seld_edge.training.trainer import TrainOptions, train

STAGES = (1, 2, 3)
STAGE_TITLES = {1: "front-end descriptors x early spatial encoder type (grid)",
                2: "depth allocation: spatial encoder, track transformer, recurrent smoother",
                3: "regularization and semantic-spatial interaction"}


@dataclass(frozen=True)
class Cost:
    """What the device budget limits, for one config."""

    latency_ms: float  # the device latency estimate of one inference over the budget's window
    peak_memory_mb: float  # weights + peak live activations at the precision
    params_m: float


@dataclass(frozen=True)
class Limits:
    latency_ms: float | None = None
    peak_memory_mb: float | None = None
    params_m: float | None = None

    def constraints(self, cost: Cost) -> list[float]:
        """Optuna's constraint values, feasible when all are <= 0 (an absent limit gives -1)."""
        return [getattr(cost, k) - lim if lim is not None else -1.0 for k, lim in asdict(self).items()]


@dataclass
class DeviceBudget:
    """The device side, resolved by the caller (the CLI, from deploy/): names for the record, the
    budget's limits and the cost function (deploy's latency model)."""

    target: str
    budget: str
    precision: str
    limits: Limits
    cost: Callable[[ModelConfig], Cost]


class SearchOptions(StageOptions):
    """`edge search`'s options (flags of the same names)."""

    data: Path
    out: Path
    config: str = DEFAULT_PRESET
    stage: Literal["1", "2", "3", "all"] = "all"
    trials: int = Field(8, ge=1, le=10_000)  # trained per stage (stage 1: at most its grid)
    epochs: int = Field(4, ge=1)  # training epochs per trial
    storage: str | None = None  # SQLAlchemy URL; default sqlite:///OUT/search.db
    study: str = Field("edge-search", min_length=1)
    space: Path | None = None
    precision: ProfilePrecision = "fp16"  # the precision the latency is estimated at
    sampler: Literal["tpe", "nsga2"] = "tpe"
    pruner: Literal["median", "halving", "none"] = "median"
    skip_infeasible: bool = False  # prune over-budget trials before training (saves their time)
    seed: int = 0
    heartbeat: int = Field(30, ge=1, le=3600)  # seconds between a trial's heartbeats
    device: TorchDevice = "auto"
    workers: int = Field(0, ge=0, le=256)

    @property
    def stages(self) -> tuple[int, ...]:
        return STAGES if self.stage == "all" else (int(self.stage),)

    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.out / 'search.db').resolve()}"


@dataclass
class StageResult:
    stage: int
    study: optuna.Study
    base: ModelConfig
    chosen: FrozenTrial | None
    config: ModelConfig | None  # the chosen trial's config


@dataclass
class SearchRun:
    opts: SearchOptions
    device: DeviceBudget
    space: SearchSpace
    data: Dataset
    storage: object
    say: Callable[[str], None]
    results: list[StageResult] = field(default_factory=list)
    _costs: dict[str, Cost] = field(default_factory=dict)

    def cost(self, cfg: ModelConfig) -> Cost:
        key = cfg.fingerprint()
        if key not in self._costs:
            self._costs[key] = self.device.cost(cfg)
        return self._costs[key]


def stage_name(study: str, k: int) -> str:
    return f"{study}:stage{k}"


def run_search(opts: SearchOptions, device: DeviceBudget, say: Callable[[str], None] = lambda m: None) -> SearchRun:
    """Run (or continue) the requested stages; every stage already in the storage is reported."""
    check_output_dir(opts.out, is_ours=lambda p: any((p / f).exists() for f in ("report.md", "search.db", "trials")),
                     what="search output folder")
    opts.out.mkdir(parents=True, exist_ok=True)
    run = SearchRun(opts, device, load_space(str(opts.space) if opts.space else None), load_dataset(opts.data),
                    open_storage(opts.storage_url(), opts.heartbeat), say)
    for k in opts.stages:
        run.results.append(run_stage(run, k))
    return run


def stage_base(run: SearchRun, k: int) -> ModelConfig:
    """Stage 1 starts from --config; stage k from stage k-1's choice, as its study recorded it."""
    if k == 1:
        return load_config(run.opts.config)
    prev = existing_study(run.storage, stage_name(run.opts.study, k - 1))
    chosen = prev.user_attrs.get("chosen") if prev is not None else None
    if chosen is None:
        raise EdgeError(f"stage {k} starts from stage {k - 1}'s choice, and study {run.opts.study!r} in "
                        f"{run.opts.storage_url()} has none yet: run --stage {k - 1} (or --stage all) first")
    return config_from_dict(chosen["config"], f"stage {k - 1}'s choice in study {run.opts.study}")


def run_stage(run: SearchRun, k: int) -> StageResult:
    opts, space = run.opts, run.space
    base = stage_base(run, k)
    space.check(k, base)
    sampler = _sampler(opts, space, k)
    study = optuna.create_study(study_name=stage_name(opts.study, k), storage=run.storage, sampler=sampler,
                                directions=["minimize", "minimize"], load_if_exists=True)
    study.set_metric_names(["val_SELD", "latency_ms"])
    record_setup(study, _setup(run, k, base))
    params = space.stage(k).values()
    size = math.prod(len(p.choices) for p in params) if all(p.choices is not None for p in params) else None
    loop = WorkerLoop(study, min(opts.trials, size or opts.trials), size)
    target = loop.target
    pruner = EpochPruner(opts.storage_url(), study.study_name, PRUNERS[opts.pruner]())
    run.say(f"stage {k}: {STAGE_TITLES[k]}; {target} trials of {opts.epochs} epoch(s); study {study.study_name}")
    loop.run(lambda trial: objective(run, k, base, loop, pruner, trial), run.say)
    chosen = choose(study)
    config = None
    if chosen is not None:
        config = apply_params(space, base, chosen.params)
        study.set_user_attr("chosen", {"trial": chosen.number, "params": chosen.params,
                                       "config": config.model_dump(mode="json")})
        run.say(f"stage {k} chose trial {chosen.number}: {_show(chosen.params)} (val SELD {chosen.values[0]:.3f}, "
                f"latency {chosen.values[1]:.2f} ms)")
    else:
        run.say(f"stage {k}: no finished trial meets the budget; nothing chosen (relax --budget or the space)")
    return StageResult(k, study, base, chosen, config)


def _sampler(opts: SearchOptions, space: SearchSpace, k: int) -> optuna.samplers.BaseSampler:
    if k == 1:
        return optuna.samplers.GridSampler(space.grid(1), seed=opts.seed)
    # both read the constraints each trial sets (Trial.set_constraint)
    if opts.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=opts.seed + k, population_size=max(4, min(50, opts.trials // 2)))
    return optuna.samplers.TPESampler(seed=opts.seed + k, multivariate=True,
                                      n_startup_trials=max(2, min(10, opts.trials // 3)))


def _setup(run: SearchRun, k: int, base: ModelConfig) -> dict:
    o, d = run.opts, run.device
    return {"base_config": base.model_dump(mode="json"), "space": {n: p.model_dump() for n, p in run.space.stage(k).items()},
            "encoder_types": run.space.encoder_types if k == 1 else None,
            "data": {"name": run.data.spec.name, "classes": run.data.classes},  # paths differ between machines
            "epochs": o.epochs, "target": d.target, "budget": d.budget, "precision": d.precision,
            "limits": asdict(d.limits), "skip_infeasible": o.skip_infeasible}


def suggest(trial: optuna.Trial, name: str, p) -> Value:
    if p.choices is not None:
        return trial.suggest_categorical(name, p.choices)
    if p.integer:
        return trial.suggest_int(name, int(p.low), int(p.high), log=p.log)
    return trial.suggest_float(name, p.low, p.high, log=p.log)


def objective(run: SearchRun, k: int, base: ModelConfig, loop: WorkerLoop, pruner: EpochPruner,
              trial: optuna.Trial) -> tuple[float, float]:
    params = {name: suggest(trial, name, p) for name, p in run.space.stage(k).items()}
    try:
        key = claim_params(trial, params)
    except DuplicateParams:
        queue_untried(run.space.stage(k), trial.study, seed=trial.number)
        raise
    loop.check_surplus(trial)
    cfg = apply_params(run.space, base, params)
    cost = run.cost(cfg)
    constraints = run.device.limits.constraints(cost)
    trial.set_user_attr("cost", asdict(cost))
    trial.set_user_attr("constraints", constraints)
    for name, value in zip(asdict(run.device.limits), constraints):
        trial.set_constraint(name, value)  # a retried trial carries them already: the same values
    feasible = all(c <= 0 for c in constraints)
    head = f"stage {k} trial {trial.number}: {_show(params)}; latency {cost.latency_ms:.2f} ms"
    if not feasible and run.opts.skip_infeasible:
        run.say(f"{head}: over budget, not trained (--skip-infeasible; not counted in --trials)")
        trial.set_user_attr(SKIPPED_ATTR, "over budget")
        raise optuna.TrialPruned("over budget")
    run_dir = run.opts.out / "trials" / f"stage{k}" / key
    trial.set_user_attr("run", str(run_dir))
    reporter, twin = pruner.reporter(trial)
    train_opts = TrainOptions(epochs=run.opts.epochs, device=run.opts.device, workers=run.opts.workers)
    value = None
    try:
        result = train(cfg, run.data, run_dir, train_opts, reporter=reporter)
        value = float(result.best_val["SELD"])
        trial.set_user_attr("val", {m: float(v) for m, v in result.best_val.items()})
    except optuna.TrialPruned:
        run.say(f"{head}: pruned after epoch {len(trial.user_attrs.get('val_SELD_by_epoch', []))}")
        raise
    finally:
        pruner.finish(twin, value)
    run.say(f"{head}: val SELD {value:.3f}{'' if feasible else ' (over budget)'}")
    return value, cost.latency_ms


def queue_untried(space: dict[str, Param], study: optuna.Study, seed: int) -> None:
    """TPE proposes a point it likes again and again on a small discrete space, and workers with one
    seed propose the same points: after a duplicate, queue a point that no trial holds or waits for,
    which the next ask (of any worker) takes. Spaces with ranges rarely repeat; the sampler draws on."""
    if any(p.choices is None for p in space.values()):
        return
    taken = {t.user_attrs.get(KEY_ATTR) for t in study.get_trials(deepcopy=False, states=LIVE)}
    taken |= {params_key(t.system_attrs["fixed_params"]) for t in study.get_trials(deepcopy=False, states=(
        TrialState.WAITING,)) if "fixed_params" in t.system_attrs}
    free = [dict(zip(space, values)) for values in itertools.product(*(p.choices for p in space.values()))]
    free = [point for point in free if params_key(point) not in taken]
    if free:
        study.enqueue_trial(random.Random(seed).choice(free))


def is_feasible(t: FrozenTrial) -> bool:
    return all(c <= 0 for c in t.user_attrs.get("constraints", [1.0]))


def choose(study: optuna.Study) -> FrozenTrial | None:
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if is_feasible(t)]
    return min(done, key=lambda t: (t.values[0], t.values[1], t.number)) if done else None


def _show(params: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())

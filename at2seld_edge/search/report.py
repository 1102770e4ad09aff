"""What `edge search` writes: `pareto.png` (validation SELD vs the latency estimate, budget line,
chosen point), `report.md` (per stage: trials, best trials, parameter importances, the choice) and
`best.yaml` (the last stage's choice as a config `edge train --config` takes as is)."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from at2seld_edge.config import ModelConfig
from at2seld_edge.io import atomic_write_text, markdown_table
from at2seld_edge.plots import pyplot, save_figure
from at2seld_edge.search.search import STAGE_TITLES, STAGES, SearchRun, is_feasible, stage_name
from at2seld_edge.search.study import SKIPPED_ATTR, existing_study

TOP = 5


def stage_studies(run: SearchRun) -> dict[int, optuna.Study]:
    """Every stage of the study that exists in the storage (this command's and earlier ones')."""
    found = {k: existing_study(run.storage, stage_name(run.opts.study, k)) for k in STAGES}
    return {k: s for k, s in found.items() if s is not None}


def write_outputs(run: SearchRun) -> list[Path]:
    studies = stage_studies(run)
    out = run.opts.out
    written = [plot_pareto(studies, run, out / "pareto.png")]
    atomic_write_text(out / "report.md", report_text(studies, run))
    written.append(out / "report.md")
    best = best_config(studies, run)
    if best is not None:
        atomic_write_text(out / "best.yaml", best_yaml(best, run, studies))
        written.append(out / "best.yaml")
    return written


def _latest_chosen(studies: dict[int, optuna.Study]) -> tuple[int, dict] | None:
    """The newest stage that chose, and its record of the choice."""
    for k in sorted(studies, reverse=True):
        chosen = studies[k].user_attrs.get("chosen")
        if chosen is not None:
            return k, chosen
    return None


def best_config(studies: dict[int, optuna.Study], run: SearchRun) -> ModelConfig | None:
    from at2seld_edge.config import config_from_dict

    latest = _latest_chosen(studies)
    return None if latest is None else config_from_dict(latest[1]["config"], f"stage {latest[0]}'s choice")


def best_yaml(cfg: ModelConfig, run: SearchRun, studies: dict[int, optuna.Study]) -> str:
    d = run.device
    stages = sorted(studies)
    cfg = cfg.model_copy(update={
        "name": f"{run.opts.study}-best",
        "description": f"found by edge search (study {run.opts.study}, stages {', '.join(map(str, stages))}) for "
                       f"{d.target} under budget {d.budget} at {d.precision}"})
    head = (f"# edge search {run.opts.study}: the last stage's choice; train it with\n"
            f"#   edge train --config best.yaml --data {run.opts.data} --out RUN\n")
    return head + yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def plot_pareto(studies: dict[int, optuna.Study], run: SearchRun, path: Path) -> Path:
    return save_figure(pareto_figure(studies, run), path)


def pareto_figure(studies: dict[int, optuna.Study], run: SearchRun):
    """Validation SELD against the latency estimate, zoomed on the trials; the budget's latency
    limit a line where it falls near them, else an arrow at the edge towards it."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 5.5))
    colors = {1: "tab:blue", 2: "tab:orange", 3: "tab:green"}
    every = []
    for k, study in studies.items():
        trials = _complete(study)
        every += trials
        ok = [t for t in trials if is_feasible(t)]
        bad = [t for t in trials if not is_feasible(t)]
        ax.scatter([t.values[1] for t in ok], [t.values[0] for t in ok], c=colors[k], label=f"stage {k}", alpha=0.8)
        if bad:
            ax.scatter([t.values[1] for t in bad], [t.values[0] for t in bad], c=colors[k], marker="x",
                       label=f"stage {k}, over budget", alpha=0.8)
    _plot_unfinished(ax, studies)
    front = _front([t for t in every if is_feasible(t)])
    if front:
        ax.plot([t.values[1] for t in front], [t.values[0] for t in front], "k--", lw=1, label="feasible Pareto front")
    _budget_line(ax, run.device.limits.latency_ms, run.device.budget)
    chosen = _last_choice(studies)
    if chosen is not None:
        ax.scatter([chosen.values[1]], [chosen.values[0]], marker="*", s=320, c="gold", edgecolors="k", zorder=5,
                   label=f"chosen (trial {chosen.number})")
    ax.set_xlabel(f"latency estimate on {run.device.target}, {run.device.precision} (ms per inference)")
    ax.set_ylabel(f"validation SELD score after {run.opts.epochs} epoch(s) (lower is better)")
    ax.set_title(f"edge search {run.opts.study}: {len(every)} finished trials", pad=14)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # beside the points
    fig.tight_layout()
    return fig


def _budget_line(ax, limit: float | None, budget: str) -> None:
    """The latency limit as a line when it lies within the trials' span again beyond them; else
    the axis stays on the trials and an arrow at its edge points to the limit, labelled."""
    if limit is None:
        return
    xs = [x for coll in ax.collections for x in coll.get_offsets()[:, 0]] + \
         [x for line in ax.get_lines() for x in line.get_xdata()]
    if not xs:
        ax.axvline(limit, color="red", lw=1.5, label=f"budget {budget}: {limit:g} ms")
        return
    lo, hi = min(xs), max(xs)
    pad = 0.08 * (hi - lo) if hi > lo else 0.1 * abs(hi) or 1.0
    lo, hi = lo - pad, hi + pad
    if lo - (hi - lo) <= limit <= hi + (hi - lo):  # near the trials: in view
        lo, hi = min(lo, limit - pad), max(hi, limit + pad)
        ax.axvline(limit, color="red", lw=1.5, label=f"budget {budget}: {limit:g} ms")
        ax.set_xlim(lo, hi)
        return
    ax.set_xlim(lo, hi)
    right = limit > hi
    ax.annotate(f"{limit:g} ms", xy=(1.0 if right else 0.0, 1.035), xycoords="axes fraction",  # above the trials
                xytext=(0.9 if right else 0.1, 1.035), textcoords="axes fraction", ha="center", va="center",
                color="red", fontsize=9, bbox={"boxstyle": "round", "fc": "white", "ec": "red"},
                arrowprops={"arrowstyle": "->", "color": "red", "lw": 1.5})
    where = "every trial under it" if right else "every trial over it"
    ax.plot([], [], color="red", lw=1.5, marker=">" if right else "<",  # the legend's entry for the arrow
            label=f"budget {budget}: {limit:g} ms, off the axis\n({where})")


def _plot_unfinished(ax, studies: dict[int, optuna.Study]) -> None:
    """Pruned trials at their last validation score (faint); over-budget ones skipped untrained as
    crosses along the bottom, at their latency."""
    pruned = [t for s in studies.values() for t in s.get_trials(deepcopy=False, states=(TrialState.PRUNED,))]
    curves = [t for t in pruned if t.user_attrs.get("val_SELD_by_epoch")]
    if curves:
        ax.scatter([t.user_attrs["cost"]["latency_ms"] for t in curves],
                   [t.user_attrs["val_SELD_by_epoch"][-1] for t in curves], facecolors="none", edgecolors="grey",
                   label="pruned (score at its last epoch)")
    skipped = [t for t in pruned if SKIPPED_ATTR in t.user_attrs]
    if skipped:
        ax.plot([t.user_attrs["cost"]["latency_ms"] for t in skipped], [0.03] * len(skipped), "rx",
                transform=ax.get_xaxis_transform(), label="over budget, not trained")


def _front(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Trials no other trial beats on both objectives, by latency."""
    front = [t for t in trials if not any(o.values[0] <= t.values[0] and o.values[1] <= t.values[1]
                                          and o.values != t.values for o in trials)]
    return sorted(front, key=lambda t: t.values[1])


def _last_choice(studies: dict[int, optuna.Study]) -> FrozenTrial | None:
    latest = _latest_chosen(studies)
    return None if latest is None else studies[latest[0]].get_trials(deepcopy=False)[latest[1]["trial"]]


def report_text(studies: dict[int, optuna.Study], run: SearchRun) -> str:
    o, d = run.opts, run.device
    lim = ", ".join(f"{k} <= {v:g}" for k, v in vars(d.limits).items() if v is not None) or "none"
    parts = [f"# edge search: {o.study}\n",
             f"- target {d.target}, precision {d.precision}, budget {d.budget} (constraints: {lim})",
             f"- data {o.data}; {o.epochs} training epoch(s) per trial; objectives: validation SELD score "
             "(thresholds calibrated) and the device latency estimate, both minimized",
             f"- storage `{o.storage_url()}` (`optuna-dashboard {o.storage_url()}`)",
             "- a stage chooses its feasible finished trial with the lowest validation SELD score; infeasible trials "
             "are listed, never chosen\n"]
    for k, study in studies.items():
        parts.append(stage_section(k, study))
    return "\n".join(parts)


def stage_section(k: int, study: optuna.Study) -> str:
    trials = study.get_trials(deepcopy=False)
    count = {s: sum(t.state == s for t in trials) for s in TrialState}
    infeasible = sum(1 for t in trials if t.state == TrialState.COMPLETE and not is_feasible(t))
    lines = [f"## Stage {k}: {STAGE_TITLES[k]}\n",
             f"Study `{study.study_name}`: {count[TrialState.COMPLETE]} complete ({infeasible} over budget), "
             f"{count[TrialState.PRUNED]} pruned, {count[TrialState.FAIL]} failed (duplicates, killed and retried, "
             f"or errors), {count[TrialState.RUNNING]} running.\n"]
    base = study.user_attrs.get("setup", {}).get("base_config", {})
    lines.append(f"Started from stage {k - 1}'s choice." if k > 1 else f"Started from `{base.get('name')}`.")
    lines += ["", "### Best trials\n", trials_table(study), "", "### Parameter importances\n", importances(study), ""]
    chosen = study.user_attrs.get("chosen")
    if chosen is None:
        lines.append("**Chose nothing**: no finished trial meets the budget.\n")
    else:
        t = trials[chosen["trial"]]
        lines.append(f"**Chose trial {t.number}**: " + ", ".join(f"`{p}` = {_fmt(v)}" for p, v in t.params.items())
                     + f" (validation SELD {t.values[0]:.3f}, latency {t.values[1]:.2f} ms).\n")
    return "\n".join(lines)


def trials_table(study: optuna.Study) -> str:
    done = sorted(_complete(study), key=lambda t: (not is_feasible(t), t.values[0], t.values[1]))
    pruned = [t for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))]
    names = list(study.user_attrs.get("setup", {}).get("space", {})) or sorted({p for t in done for p in t.params})
    header = ["trial", *names, "val SELD", "F", "LE", "latency ms", "memory MB", "params M", "budget"]
    rows = []
    for t in done[:TOP] + pruned[:TOP]:
        val, cost = t.user_attrs.get("val", {}), t.user_attrs.get("cost", {})
        seld = f"{t.values[0]:.3f}" if t.values else f"pruned ({_last(t)})"
        rows.append([str(t.number), *(_fmt(t.params.get(n, "")) for n in names), seld, _fmt(val.get("F", "")),
                     _fmt(val.get("LE", "")), _fmt(cost.get("latency_ms", "")), _fmt(cost.get("peak_memory_mb", "")),
                     _fmt(cost.get("params_m", "")), "ok" if is_feasible(t) else "over"])
    return markdown_table(header, rows) if rows else "(no finished trial yet)"


def _last(t: FrozenTrial) -> str:
    curve = t.user_attrs.get("val_SELD_by_epoch", [])
    return f"{curve[-1]:.3f} at epoch {len(curve)}" if curve else "before training"


def importances(study: optuna.Study) -> str:
    """Optuna's default importance evaluator (PED-ANOVA) on the validation SELD score."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its notes on few trials; the table says how many
            imp = optuna.importance.get_param_importances(study, target=lambda t: t.values[0])
    except (ValueError, RuntimeError, ZeroDivisionError) as e:
        return f"(not computed: {e})"
    if not imp:
        return "(not computed: too few complete trials)"
    evaluator = type(optuna.importance.PedAnovaImportanceEvaluator()).__name__
    return markdown_table(["parameter", "importance for val SELD"], [[k, f"{v:.3f}"] for k, v in imp.items()]) + \
        f"\n\n({evaluator}, Optuna's default, over the complete trials)"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e-2 or abs(v) >= 1e3 else f"{v:.3f}".rstrip("0").rstrip(".")
    return str(v)

"""Check a profile against a budget and write report.md, report.json and report.png."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from at2seld_edge.plots import pyplot, save_figure
from at2seld_edge.deploy.budgets import Budget, Limits
from at2seld_edge.deploy.profiler import ModuleProfile, Profile
from at2seld_edge.errors import EdgeError, ErrorKind
from at2seld_edge.io import atomic_write_text, markdown_table

MB = 1e6


@dataclass
class Check:
    scope: str  # a module name or "total"
    metric: str  # latency_ms, peak_memory_mb, gmacs_per_second, params_m
    value: float
    limit: float

    @property
    def passed(self) -> bool:
        return self.value <= self.limit

    @property
    def overrun(self) -> float:
        """Fraction over the limit (0 when within)."""
        return max(0.0, self.value / self.limit - 1.0)

    def describe(self) -> str:
        return f"{self.scope} {self.metric} {self.value:.3g} > {self.limit:.3g} (+{self.overrun:.0%})"


def _values(profile: Profile, m: ModuleProfile) -> dict[str, float | None]:
    mem = m.memory_bytes
    return {
        "latency_ms": profile.checked_latency_ms(m),
        "peak_memory_mb": None if mem is None else mem / MB,
        "gmacs_per_second": m.macs_per_second / 1e9,
        "params_m": m.params / 1e6,
    }


def check_budget(profile: Profile, budget: Budget) -> list[Check]:
    checks: list[Check] = []
    for m in profile.modules:
        wanted = _limits_dict(budget.module_limits(m.module)) | {"latency_ms": budget.module_latency_limit_ms(m.module)}
        checks += _checks(m.module, _values(profile, m), wanted)
    checks += _checks("total", _values(profile, profile.total), _limits_dict(budget.total))
    return checks


def _limits_dict(lim: Limits) -> dict[str, float | None]:
    return {"latency_ms": lim.latency_ms, "peak_memory_mb": lim.peak_memory_mb,
            "gmacs_per_second": lim.gmacs_per_second, "params_m": lim.params_m}


def _checks(scope: str, values: dict[str, float | None], limits: dict[str, float | None]) -> list[Check]:
    return [Check(scope, k, values[k], lim) for k, lim in limits.items() if lim is not None and values.get(k) is not None]


def violation_error(checks: list[Check], budget: Budget) -> EdgeError | None:
    over = [c for c in checks if not c.passed]
    if not over:
        return None
    return EdgeError(f"over budget {budget.name}: " + "; ".join(c.describe() for c in over), ErrorKind.BUDGET)


# ----------------------------------------------------------------------------- writing


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def module_rows(profile: Profile) -> list[list[str]]:
    """One row per module and the total, in `module_header(profile)`'s columns."""
    kernels = profile.total.kernels is not None
    rows = []
    for m in [*profile.modules, profile.total]:
        lat = m.latency
        rows.append([
            m.module, f"{m.params:,}", f"{m.macs_per_second / 1e6:,.1f}", f"{m.weight_bytes / MB:.2f}",
            _fmt(None if m.peak_activation_bytes is None else m.peak_activation_bytes / MB, ".2f"),
            _fmt(m.layers, "d"), *([_fmt(m.kernels, "d")] if kernels else []),
            _fmt(lat.median_ms if lat else None, ".2f"), _fmt(lat.p95_ms if lat else None, ".2f"),
            _fmt(m.roofline_ms, ".4f") + (f" ({m.roofline_bound})" if m.roofline_bound else ""),
            _fmt(m.estimate_ms, ".3f"),
        ])
    return rows


def module_header(profile: Profile) -> list[str]:
    where = "target" if profile.latency_checked == "measured" else "here"
    return ["module", "params", "MMACs/s", "weights MB", "peak act. MB", "layers",
            *(["CUDA kernels"] if profile.total.kernels is not None else []),
            f"measured median ms ({where})", "p95 ms", "roofline ms (bound)", "estimate ms"]


def measured_where(profile: Profile) -> str:
    return "this machine's CPU" if profile.measured_on == "cpu" else profile.measured_on


def latency_basis(profile: Profile) -> str:
    """The sentence a report gives on which latency the budget saw."""
    where = measured_where(profile)
    if profile.latency_checked == "measured":
        return f"the {profile.backend} measurement on {where}, the target"
    est = profile.estimate or {}
    return (f"the estimate for {profile.target} ({est.get('executor', '?')} layers, constants from "
            f"{est.get('origin', '?')}); the roofline is a lower bound, and the measurement ran on {where}, not the "
            "target")


CHECK_HEADER = ["scope", "limit", "value", "budget", "result"]


def check_rows(checks: list[Check]) -> list[list[str]]:
    return [[c.scope, c.metric, f"{c.value:.3g}", f"{c.limit:.3g}", "PASS" if c.passed else f"FAIL (+{c.overrun:.0%})"]
            for c in checks]


def write_report(profile: Profile, budget: Budget, checks: list[Check], out_dir: Path, manifest: dict) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    passed = all(c.passed for c in checks)
    e2e = profile.total.latency
    residue = "" if profile.residue_ms is None or e2e is None else (
        f"Residue (time outside the named modules; median over runs of end-to-end minus their sum): {profile.residue_ms:.2f} ms "
        f"({profile.residue_ms / e2e.median_ms:+.1%} of {e2e.median_ms:.2f} ms).")
    md = "\n\n".join([
        f"# Profile: {profile.config_name or profile.source} on {profile.target} against {budget.name}",
        f"Precision {profile.precision}; backend {profile.backend} on {measured_where(profile)}; one inference over "
        f"{profile.window_s:g} s of audio (re-run every {budget.hop_s:g} s hop); power mode "
        f"{profile.power_mode or 'maximum clocks'}. Latency checked: **{profile.latency_checked}** "
        f"({latency_basis(profile)}). Budget: **{'PASS' if passed else 'FAIL'}**.",
        f"Three latency figures per module: the roofline max(2 MACs / peak, bytes / bandwidth) on the target, a bound "
        f"that at batch 1 sits far below what runs; the estimate (the layers the target's engine runs, each at least "
        f"the device's per-layer floor, plus a fixed cost per inference); and the measurement ({profile.backend} on "
        f"{measured_where(profile)}).",
        markdown_table(module_header(profile), module_rows(profile)),
        residue,
        "## Budget " + budget.name,
        markdown_table(CHECK_HEADER, check_rows(checks)),
        "## Notes",
        "\n".join(f"- {n}" for n in profile.notes),
        "![module cost against budget](report.png)",
    ]) + "\n"
    data = {"manifest": manifest, "profile": profile.to_dict(), "budget": budget.model_dump(mode="json"),
            "checks": [asdict(c) | {"passed": c.passed, "overrun": c.overrun} for c in checks], "passed": passed}
    paths = [out_dir / "report.md", out_dir / "report.json", out_dir / "report.png"]
    atomic_write_text(paths[0], md)
    atomic_write_text(paths[1], json.dumps(data, indent=2, default=float))
    _plot(profile, budget, paths[2])
    return paths


def _plot(profile: Profile, budget: Budget, path: Path) -> None:
    save_figure(profile_figure(profile, budget), path)


def profile_figure(profile: Profile, budget: Budget):
    """Per module and in total, latency and memory against the budget's limits, on log axes: a
    module's sub-millisecond cost and a 50 ms limit both stay readable, each bar with its value."""
    plt = pyplot()
    rows = [*profile.modules, profile.total]
    names = [m.module for m in profile.modules] + ["total"]
    lat_lim = [budget.module_latency_limit_ms(m.module) for m in profile.modules] + [budget.total.latency_ms]
    mem_lim = [budget.module_limits(m.module).peak_memory_mb for m in profile.modules] + [budget.total.peak_memory_mb]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(names) + 2.0))
    roof = [(i, m.roofline_ms) for i, m in enumerate(rows) if m.roofline_ms]
    _log_bars(axes[0], names, [profile.checked_latency_ms(m) or 0.0 for m in rows], lat_lim, "ms", [r for _, r in roof])
    axes[0].scatter([r for _, r in roof], [i for i, _ in roof], marker="|", s=200, color="grey", zorder=3)
    axes[0].set_title(f"latency per {profile.window_s:g} s window, ms, log scale ({profile.latency_checked}; "
                      "grey tick: roofline)", fontsize=10)
    _log_bars(axes[1], names, [(m.memory_bytes or 0) / MB for m in rows], mem_lim, "MB")
    axes[1].set_title(f"weights + peak activations, MB, log scale ({profile.precision})", fontsize=10)
    fig.suptitle(f"{profile.config_name or profile.source} on {profile.target} vs {budget.name} "
                 "(black: limit, red: over)", fontsize=11)
    fig.tight_layout()
    return fig


def _log_bars(ax, names: list[str], values: list[float], limits: list[float | None], unit: str,
              also: list[float] = ()) -> None:
    """Horizontal bars on a log axis spanning the smallest value (of `also` too) and the largest
    limit, the last bar (the total) set apart; each limit a black tick on its bar, the total's
    labelled."""
    shown = [v for v in [*values, *also] if v > 0] or [1.0]
    lo = min(shown) / 3
    hi = max([*shown, *(x for x in limits if x)]) * 8  # room for the limit's label
    colors = ["tab:red" if lim is not None and v > lim else "tab:blue" for v, lim in zip(values, limits)]
    colors[-1] = "tab:red" if colors[-1] == "tab:red" else "tab:purple"
    y = list(range(len(names)))
    ax.barh(y, [max(v, lo) - lo for v in values], left=lo, color=colors)
    for i, (v, lim) in enumerate(zip(values, limits)):
        ax.text(max(v, lo) * 1.08, i, f"{v:.3g} {unit}", va="center", fontsize=8)
        if lim is not None:
            ax.plot([lim, lim], [i - 0.4, i + 0.4], color="black", linewidth=2)
    if limits[-1] is not None:
        ax.text(limits[-1] * 1.08, len(names) - 1 + 0.3, f"limit {limits[-1]:g} {unit}", fontsize=8)
    ax.axhline(len(names) - 1.5, color="grey", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.grid(axis="x", which="both", alpha=0.3)

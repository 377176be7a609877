"""The outputs of ``discover benchmark``: ``results.csv``, ``runs.csv``, ``summary.md`` and plots.

Columns and formulas are documented in ``docs/benchmarking.md``.
"""

from __future__ import annotations

__all__ = ["checkpoints", "run_table", "strategy_table", "write_outputs"]

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from discovery.benchmark.metrics import (
    acceleration_factor,
    calls_to_reach,
    enhancement_factor,
    summarize_acceleration,
    value_at,
)

if TYPE_CHECKING:
    from discovery.benchmark.pool import BenchmarkPool
    from discovery.benchmark.runner import BenchmarkConfig


def checkpoints(config: BenchmarkConfig) -> list[int]:
    """The fixed budgets (oracle calls) of the enhancement factor: three model-based rounds after
    the initial design (when that is inside the budget) and the whole budget."""
    early = config.init + 3 * config.batch
    return sorted({early, config.budget}) if early < config.budget else [config.budget]


def _random_calls(
    results: pd.DataFrame, extensions: pd.DataFrame, target: float
) -> dict[int, float]:
    """Per seed, the calls random needed to reach ``target``, its extension included."""
    out: dict[int, float] = {}
    random = results[results["strategy"] == "random"]
    for seed, trace in random.groupby("seed"):
        ext = extensions[extensions["seed"] == seed]
        calls = np.r_[trace["calls"].to_numpy(float), ext["calls"].to_numpy(float)]
        values = np.r_[trace["hv_norm"].to_numpy(float), ext["hv_norm"].to_numpy(float)]
        out[int(seed)] = calls_to_reach(calls, values, target)
    return out


def run_table(
    results: pd.DataFrame, extensions: pd.DataFrame, pool_size: int, target: float
) -> pd.DataFrame:
    """One row per run: final values, calls to the target, acceleration factor bounds."""
    random_calls = _random_calls(results, extensions, target)
    rows = []
    for (strategy, seed), trace in results.groupby(["strategy", "seed"], sort=False):
        trace = trace.sort_values("calls")
        last = trace.iloc[-1]
        n_random = random_calls.get(int(seed), math.nan)
        # random's own calls include its model-free continuation, so it is never censored
        needed = (
            n_random
            if strategy == "random"
            else calls_to_reach(trace["calls"], trace["hv_norm"], target)
        )
        low, high, censored = acceleration_factor(n_random, needed, float(last["calls"]), pool_size)
        rows.append(
            {
                "strategy": strategy,
                "seed": int(seed),
                "calls": int(last["calls"]),
                "hv_norm": float(last["hv_norm"]),
                "front_fraction": float(last["front_fraction"]),
                "mae_v": float(last["mae_v"]),
                "coverage_95": float(last["coverage_95"]),
                "calls_to_target": needed,
                "random_calls_to_target": n_random,
                "af": low if not censored else math.nan,
                "af_low": low,
                "af_high": high,
                "censored": bool(censored),
                "run_seconds": float(last["run_seconds"]),
            }
        )
    return pd.DataFrame.from_records(rows)


def strategy_table(
    config: BenchmarkConfig, results: pd.DataFrame, runs: pd.DataFrame
) -> pd.DataFrame:
    """One row per strategy: acceleration summary, enhancement factors, medians at the budget."""
    budgets = checkpoints(config)
    random = results[results["strategy"] == "random"]
    rows = []
    for strategy in config.strategies:
        mine = runs[runs["strategy"] == strategy]
        traces = results[results["strategy"] == strategy]
        acc = summarize_acceleration(mine["af_low"], mine["af_high"], mine["censored"])
        row: dict[str, object] = {
            "strategy": strategy,
            "runs": len(mine),
            "reached": int(mine["calls_to_target"].notna().sum()),
            "median_calls_to_target": float(mine["calls_to_target"].median())
            if mine["calls_to_target"].notna().all()
            else math.nan,
            "af_median_low": acc.median_low,
            "af_median_high": acc.median_high,
            "af_q25": acc.q25,
            "af_q75": acc.q75,
            "af_censored": acc.n_censored,
            "af_text": acc.text(),
        }
        for b in budgets:
            for metric in ("hv_norm", "front_fraction"):
                mine_at = [value_at(t["calls"], t[metric], b) for _, t in traces.groupby("seed")]
                random_at = [value_at(t["calls"], t[metric], b) for _, t in random.groupby("seed")]
                row[f"ef_{metric}@{b}"] = enhancement_factor(mine_at, random_at)
        for metric in ("hv_norm", "front_fraction", "mae_v", "coverage_95", "run_seconds"):
            row[f"median_{metric}"] = float(mine[metric].median())
        rows.append(row)
    return pd.DataFrame.from_records(rows)


def _fmt(value: object, digits: int = 2) -> str:
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


def _summary_md(
    config: BenchmarkConfig,
    pool: BenchmarkPool,
    table: pd.DataFrame,
    seconds: float,
    ran: int,
) -> str:
    budgets = checkpoints(config)
    window = "none" if config.window is None else f"{config.window[0]:g}–{config.window[1]:g} V"
    pct = f"{100 * config.target:g} %"
    lines = [
        "# Retrospective benchmark",
        "",
        f"- data: `{config.data.name}`; pool: the {', '.join(config.ions)} rows, "
        f"{len(pool)} candidates, {int(pool.feasible.sum())} inside the voltage window ({window})",
        f"- objectives: maximize average_voltage (V) and capacity_grav (mAh/g); true Pareto set: "
        f"{len(pool.front)} candidates",
        f"- reference point (V, mAh/g): ({pool.ref_point[0]:.3f}, {pool.ref_point[1]:.2f}), "
        f"the feasible pool's worst value minus 10 % of its range; maximum hypervolume "
        f"{pool.max_hypervolume:.1f} V·mAh/g",
        f"- runs: strategies {', '.join(config.strategies)} × seeds 0–{config.seeds - 1}; "
        f"budget {config.budget} oracle calls = a random design of {config.init} + rounds of "
        f"{config.batch}",
        f"- surrogate: {config.members} members, hidden {list(config.hidden)}, at most "
        f"{config.max_epochs} epochs (patience {config.patience}); acquisition: "
        f"{config.mc_samples} MC samples, shortlist {config.shortlist}"
        + (
            f"; also trained on the {', '.join(config.prior_ions)} rows"
            if config.prior_ions
            else ""
        ),
        f"- this invocation: {ran} run(s) computed in {seconds / 60:.1f} min with "
        f"{config.workers} worker(s)",
        "",
        f"## Acceleration to {pct} of the maximum hypervolume",
        "",
        *(
            []
            if "random" in config.strategies
            else ["The factors need the random strategy, which this benchmark did not run.", ""]
        ),
        "Calls random needs divided by the calls the strategy needs, per seed (same initial "
        "design), then the median over seeds. A run that never reaches the target is censored: "
        "its factor is only known to lie in an interval, and the median is then given as the "
        "interval it must lie in.",
        "",
        f"| strategy | runs reaching {pct} | median calls to {pct} | acceleration vs random | "
        "censored runs |",
        "|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.strategy} | {r.reached}/{r.runs} | {_fmt(r.median_calls_to_target, 0)} | "
            f"{r.af_text} | {r.af_censored} |"
        )
    lines += [
        "",
        "## Enhancement at fixed budgets",
        "",
        "Mean over seeds of the strategy's value divided by random's mean, after the given number "
        "of oracle calls.",
        "",
        "| strategy | "
        + " | ".join(f"hypervolume @{b}" for b in budgets)
        + " | "
        + " | ".join(f"front found @{b}" for b in budgets)
        + " |",
        "|---|" + "---|" * (2 * len(budgets)),
    ]
    for r in table.to_dict("records"):
        cells = [_fmt(r[f"ef_hv_norm@{b}"]) for b in budgets]
        cells += [_fmt(r[f"ef_front_fraction@{b}"]) for b in budgets]
        lines.append(f"| {r['strategy']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"## After {config.budget} calls (median over seeds)",
        "",
        "| strategy | hypervolume / max | true front found | pool voltage MAE (V) | "
        "95 % coverage | run time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in table.to_dict("records"):
        lines.append(
            f"| {r['strategy']} | {_fmt(r['median_hv_norm'], 3)} | "
            f"{_fmt(r['median_front_fraction'], 2)} | {_fmt(r['median_mae_v'], 3)} | "
            f"{_fmt(r['median_coverage_95'], 2)} | {_fmt(r['median_run_seconds'], 0)} |"
        )
    lines += [
        "",
        "The pool MAE and coverage are those of the last round's model on the candidates not yet "
        "proposed when it was trained. Figures: `hv_vs_calls.png`, `front_found.png`. Every "
        "round of every run: `results.csv`; every run: `runs.csv`; random runs continued beyond "
        "the budget: `random_extension.csv`. Definitions: docs/benchmarking.md.",
        "",
    ]
    return "\n".join(lines)


def _curves(
    config: BenchmarkConfig, results: pd.DataFrame, metric: str, ylabel: str, path: Path
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for strategy in config.strategies:
        mine = results[results["strategy"] == strategy]
        table = mine.pivot_table(index="calls", columns="seed", values=metric).sort_index()
        table = table.ffill()
        median = table.median(axis=1)
        q25, q75 = table.quantile(0.25, axis=1), table.quantile(0.75, axis=1)
        (handle,) = ax.plot(table.index, median, label=strategy, lw=1.8)
        ax.fill_between(table.index, q25, q75, color=handle.get_color(), alpha=0.2, lw=0)
    if metric == "hv_norm":
        ax.axhline(config.target, color="0.4", ls="--", lw=0.8)
    ax.set_xlabel("oracle calls")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.02)
    ax.set_title(
        f"{', '.join(config.ions)}: median and inter-quartile range over {config.seeds} seeds"
    )
    ax.title.set_fontsize(9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_outputs(
    config: BenchmarkConfig,
    pool: BenchmarkPool,
    results: pd.DataFrame,
    extensions: pd.DataFrame,
    seconds: float,
    ran: int,
) -> tuple[pd.DataFrame, pd.DataFrame, list[Path]]:
    """Write every output file; returns the run table, the strategy table and the paths."""
    out = config.out
    runs = run_table(results, extensions, len(pool), config.target)
    table = strategy_table(config, results, runs)
    files = [out / "results.csv", out / "runs.csv", out / "random_extension.csv"]
    results.to_csv(files[0], index=False)
    runs.to_csv(files[1], index=False)
    extensions.to_csv(files[2], index=False)
    summary = out / "summary.md"
    summary.write_text(_summary_md(config, pool, table, seconds, ran))
    files.append(summary)
    files.append(
        _curves(config, results, "hv_norm", "hypervolume / pool maximum", out / "hv_vs_calls.png")
    )
    files.append(
        _curves(
            config,
            results,
            "front_fraction",
            "fraction of the true front found",
            out / "front_found.png",
        )
    )
    return runs, table, files

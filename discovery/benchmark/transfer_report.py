"""The outputs of ``discover benchmark transfer``: ``transfer.csv``, ``transfer_table.csv``,
``importance.csv``, ``summary.md`` and ``learning_curves.png`` (documented in
``docs/benchmarking.md``)."""

from __future__ import annotations

__all__ = ["curve_table", "write_transfer_outputs"]

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from discovery.benchmark.transfer import TransferConfig

#: Ions whose importance ranking the summary compares with the published finding (covalent
#: radius first for multivalent ions).
MULTIVALENT = ("Mg", "Ca", "Zn", "Al", "Y")
_RADIUS = "CovalentRadius"
#: Importance groups that are not Magpie element properties.
_NOT_PROPERTIES = ("element fractions", "pair quantities")


def curve_table(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over repeats of each (target, size, arm), and the reduction of
    the fine-tuned MAE relative to the target-only MAE (``1 - fine-tuned / target-only``).

    ``size`` is the label (``"all"`` for all the training rows, whose number ``n`` can differ
    between repeats, as the grouped split does); ``n`` is the mean over repeats, ``n_min`` and
    ``n_max`` its range.
    """
    curves = curves.assign(size=curves["size"].astype(str))
    keys = ["target", "size", "arm"]
    stats = (
        curves.groupby(keys, sort=False)
        .agg(
            n=("n", "mean"),
            n_min=("n", "min"),
            n_max=("n", "max"),
            mae_v=("mae_v", "mean"),
            mae_sd_v=("mae_v", "std"),
            coverage_95=("coverage_95", "mean"),
            repeats=("mae_v", "count"),
        )
        .reset_index()
    )
    wide = stats.pivot_table(index=["target", "size"], columns="arm", values="mae_v")
    wide = wide.reindex(columns=["fine-tuned", "target-only"])
    reduction = (1.0 - wide["fine-tuned"] / wide["target-only"]).rename("reduction")
    stats = stats.merge(reduction.reset_index(), on=["target", "size"], how="left")
    return stats.sort_values(["target", "n", "arm"], kind="stable").reset_index(drop=True)


def _fmt(value: float, digits: int = 3) -> str:
    return "–" if not math.isfinite(value) else f"{value:.{digits}f}"


def _cell(stats: pd.DataFrame, target: str, size: str, arm: str) -> tuple[float, float]:
    row = stats[(stats["target"] == target) & (stats["size"] == size) & (stats["arm"] == arm)]
    if row.empty:
        return math.nan, math.nan
    return float(row["mae_v"].iloc[0]), float(row["mae_sd_v"].iloc[0])


def _summary_md(
    config: TransferConfig, stats: pd.DataFrame, importance: pd.DataFrame, seconds: float
) -> str:
    lines = [
        "# Transfer across ions",
        "",
        f"- data: `{config.data.name}`; targets: {', '.join(config.targets)}; source: "
        + (", ".join(config.source_ions) if config.source_ions else "every other ion of the table"),
        f"- split: {config.test_fraction:.0%} of each target's rows held out by battery_id "
        f"(no test framework in any training set); {config.repeats} repeat(s), seeds 0–"
        f"{config.repeats - 1}",
        f"- ensembles: {config.members} members, hidden {list(config.hidden)}, at most "
        f"{config.max_epochs} epochs (pre-training and target-only, learning rate 0.008); "
        f"fine-tuning: learning rate {config.finetune_learning_rate:g}, at most "
        f"{config.finetune_epochs} epochs, from the pre-trained weights and scalers",
        f"- this invocation: {seconds / 60:.1f} min",
        "",
        "## Voltage MAE (V) on the held-out target rows, mean ± sd over repeats",
        "",
        "| target | target rows seen | pre-trained + fine-tuned | target only | reduction |",
        "|---|---|---|---|---|",
    ]
    for target in config.targets:
        mine = stats[stats["target"] == target].sort_values("n")
        for size, low, high in (
            mine[["size", "n_min", "n_max"]].drop_duplicates("size").itertuples(index=False)
        ):
            ft, ft_sd = _cell(stats, target, size, "fine-tuned")
            to, to_sd = _cell(stats, target, size, "target-only")
            red = 1.0 - ft / to if math.isfinite(ft) and math.isfinite(to) else math.nan
            rows_seen = f"{low}" if low == high else f"{low}–{high}"
            shown = f"all ({rows_seen})" if size == "all" else str(size)
            lines.append(
                f"| {target} | {shown} | {_fmt(ft)} ± {_fmt(ft_sd)} | {_fmt(to)} ± {_fmt(to_sd)} "
                f"| {'–' if not math.isfinite(red) else f'{red:.0%}'} |"
            )
    if 25 in config.sizes:
        lines += [
            "",
            "## With 25 target rows",
            "",
            "| target | fine-tuned MAE (V) | target-only MAE (V) | reduction | ≥ 30 % below |",
            "|---|---|---|---|---|",
        ]
        for target in config.targets:
            ft, _ = _cell(stats, target, "25", "fine-tuned")
            to, _ = _cell(stats, target, "25", "target-only")
            if not (math.isfinite(ft) and math.isfinite(to)):
                lines.append(f"| {target} | {_fmt(ft)} | {_fmt(to)} | – | – |")
                continue
            red = 1.0 - ft / to
            lines.append(
                f"| {target} | {_fmt(ft)} | {_fmt(to)} | {red:.0%} | {'yes' if red >= 0.3 else 'no'} |"
            )
    if len(importance):
        lines += [
            "",
            "## Permutation importance of the composition features",
            "",
            "One ensemble trained on every ion's rows with "
            f"{config.test_fraction:.0%} of the frameworks held out; per ion, the increase of the "
            "held-out voltage MAE (V) when one element property's features (every statistic, "
            "discharged formula and difference) are shuffled together.",
            "",
            "| ion | held-out rows | MAE (V) | 1st | 2nd | 3rd | 4th | 5th | "
            "rank of CovalentRadius: all groups | element properties |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        verdict = []
        for ion in config.targets:
            mine = importance[importance["ion"] == ion].sort_values("rank")
            if mine.empty:
                continue
            top = [
                f"{g} (+{v:.3f})"
                for g, v in zip(mine["group"].head(5), mine["importance_v"].head(5))
            ]
            top += [""] * (5 - len(top))
            radius = mine[mine["group"] == _RADIUS]
            rank = int(radius["rank"].iloc[0]) if len(radius) else -1
            props = mine[~mine["group"].isin(_NOT_PROPERTIES)].reset_index(drop=True)
            in_props = props.index[props["group"] == _RADIUS]
            prop_rank = int(in_props[0]) + 1 if len(in_props) else -1
            lines.append(
                f"| {ion} | {int(mine['n_rows'].iloc[0])} | {float(mine['mae_v'].iloc[0]):.3f} | "
                + " | ".join(top)
                + f" | {rank if rank > 0 else '–'} of {len(mine)} "
                + f"| {prop_rank if prop_rank > 0 else '–'} of {len(props)} |"
            )
            if ion in MULTIVALENT:
                verdict.append((ion, prop_rank, str(props["group"].iloc[0])))
        if verdict:
            firsts = [ion for ion, rank, _ in verdict if rank == 1]
            others = [
                f"{ion}: {top} first, covalent radius {rank}"
                for ion, rank, top in verdict
                if rank != 1
            ]
            lines += [
                "",
                "Published work found the covalent radius to dominate for multivalent ions. Among "
                "the element properties here "
                + (
                    f"it ranks first for {', '.join(firsts)}"
                    if firsts
                    else "it ranks first for none of the multivalent ions"
                )
                + ("; " + "; ".join(others) if others else "")
                + ". Correlated properties share credit under permutation (shuffling one leaves "
                "the others to carry the same information), so a low rank means the model does "
                "not depend on that property alone, not that it carries no information; the "
                "element fractions are one group of 103 columns.",
            ]
    lines.append("")
    return "\n".join(lines)


def _plot(config: TransferConfig, curves: pd.DataFrame, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(config.targets)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), dpi=120, squeeze=False)
    for ax, target in zip(axes.flat, config.targets):
        mine = curves[curves["target"] == target]
        for arm, style in (("fine-tuned", "-o"), ("target-only", "-s")):
            part = mine[mine["arm"] == arm]
            if part.empty:
                continue
            by_size = part.groupby(part["size"].astype(str))
            points = pd.DataFrame(
                {
                    "n": by_size["n"].mean(),
                    "mae": by_size["mae_v"].mean(),
                    "sd": by_size["mae_v"].std().fillna(0.0),
                }
            ).sort_values("n")
            x = np.maximum(points["n"].to_numpy(dtype=float), 1.0)  # n = 0 drawn at 1 (log axis)
            ax.errorbar(x, points["mae"], yerr=points["sd"], fmt=style, ms=3, capsize=2, label=arm)
        ax.set_xscale("log")
        ax.set_title(target, fontsize=9)
        ax.set_xlabel("target rows seen (0 drawn at 1)", fontsize=8)
        ax.set_ylabel("voltage MAE (V)", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_transfer_outputs(
    config: TransferConfig, curves: pd.DataFrame, importance: pd.DataFrame, seconds: float
) -> tuple[pd.DataFrame, list[Path]]:
    """Write every transfer output; returns the summary table and the paths."""
    out = config.out
    stats = curve_table(curves)
    files = [out / "transfer.csv", out / "transfer_table.csv"]
    curves.to_csv(files[0], index=False)
    stats.to_csv(files[1], index=False)
    if config.importance:
        files.append(out / "importance.csv")
        importance.to_csv(files[-1], index=False)
    summary = out / "summary.md"
    summary.write_text(_summary_md(config, stats, importance, seconds))
    files.append(summary)
    files.append(_plot(config, curves, out / "learning_curves.png"))
    return stats, files

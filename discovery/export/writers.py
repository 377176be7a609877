"""Writing a campaign's exports: history, Pareto front (CSV, JSON), hypervolume trace and plots.

The inputs are DataFrames (the campaign engine builds them from its ledger); file names are fixed
and never derived from data, and each file is written to a temporary name in the export folder and
renamed, so nothing is written through a symbolic link planted in that folder. Text cells of the CSV
files pass through :func:`discovery._csvsafe.write_csv` (spreadsheet formulas escaped, CRLF row
ends so that a cell holding a line break stays one cell). matplotlib and plotly are imported inside the plotting functions;
matplotlib is used through its object-oriented API with the Agg canvas, so no pyplot state and no
global backend setting is touched.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from discovery._csvsafe import write_csv
from discovery.errors import DiscoveryError, MissingColumnsError
from discovery.export.pareto import ObjectiveLike, _objective_columns, ok_rows, pareto_mask

__all__ = ["EXPORT_FILES", "PARETO_COLUMNS", "pareto_rows", "write_exports"]

EXPORT_FILES = (
    "history.csv",
    "pareto.csv",
    "pareto.json",
    "hypervolume.csv",
    "pareto.png",
    "pareto.html",
)
"""The files :func:`write_exports` writes, in the order of the paths it returns."""

PARETO_COLUMNS = (
    "candidate_id",
    "formula_charge",
    "formula_discharge",
    "working_ion",
    "average_voltage",
    "capacity_grav",
    "energy_grav",
    "round",
    "oracle",
)
"""Leading columns of ``pareto.csv`` / ``pareto.json``; empty when the history lacks them."""

PREDICTED_PREFIX = "predicted_"

_AXIS_LABELS = {
    "average_voltage": "Average voltage (V)",
    "capacity_grav": "Gravimetric capacity (mAh/g)",
    "energy_grav": "Specific energy (Wh/kg)",
    "max_delta_volume": "Maximum volume change (fraction)",
    "stability_charge": "Stability, charged (eV/atom)",
    "stability_discharge": "Stability, discharged (eV/atom)",
}
_UNITS = {
    "average_voltage": "V",
    "capacity_grav": "mAh/g",
    "energy_grav": "Wh/kg",
    "stability_charge": "eV/atom",
    "stability_discharge": "eV/atom",
}
_MPL_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")
_PLOTLY_SYMBOLS = (
    "circle",
    "square",
    "triangle-up",
    "diamond",
    "triangle-down",
    "cross",
    "x",
    "star",
    "hexagon",
    "triangle-left",
    "triangle-right",
    "pentagon",
)
_FRONT_COLOR = "crimson"


def _label(name: str) -> str:
    return _AXIS_LABELS.get(name, name)


def _json_value(value: object) -> Any:
    """A JSON-native value: NaN, ±inf and missing values become None (null)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, str):
        return value
    if isinstance(value, (pd.Timestamp, dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return str(value)


def _with_energy(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``energy_grav`` (Wh/kg = V × mAh/g) derived when it is absent."""
    if "energy_grav" in frame.columns or not {"average_voltage", "capacity_grav"} <= set(
        frame.columns
    ):
        return frame
    out = frame.copy()
    voltage = pd.to_numeric(out["average_voltage"], errors="coerce")
    capacity = pd.to_numeric(out["capacity_grav"], errors="coerce")
    out["energy_grav"] = voltage * capacity
    return out


def _check_objectives(history: pd.DataFrame, names: list[str]) -> None:
    missing = [n for n in names if n not in history.columns]
    if missing:
        raise MissingColumnsError("history", missing, [str(c) for c in history.columns])


def _objective_values(frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    return np.column_stack(
        [pd.to_numeric(frame[n], errors="coerce").to_numpy(np.float64) for n in names]
    ).reshape(len(frame), len(names))


def pareto_rows(history: pd.DataFrame, objectives: Sequence[ObjectiveLike]) -> pd.DataFrame:
    """The non-dominated ok results, best first by the first objective.

    Args:
        history: one row per result (see :func:`write_exports`).
        objectives: objects with ``.name`` (a history column) and ``.direction``.

    Returns:
        The rows of ``history`` with ``status == "ok"`` (all rows without a status column) that
        no other such row dominates over the objective columns; rows with a missing objective
        value are never included. Sorted by the first objective, best first (descending when it
        is maximized), ties kept in history order. Columns: :data:`PARETO_COLUMNS` (added empty
        when absent; ``energy_grav`` derived as V × mAh/g when possible), then the
        ``predicted_*`` columns, then the remaining history columns in their order.
    """
    names, flags = _objective_columns(objectives)
    frame = _with_energy(history)
    _check_objectives(frame, names)
    ok = ok_rows(frame)
    front = ok[pareto_mask(_objective_values(ok, names), flags)].copy()
    first = pd.to_numeric(front[names[0]], errors="coerce")
    order = np.argsort((-first if flags[0] else first).to_numpy(np.float64), kind="stable")
    front = front.iloc[order]
    for column in PARETO_COLUMNS:
        if column not in front.columns:
            front[column] = np.nan
    predicted = [c for c in front.columns if str(c).startswith(PREDICTED_PREFIX)]
    leading = [*PARETO_COLUMNS, *predicted]
    rest = [c for c in front.columns if c not in leading]
    return front[[*leading, *rest]].reset_index(drop=True)


def write_exports(
    history: pd.DataFrame,
    hypervolume_trace: pd.DataFrame,
    *,
    objectives: Sequence[ObjectiveLike],
    out_dir: str | Path,
    title: str | None = None,
    ref_point: Sequence[float] | None = None,
) -> list[Path]:
    """Write a campaign's exports into ``out_dir`` (created with its parents).

    Args:
        history: one row per result: candidate_id, working_ion, formula_charge,
            formula_discharge, round, oracle, fidelity, status, the measured values
            (average_voltage V, capacity_grav mAh/g, energy_grav Wh/kg, ...) and the predictions
            made at proposal time (``predicted_<outcome>_mean`` / ``_std``).
        hypervolume_trace: the per-round table from
            :func:`discovery.export.hypervolume_trace`, written as given.
        objectives: objects with ``.name`` (a history column) and ``.direction``.
        out_dir: the output directory.
        title: shown above the plots.
        ref_point: the reference point used for the hypervolume (objective units), recorded in
            ``pareto.json`` when given.

    Returns:
        The paths written, in the order of :data:`EXPORT_FILES`: history.csv, pareto.csv,
        pareto.json, hypervolume.csv, pareto.png, pareto.html. Text cells of the CSV files that
        begin with ``= + - @``, a tab or a carriage return get a leading ``'`` so that a
        spreadsheet does not run them as formulas; numbers are written as numbers. Rows end
        with CRLF (RFC 4180), so a text cell holding a line break is quoted and stays one cell.

    Raises:
        MissingColumnsError: an objective that is not a history column.
        DiscoveryError: an objective whose direction is neither "maximize" nor "minimize"; an
            ``out_dir`` with a NUL byte, one that is a file, or one that cannot be written.
    """
    names, flags = _objective_columns(objectives)
    _check_objectives(history, names)
    out = _export_dir(out_dir)
    paths = [out / name for name in EXPORT_FILES]
    history_csv, pareto_csv, pareto_json, trace_csv, png, page = paths

    _replace_file(history_csv, lambda tmp: write_csv(history, tmp))
    front = pareto_rows(history, objectives)
    _replace_file(pareto_csv, lambda tmp: write_csv(front, tmp))
    document: dict[str, Any] = {
        "objectives": [{"name": n, "direction": o.direction} for n, o in zip(names, objectives)]
    }
    if ref_point is not None:
        document["reference_point"] = [_json_value(float(v)) for v in ref_point]
    document["rows"] = [
        {str(k): _json_value(v) for k, v in row.items()} for row in front.to_dict(orient="records")
    ]
    text = json.dumps(document, indent=2, allow_nan=False, ensure_ascii=False) + "\n"
    _replace_file(pareto_json, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    _replace_file(trace_csv, lambda tmp: write_csv(hypervolume_trace, tmp))

    view = _PlotData.build(_with_energy(history), names, flags)
    _replace_file(png, lambda tmp: _write_png(view, tmp, title))
    _replace_file(page, lambda tmp: _write_html(view, tmp, title))
    return paths


def _export_dir(out_dir: str | os.PathLike[str]) -> Path:
    """``out_dir`` as a Path, created with its parents; a clear error for a path that cannot be."""
    text = os.fspath(out_dir)
    if "\x00" in text:
        raise DiscoveryError(
            f"export folder {text!r}: contains a NUL byte; give a plain folder path"
        )
    out = Path(text)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise DiscoveryError(
            f"{out}: exists and is not a folder; give a folder for the exports"
        ) from None
    except OSError as exc:
        raise DiscoveryError(
            f"{out}: cannot create the export folder ({exc.strerror or exc})"
        ) from None
    return out


def _replace_file(path: Path, write: Callable[[Path], object]) -> None:
    """Write ``path`` through ``write(temporary path)`` in the same folder, then rename.

    The rename replaces whatever ``path`` was, a symbolic link included, so an export never
    writes through a link to a file outside ``path``'s folder, and a reader never sees half a file.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DiscoveryError(f"{path}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class _PlotData:
    """What both plots show: the ok results on two axes, their round and ion, the front."""

    def __init__(
        self,
        frame: pd.DataFrame,
        x_name: str,
        y_name: str,
        x: np.ndarray,
        y: np.ndarray,
        rounds: np.ndarray,
        ions: np.ndarray,
        front: np.ndarray,
        stairs: tuple[np.ndarray, np.ndarray] | None,
        iso_energy: bool,
        names: list[str],
    ) -> None:
        self.frame = frame
        self.x_name = x_name
        self.y_name = y_name
        self.x = x
        self.y = y
        self.rounds = rounds
        self.ions = ions
        self.front = front
        self.stairs = stairs
        self.iso_energy = iso_energy
        self.names = names

    @classmethod
    def build(cls, history: pd.DataFrame, names: list[str], flags: list[bool]) -> _PlotData:
        # Every ok result is drawn; the front is that of the rows that count (ok and feasible).
        drawn = history.drop(columns=["feasible"]) if "feasible" in history else history
        ok = ok_rows(drawn).reset_index(drop=True)
        values = _objective_values(ok, names)
        counts = (
            history.loc[ok_rows(drawn).index, "feasible"]
            .astype("boolean")
            .fillna(False)
            .to_numpy(bool)
            if "feasible" in history
            else np.ones(len(ok), dtype=bool)
        )
        front = np.zeros(len(ok), dtype=bool)
        front[counts] = pareto_mask(values[counts], flags)
        rounds = (
            pd.to_numeric(ok["round"], errors="coerce").to_numpy(np.float64)
            if "round" in ok.columns
            else np.zeros(len(ok))
        )
        ions = (
            ok["working_ion"].astype(object).fillna("?").astype(str).to_numpy()
            if "working_ion" in ok.columns
            else np.full(len(ok), "?", dtype=object)
        )
        stairs = None
        if "capacity_grav" in names and "average_voltage" in names:
            ix, iy = names.index("capacity_grav"), names.index("average_voltage")
            x_name, y_name = "capacity_grav", "average_voltage"
            x, y = values[:, ix], values[:, iy]
            x_max, y_max = flags[ix], flags[iy]
        elif len(names) >= 2:
            x_name, y_name = names[0], names[1]
            x, y = values[:, 0], values[:, 1]
            x_max, y_max = flags[0], flags[1]
        else:
            x_name, y_name = "round", names[0]
            x, y = rounds, values[:, 0]
            x_max = y_max = True
        if len(names) == 2 and front.any():
            stairs = _staircase(x[front], y[front], x_max, y_max)
        iso = x_name == "capacity_grav" and y_name == "average_voltage"
        return cls(ok, x_name, y_name, x, y, rounds, ions, front, stairs, iso, names)

    def hover(self) -> list[str]:
        """One HTML-escaped hover text per ok result."""
        frame = self.frame
        shown = list(
            dict.fromkeys([*self.names, "average_voltage", "capacity_grav", "energy_grav"])
        )
        texts = []
        for i in range(len(frame)):
            row = frame.iloc[i]

            def cell(column: str, row: pd.Series = row) -> str:
                return html.escape(str(row[column])) if column in frame.columns else "?"

            lines = [
                f"<b>{cell('candidate_id')}</b>",
                f"{cell('formula_charge')} → {cell('formula_discharge')}",
                f"ion {cell('working_ion')} · round {cell('round')} · {cell('oracle')}",
            ]
            for column in shown:
                if column in frame.columns:
                    number = pd.to_numeric(pd.Series([row[column]]), errors="coerce").iloc[0]
                    unit = _UNITS.get(column, "")
                    value = "n/a" if pd.isna(number) else f"{float(number):.4g}"
                    lines.append(f"{html.escape(str(column))}: {value} {unit}".rstrip())
            texts.append("<br>".join(lines))
        return texts

    def energy_levels(
        self, x_limits: tuple[float, float], y_limits: tuple[float, float]
    ) -> list[float]:
        """Round specific energies (Wh/kg) whose V × mAh/g hyperbola crosses the plotted area."""
        from matplotlib.ticker import MaxNLocator

        top = x_limits[1] * y_limits[1]
        if not (math.isfinite(top) and top > 0 and x_limits[1] > 0 and y_limits[1] > 0):
            return []
        levels = MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(0.0, top)
        low = max(x_limits[0], 0.0) * max(y_limits[0], 0.0)
        return [float(e) for e in levels if low < e < top]


def _staircase(
    x: np.ndarray, y: np.ndarray, x_max: bool, y_max: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the front's attainment line through 2-D front points (x, y).

    In maximize-oriented coordinates the front sorted by x ascending has y descending; between two
    neighbours the line drops from the left point to the right point's y, then runs across to it.
    """
    sx, sy = (1.0 if x_max else -1.0), (1.0 if y_max else -1.0)
    points = np.unique(np.column_stack([x * sx, y * sy]), axis=0)
    points = points[np.lexsort((-points[:, 1], points[:, 0]))]
    xs, ys = [points[0, 0]], [points[0, 1]]
    for px, py in points[1:]:
        xs += [xs[-1], px]
        ys += [py, py]
    return np.asarray(xs) * sx, np.asarray(ys) * sy


def _write_png(view: _PlotData, path: Path, title: str | None) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(8.0, 5.6), dpi=150, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    finite_rounds = view.rounds[np.isfinite(view.rounds)]
    low = float(finite_rounds.min()) if finite_rounds.size else 0.0
    high = float(finite_rounds.max()) if finite_rounds.size else 1.0
    norm = Normalize(vmin=low, vmax=high if high > low else low + 1.0)
    cmap = "viridis"
    handles: list[Line2D] = []
    for i, ion in enumerate(sorted(set(view.ions.tolist()))):
        marker = _MPL_MARKERS[i % len(_MPL_MARKERS)]
        sel = view.ions == ion
        ax.scatter(
            view.x[sel],
            view.y[sel],
            c=view.rounds[sel],
            cmap=cmap,
            norm=norm,
            marker=marker,
            s=24,
            alpha=0.85,
            edgecolors="none",
            zorder=2,
        )
        handles.append(
            Line2D([], [], marker=marker, linestyle="", color="0.35", markersize=6, label=ion)
        )
    if view.front.any():
        ax.scatter(
            view.x[view.front],
            view.y[view.front],
            s=80,
            facecolors="none",
            edgecolors=_FRONT_COLOR,
            linewidths=1.4,
            zorder=3,
        )
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                linestyle="-" if view.stairs is not None else "",
                color=_FRONT_COLOR,
                markerfacecolor="none",
                markersize=8,
                label="Pareto front",
            )
        )
    if view.stairs is not None:
        ax.plot(*view.stairs, color=_FRONT_COLOR, linewidth=1.0, zorder=3)
    if len(view.x) == 0 or not np.isfinite(view.x).any():
        ax.text(0.5, 0.5, "no results", ha="center", va="center", transform=ax.transAxes)
    elif view.iso_energy:
        x_limits, y_limits = ax.get_xlim(), ax.get_ylim()
        for energy in view.energy_levels(x_limits, y_limits):
            cx, cy = _hyperbola(energy, x_limits, y_limits)
            if cx.size:
                ax.plot(cx, cy, linestyle="--", linewidth=0.7, color="0.7", zorder=1)
                ax.annotate(
                    f"{energy:g} Wh/kg",
                    (cx[-1], cy[-1]),
                    fontsize=7,
                    color="0.5",
                    ha="right",
                    va="bottom",
                )
        ax.set_xlim(x_limits)
        ax.set_ylim(y_limits)
    ax.set_xlabel(_label(view.x_name))
    ax.set_ylabel(_label(view.y_name))
    if title:
        ax.set_title(title)
    if handles:
        ax.legend(handles=handles, title="working ion", fontsize=8, loc="best")
    fig.colorbar(
        ScalarMappable(norm=norm, cmap=cmap),
        ax=ax,
        label="round",
        ticks=MaxNLocator(integer=True),
    )
    fig.savefig(path, format="png")


def _hyperbola(
    energy: float, x_limits: tuple[float, float], y_limits: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Points of V = E / C (V, mAh/g, Wh/kg) inside the plotted area."""
    start = max(x_limits[0], energy / y_limits[1], 1e-9)
    if start >= x_limits[1]:
        return np.empty(0), np.empty(0)
    capacity = np.geomspace(start, x_limits[1], 200)
    voltage = energy / capacity
    inside = (voltage >= y_limits[0]) & (voltage <= y_limits[1])
    return capacity[inside], voltage[inside]


def _write_html(view: _PlotData, path: Path, title: str | None) -> None:
    import plotly.graph_objects as go

    def as_list(values: np.ndarray) -> list[float | None]:
        return [float(v) if math.isfinite(v) else None for v in values.tolist()]

    fig = go.Figure()
    hover = np.asarray(view.hover(), dtype=object)
    for i, ion in enumerate(sorted(set(view.ions.tolist()))):
        sel = view.ions == ion
        fig.add_trace(
            go.Scatter(
                x=as_list(view.x[sel]),
                y=as_list(view.y[sel]),
                mode="markers",
                name=html.escape(ion),
                marker={
                    "symbol": _PLOTLY_SYMBOLS[i % len(_PLOTLY_SYMBOLS)],
                    "size": 8,
                    "color": as_list(view.rounds[sel]),
                    "coloraxis": "coloraxis",
                    "opacity": 0.85,
                },
                text=hover[sel].tolist(),
                hovertemplate="%{text}<extra></extra>",
            )
        )
    if view.front.any():
        fig.add_trace(
            go.Scatter(
                x=as_list(view.x[view.front]),
                y=as_list(view.y[view.front]),
                mode="markers",
                name="Pareto front",
                marker={
                    "symbol": "circle-open",
                    "size": 15,
                    "color": _FRONT_COLOR,
                    "line": {"width": 2},
                },
                text=hover[view.front].tolist(),
                hovertemplate="%{text}<extra>Pareto front</extra>",
            )
        )
    if view.stairs is not None:
        fig.add_trace(
            go.Scatter(
                x=as_list(view.stairs[0]),
                y=as_list(view.stairs[1]),
                mode="lines",
                line={"color": _FRONT_COLOR, "width": 1},
                name="front line",
                hoverinfo="skip",
            )
        )
    finite = np.isfinite(view.x) & np.isfinite(view.y)
    if view.iso_energy and finite.any():
        x_lo, x_hi = float(view.x[finite].min()), float(view.x[finite].max())
        y_lo, y_hi = float(view.y[finite].min()), float(view.y[finite].max())
        pad_x, pad_y = 0.05 * max(x_hi - x_lo, 1.0), 0.05 * max(y_hi - y_lo, 0.1)
        x_limits, y_limits = (x_lo - pad_x, x_hi + pad_x), (y_lo - pad_y, y_hi + pad_y)
        for j, energy in enumerate(view.energy_levels(x_limits, y_limits)):
            cx, cy = _hyperbola(energy, x_limits, y_limits)
            if cx.size:
                fig.add_trace(
                    go.Scatter(
                        x=cx.tolist(),
                        y=cy.tolist(),
                        mode="lines",
                        line={"color": "lightgray", "width": 1, "dash": "dash"},
                        name="iso-energy (Wh/kg)",
                        legendgroup="iso-energy",
                        showlegend=j == 0,
                        hovertemplate=f"{energy:g} Wh/kg<extra></extra>",
                    )
                )
        fig.update_xaxes(range=list(x_limits))
        fig.update_yaxes(range=list(y_limits))
    finite_rounds = view.rounds[np.isfinite(view.rounds)]
    fig.update_layout(
        title=html.escape(title) if title else None,
        xaxis_title=_label(view.x_name),
        yaxis_title=_label(view.y_name),
        template="plotly_white",
        coloraxis={
            "colorscale": "Viridis",
            "colorbar": {"title": {"text": "round"}},
            "cmin": float(finite_rounds.min()) if finite_rounds.size else 0.0,
            "cmax": float(finite_rounds.max()) if finite_rounds.size else 1.0,
        },
        legend={"orientation": "h", "yanchor": "top", "y": -0.15, "x": 0.0},
    )
    fig.write_html(
        path,
        include_plotlyjs=True,
        full_html=True,
        config={"displaylogo": False, "responsive": True},
    )

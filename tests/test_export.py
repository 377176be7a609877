"""Exports: Pareto masks and hypervolumes against brute force and BoTorch, the reference-point
rule, the per-round trace, and the files write_exports produces (escaping, nulls, offline HTML)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from botorch.utils.multi_objective.hypervolume import Hypervolume
from botorch.utils.multi_objective.pareto import is_non_dominated
from hypothesis import given, settings
from hypothesis import strategies as st

from discovery.errors import DiscoveryError, MissingColumnsError
from discovery.export import (
    EXPORT_FILES,
    PARETO_COLUMNS,
    hypervolume,
    hypervolume_trace,
    pareto_mask,
    reference_point,
    write_exports,
)


@dataclass(frozen=True)
class Objective:
    name: str
    direction: str = "maximize"


VOLTAGE_CAPACITY = [Objective("average_voltage"), Objective("capacity_grav")]


def brute_force_mask(values: np.ndarray, maximize: list[bool]) -> np.ndarray:
    """O(n²) reference: a row is on the front when no NaN-free row dominates it."""
    y = np.asarray(values, dtype=float) * np.where(maximize, 1.0, -1.0)
    valid = ~np.isnan(y).any(axis=1)
    mask = np.zeros(len(y), dtype=bool)
    for i in np.flatnonzero(valid):
        others = y[valid]
        dominated = ((others >= y[i]).all(axis=1) & (others > y[i]).any(axis=1)).any()
        mask[i] = not dominated
    return mask


def grid_hypervolume(values: np.ndarray, ref: list[int], maximize: list[bool]) -> float:
    """Hypervolume of integer points by counting the unit cells they dominate."""
    sign = np.where(maximize, 1, -1)
    y = np.asarray(values, dtype=float) * sign
    r = np.asarray(ref) * sign
    y = y[~np.isnan(y).any(axis=1)]
    if len(y) == 0:
        return 0.0
    ranges = [range(int(r[j]), int(np.nanmax(y[:, j]))) for j in range(y.shape[1])]
    cells = 0
    for corner in itertools.product(*ranges):
        upper = np.asarray(corner) + 1
        cells += bool((y >= upper).all(axis=1).any())
    return float(cells)


@st.composite
def objective_tables(draw: st.DrawFn, k: int) -> tuple[np.ndarray, list[bool]]:
    """Small tables with many ties (few distinct values), duplicate rows and NaN cells."""
    n = draw(st.integers(0, 40))
    cell = st.one_of(st.integers(-3, 3).map(float), st.just(float("nan")))
    values = np.array([[draw(cell) for _ in range(k)] for _ in range(n)], dtype=float).reshape(n, k)
    if n and draw(st.booleans()):
        values = np.concatenate([values, values[: draw(st.integers(1, n))]])
    maximize = [draw(st.booleans()) for _ in range(k)]
    return values, maximize


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.sampled_from([2, 3]).flatmap(objective_tables))
def test_pareto_mask_matches_brute_force(table: tuple[np.ndarray, list[bool]]) -> None:
    values, maximize = table
    mask = pareto_mask(values, maximize)
    assert mask.dtype == bool
    assert mask.shape == (len(values),)
    np.testing.assert_array_equal(mask, brute_force_mask(values, maximize))


def test_pareto_mask_ties_nan_and_duplicates() -> None:
    values = np.array(
        [
            [1.0, 5.0],
            [1.0, 5.0],  # duplicate of a front point: also on the front
            [1.0, 4.0],  # tied in the first objective, worse in the second
            [2.0, 4.0],
            [2.0, np.nan],  # NaN: never on the front
            [0.5, 4.5],
        ]
    )
    assert pareto_mask(values, [True, True]).tolist() == [True, True, False, True, False, False]
    # Minimizing the second objective turns the front around.
    assert pareto_mask(values, [True, False]).tolist() == [False, False, False, True, False, False]
    assert pareto_mask(np.empty((0, 2)), [True, True]).shape == (0,)


def test_pareto_mask_two_objectives_agrees_with_general_path_on_many_rows() -> None:
    """The k = 2 sweep against the block method (a constant third column changes nothing)."""
    rng = np.random.default_rng(3)
    values = np.round(rng.normal(size=(20_000, 2)), 2)
    values[rng.random(20_000) < 0.01, 1] = np.nan
    three = np.column_stack([values, np.zeros(len(values))])
    for maximize in ([True, True], [True, False], [False, False]):
        np.testing.assert_array_equal(
            pareto_mask(values, maximize), pareto_mask(three, [*maximize, True])
        )


def test_pareto_mask_a_million_rows() -> None:
    rng = np.random.default_rng(0)
    values = rng.random((1_000_000, 2))
    mask = pareto_mask(values, [True, True])
    front = values[mask]
    # Every front point is maximal: no point beats it in both coordinates.
    assert 1 <= mask.sum() < 100
    best_first = front[np.argsort(-front[:, 0])]
    assert (np.diff(best_first[:, 1]) > 0).all()


def test_hypervolume_hand_computed() -> None:
    assert hypervolume([[1, 2], [2, 1]], [0, 0], [True, True]) == pytest.approx(3.0)
    # Minimized second objective: the same geometry mirrored.
    assert hypervolume([[1, -2], [2, -1]], [0, 0], [True, False]) == pytest.approx(3.0)
    # A point on the reference point's boundary, a NaN row and a dominated row add nothing.
    rows = [[1, 2], [2, 1], [3, 0], [np.nan, 9], [0.5, 0.5], [1, 2]]
    assert hypervolume(rows, [0, 0], [True, True]) == pytest.approx(3.0)
    assert hypervolume([[1, 1]], [2, 2], [True, True]) == 0.0
    assert hypervolume(np.empty((0, 2)), [0, 0], [True, True]) == 0.0
    assert hypervolume([[3.0], [1.0]], [0.5], [True]) == pytest.approx(2.5)
    # Three boxes 2x1x1 sharing a unit cube: 3*2 - 3*1 + 1.
    cube = [[2, 1, 1], [1, 2, 1], [1, 1, 2]]
    assert hypervolume(cube, [0, 0, 0], [True, True, True]) == pytest.approx(4.0)
    mirrored = [[2, -1, 1], [1, -2, 1], [1, -1, 2]]
    assert hypervolume(mirrored, [0, 0, 0], [True, False, True]) == pytest.approx(4.0)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.sampled_from([2, 3]).flatmap(objective_tables))
def test_hypervolume_counts_grid_cells(table: tuple[np.ndarray, list[bool]]) -> None:
    values, maximize = table
    ref = [-4 if m else 4 for m in maximize]
    expected = grid_hypervolume(values, ref, maximize)
    assert hypervolume(values, ref, maximize) == pytest.approx(expected)


@pytest.mark.parametrize("seed", range(5))
def test_hypervolume_matches_botorch_for_two_objectives(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(200, 2)) * [1.0, 100.0] + [3.0, 150.0]
    maximize = [True, bool(seed % 2)]
    ref = reference_point(values, maximize)
    sign = torch.tensor([1.0 if m else -1.0 for m in maximize], dtype=torch.float64)
    y = torch.as_tensor(values, dtype=torch.float64) * sign
    expected = Hypervolume(torch.tensor(ref, dtype=torch.float64) * sign).compute(
        y[is_non_dominated(y)]
    )
    assert hypervolume(values, ref, maximize) == pytest.approx(expected, rel=1e-10)


def test_reference_point_rule() -> None:
    values = np.array([[1.0, 10.0], [3.0, 20.0], [np.nan, 15.0], [np.inf, 12.0]])
    # Maximized: worst (min) minus 10 % of the range; minimized: worst (max) plus 10 %.
    assert reference_point(values, [True, False]) == pytest.approx((0.8, 21.0))
    assert reference_point(values, [True, False], margin=0.5) == pytest.approx((0.0, 25.0))
    # Range 0: the offset is margin * max(1, |worst|).
    assert reference_point([[2.0], [2.0]], [True]) == pytest.approx((1.8,))
    assert reference_point([[0.5]], [True]) == pytest.approx((0.4,))
    assert reference_point([[-3.0]], [False]) == pytest.approx((-2.7,))
    ref = reference_point(values, [True, False])
    assert hypervolume(values[:2], ref, [True, False]) > 0
    with pytest.raises(DiscoveryError, match="capacity_grav has no finite"):
        reference_point([[1.0, np.nan]], [True, True], names=["average_voltage", "capacity_grav"])
    with pytest.raises(DiscoveryError, match="margin"):
        reference_point([[1.0]], [True], margin=-0.1)


def _history(seed: int = 0, n: int = 48) -> pd.DataFrame:
    """A made-up result history: 4 rounds, three ions, some failed results."""
    rng = np.random.default_rng(seed)
    ions = np.array(["Na", "K", "Mg"])[rng.integers(0, 3, n)]
    voltage = rng.uniform(1.0, 4.5, n)
    capacity = rng.uniform(40.0, 250.0, n)
    status = np.where(rng.random(n) < 0.15, "failed", "ok")
    voltage[status == "failed"] = np.nan
    frame = pd.DataFrame(
        {
            "candidate_id": [f"c-{i:016x}" for i in range(n)],
            "working_ion": ions,
            "formula_charge": [f"Mn{1 + i % 3}O{2 + i % 2}" for i in range(n)],
            "formula_discharge": [f"{ion}1Mn{1 + i % 3}O{2 + i % 2}" for i, ion in enumerate(ions)],
            "round": np.repeat(np.arange(4), n // 4),
            "oracle": "replay",
            "fidelity": 1.0,
            "status": status,
            "average_voltage": voltage,
            "capacity_grav": capacity,
            "energy_grav": voltage * capacity,
            "stability_discharge": rng.uniform(-0.2, 0.1, n),
            "predicted_average_voltage_mean": voltage + rng.normal(0, 0.1, n),
            "predicted_average_voltage_std": rng.uniform(0.05, 0.3, n),
            "note": "",
        }
    )
    frame.loc[0, "predicted_average_voltage_std"] = np.nan
    return frame


def test_hypervolume_trace_is_cumulative_and_non_decreasing() -> None:
    history = _history()
    ref = (0.5, 20.0)
    trace = hypervolume_trace(history, VOLTAGE_CAPACITY, ref)
    assert list(trace.columns) == ["round", "n_results", "n_new", "n_pareto", "hypervolume"]
    assert trace["round"].tolist() == [0, 1, 2, 3]
    assert (np.diff(trace["hypervolume"]) >= 0).all()
    assert (np.diff(trace["n_results"]) >= 0).all()
    ok = history[history["status"] == "ok"]
    assert trace["n_results"].iloc[-1] == len(ok)
    assert trace["n_new"].sum() == len(ok)
    values = ok[["average_voltage", "capacity_grav"]].to_numpy()
    assert trace["hypervolume"].iloc[-1] == pytest.approx(hypervolume(values, ref, [True, True]))
    assert trace["n_pareto"].iloc[-1] == pareto_mask(values, [True, True]).sum()
    # Without a reference point, one is derived from all ok results and used for every round.
    derived = hypervolume_trace(history, VOLTAGE_CAPACITY, None)
    assert (np.diff(derived["hypervolume"]) >= 0).all()
    assert derived["hypervolume"].iloc[-1] == pytest.approx(
        hypervolume(values, reference_point(values, [True, True]), [True, True])
    )
    with pytest.raises(MissingColumnsError, match="stability"):
        hypervolume_trace(history, [Objective("stability")], ref)
    with pytest.raises(DiscoveryError, match=r"objectives\[0\]\.direction"):
        hypervolume_trace(history, [Objective("capacity_grav", "maximise")], ref)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, list[Path]]:
    history = _history()
    # Row 4 has the highest voltage, so it is on the front.
    history.loc[4, ["status", "average_voltage", "capacity_grav"]] = ["ok", 4.6, 100.0]
    history.loc[4, "candidate_id"] = "<img src=x onerror=alert(1)>"
    history.loc[4, "note"] = "=HYPERLINK('http://example.invalid','x')"
    history.loc[1, "note"] = "-2+3"
    history.loc[2, "note"] = "@SUM(A1)"
    history.loc[3, "note"] = "\tcell"
    trace = hypervolume_trace(history, VOLTAGE_CAPACITY, (0.5, 20.0))
    out = tmp_path_factory.mktemp("exports") / "nested" / "out"
    paths = write_exports(
        history,
        trace,
        objectives=VOLTAGE_CAPACITY,
        out_dir=out,
        title="Test campaign",
        ref_point=(0.5, 20.0),
    )
    return history, paths


def test_write_exports_writes_every_file(exported: tuple[pd.DataFrame, list[Path]]) -> None:
    _, paths = exported
    assert [p.name for p in paths] == list(EXPORT_FILES)
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    assert paths[0].parent.name == "out"
    trace = pd.read_csv(paths[0].parent / "hypervolume.csv")
    assert list(trace.columns) == ["round", "n_results", "n_new", "n_pareto", "hypervolume"]


def test_csv_cells_cannot_start_formulas(exported: tuple[pd.DataFrame, list[Path]]) -> None:
    history, paths = exported
    written = pd.read_csv(paths[0], keep_default_na=False)
    notes = written["note"].tolist()
    assert "'=HYPERLINK('http://example.invalid','x')" in notes
    assert "'-2+3" in notes
    assert "'@SUM(A1)" in notes
    assert "'\tcell" in notes
    # Negative numbers stay numbers.
    stability = pd.read_csv(paths[0])["stability_discharge"]
    assert stability.dtype == np.float64
    assert (stability < 0).any()
    np.testing.assert_allclose(stability, history["stability_discharge"])
    assert "'-0." not in paths[0].read_text()
    pareto = pd.read_csv(paths[1], keep_default_na=False)
    assert "'=HYPERLINK('http://example.invalid','x')" in pareto["note"].tolist()


def test_pareto_csv_is_the_front_in_order(exported: tuple[pd.DataFrame, list[Path]]) -> None:
    history, paths = exported
    pareto = pd.read_csv(paths[1])
    columns = list(pareto.columns)
    assert columns[: len(PARETO_COLUMNS)] == list(PARETO_COLUMNS)
    assert columns[len(PARETO_COLUMNS) : len(PARETO_COLUMNS) + 2] == [
        "predicted_average_voltage_mean",
        "predicted_average_voltage_std",
    ]
    ok = history[history["status"] == "ok"]
    mask = brute_force_mask(ok[["average_voltage", "capacity_grav"]].to_numpy(), [True, True])
    assert sorted(pareto["candidate_id"]) == sorted(ok["candidate_id"][mask])
    assert pareto["average_voltage"].is_monotonic_decreasing
    assert (pareto["status"] == "ok").all()


def test_pareto_json_uses_null_and_numbers(exported: tuple[pd.DataFrame, list[Path]]) -> None:
    history, paths = exported

    def refuse(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    document = json.loads(paths[2].read_text(encoding="utf-8"), parse_constant=refuse)
    assert document["objectives"] == [
        {"name": "average_voltage", "direction": "maximize"},
        {"name": "capacity_grav", "direction": "maximize"},
    ]
    assert document["reference_point"] == [0.5, 20.0]
    rows = document["rows"]
    assert len(rows) == len(pd.read_csv(paths[1]))
    for row in rows:
        assert isinstance(row["average_voltage"], float)
        assert isinstance(row["round"], int)
        assert isinstance(row["candidate_id"], str)
    by_id = {row["candidate_id"]: row for row in rows}
    if history.loc[0, "candidate_id"] in by_id:
        assert by_id[history.loc[0, "candidate_id"]]["predicted_average_voltage_std"] is None
    nan_history = history.copy()
    nan_history["predicted_average_voltage_std"] = np.nan
    out = paths[0].parent.parent / "nan"
    write_exports(nan_history, pd.DataFrame(), objectives=VOLTAGE_CAPACITY, out_dir=out)
    document = json.loads((out / "pareto.json").read_text(), parse_constant=refuse)
    assert "reference_point" not in document
    assert all(row["predicted_average_voltage_std"] is None for row in document["rows"])


def test_html_is_self_contained_and_escaped(exported: tuple[pd.DataFrame, list[Path]]) -> None:
    _, paths = exported
    page = paths[5].read_text(encoding="utf-8")
    assert "<script src=" not in page.lower()
    assert "plotly" in page.lower()
    assert "<img src=x" not in page
    text = page.replace("\\u002f", "/")  # plotly writes "/" as "\\u002f" inside its JSON
    assert "Gravimetric capacity (mAh/g)" in text
    assert "Wh/kg" in text


def test_png_is_a_png(exported: tuple[pd.DataFrame, list[Path]]) -> None:
    _, paths = exported
    data = paths[4].read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000


def test_write_exports_other_objectives_and_empty_history(tmp_path: Path) -> None:
    history = _history(seed=1)
    objectives = [
        Objective("energy_grav"),
        Objective("stability_discharge", "minimize"),
        Objective("average_voltage"),
    ]
    trace = hypervolume_trace(history, objectives, None)
    paths = write_exports(history, trace, objectives=objectives, out_dir=tmp_path / "three")
    assert all(p.is_file() for p in paths)
    pareto = pd.read_csv(paths[1])
    assert pareto["energy_grav"].is_monotonic_decreasing

    empty = history.iloc[:0]
    paths = write_exports(
        empty, trace.iloc[:0], objectives=VOLTAGE_CAPACITY, out_dir=tmp_path / "e"
    )
    assert all(p.is_file() for p in paths)
    assert pd.read_csv(paths[1]).empty
    assert json.loads(paths[2].read_text())["rows"] == []

    with pytest.raises(MissingColumnsError, match="capacity_grav"):
        write_exports(
            history.drop(columns="capacity_grav"),
            trace,
            objectives=VOLTAGE_CAPACITY,
            out_dir=tmp_path / "never",
        )
    assert not (tmp_path / "never").exists()


def test_import_is_light() -> None:
    code = (
        "import sys, discovery.export; "
        "print(sorted(m for m in ('torch', 'botorch', 'matplotlib', 'plotly') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"

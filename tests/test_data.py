"""Electrode-table loading and validation with row-level messages; grouped splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from discovery.data import load_electrodes, read_table, validate_electrodes, write_table
from discovery.data.splits import framework_labels, group_split, random_split
from discovery.errors import DataValidationError, DiscoveryError, MissingColumnsError

GOOD = """battery_id,working_ion,formula_charge,formula_discharge,average_voltage,capacity_grav
t-1_Li,Li,CoO2,LiCoO2,3.9,273.8
t-2_Na,Na,FePO4,NaFePO4,2.9,154.0
t-3_Mg,Mg,Mo6S8,Mg2Mo6S8,1.1,121.7
"""

BAD = """battery_id,working_ion,formula_charge,formula_discharge,average_voltage,capacity_grav
t-1_Li,Li,CoO2,LiCoO2,3.9,273.8
t-2_Li,Li,Co(O2,LiCoO2,3.9,273.8
t-3_Xx,Xx,CoO2,XxCoO2,3.9,273.8
t-4_Li,Li,CoO2,LiCoO2,,273.8
t-5_Li,Li,CoO2,LiCoO2,-0.2,273.8
t-6_Li,Li,CoO2,LiNiO2,3.9,273.8
t-7_Li,Li,LiCoO2,LiCoO2,3.9,273.8
t-8_Li,Li,CoO2,LiCoO2,abc,273.8
t-9_Li,Li,CoO2,LiCoO2,3.9,-5
,Li,CoO2,LiCoO2,3.9,273.8
"""


def _write(tmp_path: Path, text: str, name: str = "table.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_valid_table(tmp_path: Path) -> None:
    frame = load_electrodes(_write(tmp_path, GOOD))
    assert list(frame.battery_id) == ["t-1_Li", "t-2_Na", "t-3_Mg"]
    assert "3 valid, 0 invalid" in frame.attrs["validation"]


def test_invalid_rows_are_listed_with_line_and_reason(tmp_path: Path) -> None:
    path = _write(tmp_path, BAD)
    with pytest.raises(DataValidationError) as info:
        load_electrodes(path)
    message = str(info.value)
    expected = [
        f"{path}:3 formula_charge: cannot parse formula 'Co(O2'",
        f"{path}:4 working_ion: unknown working ion 'Xx'",
        f"{path}:5 average_voltage: missing (NaN) voltage",
        f"{path}:6 average_voltage: voltage must be finite and >= 0 V, got -0.2 V",
        f"{path}:7 formula_discharge: cannot parse formula 'CoO2 -> LiNiO2': frameworks do not match",
        f"{path}:8 formula_discharge: cannot parse formula 'LiCoO2 -> LiCoO2': the discharged formula holds no more Li",
        f"{path}:9 average_voltage: not a number: 'abc'",
        f"{path}:10 capacity_grav: must be >= 0 mAh/g, got -5",
        f"{path}:11 battery_id: empty battery_id",
    ]
    for line in expected:
        assert line in message, line
    assert f"{path}:2 " not in message


def test_drop_invalid_keeps_good_rows_and_counts_the_rest(tmp_path: Path) -> None:
    frame = load_electrodes(_write(tmp_path, BAD), drop_invalid=True)
    assert list(frame.battery_id) == ["t-1_Li"]
    summary = frame.attrs["validation"]
    assert "10 rows, 1 valid, 9 invalid" in summary
    assert "invalid voltage: 2" in summary
    assert "unknown ion: 1" in summary


def test_report_counts_a_row_once() -> None:
    frame = pd.DataFrame(
        {
            "battery_id": ["a"],
            "working_ion": ["Li"],
            "formula_charge": ["Co(O2"],
            "formula_discharge": ["LiCoO2"],
            "average_voltage": [float("nan")],
        }
    )
    report = validate_electrodes(frame, csv_lines=False)
    assert len(report.problems) == 2
    assert report.invalid_rows == [0]
    assert sum(report.counts().values()) == 1
    assert "<table> row 0 formula_charge" in str(report.error())


def test_missing_columns_are_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "battery_id,working_ion,formula_charge\nx,Li,CoO2\n")
    with pytest.raises(
        MissingColumnsError, match="missing column\\(s\\) formula_discharge, average_voltage"
    ):
        load_electrodes(path)


def test_unlabeled_candidates_need_no_id_or_voltage() -> None:
    frame = pd.DataFrame(
        {"working_ion": ["Na"], "formula_charge": ["MnO2"], "formula_discharge": ["NaMnO2"]}
    )
    assert len(load_electrodes(frame, labeled=False)) == 1
    with pytest.raises(MissingColumnsError, match="battery_id"):
        load_electrodes(frame)


def test_missing_and_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(DiscoveryError, match="no such file"):
        read_table(tmp_path / "absent.csv")
    with pytest.raises(DiscoveryError, match=r"unknown table format '\.xlsx'"):
        read_table(_write(tmp_path, "x", "table.xlsx"))


def test_parquet_round_trip_reports_rows_not_lines(tmp_path: Path) -> None:
    frame = pd.read_csv(_write(tmp_path, BAD))
    path = write_table(frame, tmp_path / "table.parquet")
    with pytest.raises(DataValidationError, match=r"table.parquet row 1 formula_charge"):
        load_electrodes(path)
    assert len(load_electrodes(path, drop_invalid=True)) == 1


@pytest.mark.shared_data
def test_shared_table_only_negative_voltages_are_invalid(shared_csv: Path) -> None:
    frame = load_electrodes(shared_csv, drop_invalid=True)
    assert len(frame) == 4341 - 127
    assert "invalid voltage: 127" in frame.attrs["validation"]


@settings(max_examples=50, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 6), min_size=2, max_size=60),
    fraction=st.floats(0.05, 0.5),
    seed=st.integers(0, 2**16),
)
def test_group_split_never_splits_a_group(sizes: list[int], fraction: float, seed: int) -> None:
    groups = np.repeat([f"b{i}" for i in range(len(sizes))], sizes)
    train, test = group_split(groups, fraction, seed)
    assert len(train) + len(test) == len(groups)
    assert not set(groups[train]) & set(groups[test])
    assert len(train) > 0 and len(test) > 0


def test_framework_labels_join_polymorphs_and_ions_of_one_host() -> None:
    labels = framework_labels(
        ["FePO4", "Fe2P2O8", "LiFePO4", "Mo6S8", "Mo6S8", "CoO2"],
        ["Li", "Na", "Li", "Mg", "Li", "Li"],
    )
    # One host composition, however it is written and whichever ion it holds, is one label ...
    assert labels[0] == labels[1] == labels[2] == "Fe0.1667 O0.6667 P0.1667"
    assert labels[3] == labels[4]
    # ... and another composition is another label.
    assert len(set(labels)) == 3
    # Grouped on these labels, no host composition is on both sides.
    train, test = group_split(labels, 0.3, 0)
    assert not set(labels[train]) & set(labels[test])
    with pytest.raises(DiscoveryError, match=r"Co\(O2.*row 1"):
        framework_labels(["CoO2", "Co(O2"], "Li")
    with pytest.raises(DiscoveryError, match=r"'Li2'.*row 0: no framework besides the ion Li"):
        framework_labels(["Li2"], "Li")
    with pytest.raises(ValueError, match="2 formulas but 1 working ions"):
        framework_labels(["CoO2", "NiO2"], ["Li"])


def test_group_split_is_seeded_and_near_the_fraction() -> None:
    groups = np.repeat(np.arange(500), 3)
    a = group_split(groups, 0.1, 7)
    b = group_split(groups, 0.1, 7)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert abs(len(a[1]) / len(groups) - 0.1) < 0.01
    train, test = random_split(1000, 0.1, 0)
    assert len(test) == 100 and not set(train) & set(test)

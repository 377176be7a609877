"""Formula parsing against pymatgen, ion table, and exact capacity/energy against Materials Project."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymatgen.core import Composition

from discovery.chemistry import (
    DEFAULT_IONS,
    ELEMENTS,
    Ion,
    capacity_grav_mah_g,
    energy_grav_wh_kg,
    insertion_pair,
    parse_formula,
)
from discovery.errors import FormulaError, UnknownIonError


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("LiCoO2", {"Li": 1, "Co": 1, "O": 2}),
        ("Li5Fe4(PO4)4", {"Li": 5, "Fe": 4, "P": 4, "O": 16}),
        ("Li0.5CoO2", {"Li": 0.5, "Co": 1, "O": 2}),
        ("Na3V2(PO4)2F3", {"Na": 3, "V": 2, "P": 2, "O": 8, "F": 3}),
        ("Ca[Al(SiO4)]2", {"Ca": 1, "Al": 2, "Si": 2, "O": 8}),
        ("FeOFe", {"Fe": 2, "O": 1}),
        (" Mg ", {"Mg": 1}),
        ("Li2 Mn O3", {"Li": 2, "Mn": 1, "O": 3}),
    ],
)
def test_parse_formula_known(formula: str, expected: dict[str, float]) -> None:
    assert parse_formula(formula) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("formula", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("Xx2O", "unknown element 'Xx'"),
        ("LiCoO2)", "unbalanced"),
        ("(LiCoO2", "unclosed"),
        ("Li(]O", "unbalanced"),
        ("Li-1O", "unexpected character '-'"),
        ("li2O", "unexpected character 'l'"),
        ("Li2O\u2082", "unexpected character"),
        ("Li99999999O", "out of range"),
        ("Li0O0", "no element with a positive amount"),
        ("Li()O", "empty group"),
    ],
)
def test_parse_formula_rejects(formula: str, reason: str) -> None:
    with pytest.raises(FormulaError, match="cannot parse formula") as info:
        parse_formula(formula)
    assert reason in str(info.value)


def test_parse_formula_rejects_non_string() -> None:
    with pytest.raises(FormulaError, match="expected a string"):
        parse_formula(float("nan"))  # type: ignore[arg-type]


_amount = st.one_of(
    st.integers(1, 40).map(str),
    st.sampled_from(["", "0.5", "1.25", "2.75", ".5"]),
)
_element = st.sampled_from(ELEMENTS[:94])


@st.composite
def _formulas(draw: st.DrawFn) -> str:
    parts = [draw(_element) + draw(_amount) for _ in range(draw(st.integers(1, 4)))]
    if draw(st.booleans()):
        group = "".join(draw(_element) + draw(_amount) for _ in range(draw(st.integers(1, 3))))
        parts.append(f"({group}){draw(st.integers(1, 6))}")
    return "".join(parts)


@settings(max_examples=300, deadline=None)
@given(_formulas())
def test_parse_formula_matches_pymatgen(formula: str) -> None:
    ours = parse_formula(formula)
    theirs = Composition(formula).get_el_amt_dict()
    assert ours.keys() == theirs.keys()
    for el, amount in theirs.items():
        assert math.isclose(ours[el], amount, rel_tol=1e-12)


def test_ion_table_has_the_ten_mp_ions() -> None:
    assert {"Li", "Na", "K", "Rb", "Cs", "Mg", "Ca", "Zn", "Al", "Y"} <= set(DEFAULT_IONS)
    assert DEFAULT_IONS["Mg"].valence == 2
    assert DEFAULT_IONS["Al"].valence == 3
    assert DEFAULT_IONS["Li"].shannon_radius_angstrom < DEFAULT_IONS["Na"].shannon_radius_angstrom


def test_unknown_ion_names_the_ion_and_the_known_ones() -> None:
    with pytest.raises(UnknownIonError) as info:
        DEFAULT_IONS["Xx"]
    assert "'Xx'" in str(info.value)
    assert "Li" in str(info.value)


def test_ion_table_extends_without_changing_the_default() -> None:
    table = DEFAULT_IONS.extend([Ion("Ba", 2, 137.327, 1.35, -2.912, 0.89)])
    assert table["Ba"].valence == 2
    assert "Ba" not in DEFAULT_IONS
    with pytest.raises(ValueError, match="valence"):
        Ion("Ba", 0, 137.327, 1.35, -2.912, 0.89)


@pytest.mark.parametrize(
    ("charge", "discharge", "ion", "expected_mah_g"),
    [
        ("CoO2", "LiCoO2", "Li", 273.8),  # textbook theoretical capacity of LiCoO2
        ("FePO4", "LiFePO4", "Li", 169.9),  # LiFePO4
        ("Mo6S8", "Mg2Mo6S8", "Mg", 121.7),  # Chevrel phase, two Mg2+ per formula unit
        ("LiFePO4", "Li5Fe4(PO4)4", "Li", 42.01),  # scale 4: F/3.6 / 637.97 g/mol
    ],
)
def test_capacity_textbook_values(
    charge: str, discharge: str, ion: str, expected_mah_g: float
) -> None:
    assert capacity_grav_mah_g(charge, discharge, ion) == pytest.approx(expected_mah_g, rel=2e-3)


def test_insertion_pair_matches_frameworks() -> None:
    pair = insertion_pair("LiFePO4", "Li5Fe4(PO4)4", "Li")
    assert pair.framework_scale == pytest.approx(4.0)
    assert pair.x_inserted == pytest.approx(1.0)
    assert pair.ion_fraction_discharge == pytest.approx(5 / 29)


@pytest.mark.parametrize(
    ("charge", "discharge", "message"),
    [
        ("CoO2", "LiNiO2", "frameworks do not match"),
        ("CoO2", "LiCo2O3", "not in the ratio"),
        ("LiCoO2", "LiCoO2", "holds no more Li"),
        ("Li2CoO2", "LiCoO2", "holds no more Li"),
        ("Li", "Li2", "no host framework"),
    ],
)
def test_insertion_pair_rejects(charge: str, discharge: str, message: str) -> None:
    with pytest.raises(FormulaError, match=message):
        insertion_pair(charge, discharge, "Li")


def test_energy_is_voltage_times_capacity() -> None:
    assert energy_grav_wh_kg(3.9, 273.8) == pytest.approx(1067.82)


@pytest.mark.shared_data
def test_capacity_and_energy_reproduce_materials_project(shared_frame: pd.DataFrame) -> None:
    """Every row: capacity_grav within 0.5 % of x·z·F/(3.6·M), energy_grav within 0.5 % of V·C."""
    capacity = np.array(
        [
            capacity_grav_mah_g(c, d, i)
            for c, d, i in zip(
                shared_frame.formula_charge,
                shared_frame.formula_discharge,
                shared_frame.working_ion,
            )
        ]
    )
    cap_err = np.abs(capacity - shared_frame.capacity_grav) / shared_frame.capacity_grav
    energy = energy_grav_wh_kg(shared_frame.average_voltage.to_numpy(), capacity)
    energy_err = np.abs(energy - shared_frame.energy_grav) / np.abs(shared_frame.energy_grav)
    assert len(shared_frame) == 4341
    assert cap_err.max() < 0.005, shared_frame.iloc[int(np.argmax(cap_err))].to_dict()
    assert energy_err.max() < 0.005, shared_frame.iloc[int(np.argmax(energy_err))].to_dict()


@pytest.mark.shared_data
def test_parser_matches_pymatgen_on_every_shared_formula(shared_frame: pd.DataFrame) -> None:
    formulas = pd.unique(pd.concat([shared_frame.formula_charge, shared_frame.formula_discharge]))
    for formula in formulas:
        theirs = Composition(formula).get_el_amt_dict()
        ours = parse_formula(formula)
        assert ours == pytest.approx(theirs), formula
